"""Containment: every process an attempt starts, directly or not, is found and stopped
with it, even after `setsid`, a double fork or daemonizing.

Each attempt has a cell. Two kinds, chosen once per process (`detect`):

- `cgroup`: where a cgroup v2 hierarchy is writable, every command enters a cgroup of
  its attempt before it runs (so nothing it forks can be outside); the cgroup lists
  the members and `cgroup.kill` ends them all at once.
- `subreaper`: elsewhere. Every command carries its attempt's key in its environment,
  which descendants inherit, so they are found in /proc whatever process group or
  session they moved to; andon is made a child subreaper, so orphans re-parent to it
  (not to init) and it reaps those it killed.

`RuntimeSettings.containment` or `ANDON_CONTAINMENT` (`cgroup`, `subreaper`) chooses;
by default the stronger one available.
Processes that clear their environment and leave through a path andon did not start
are out of reach of the `subreaper` kind; the cgroup kind has no such gap.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

from andon.runtime.keeper import (
    MARK_NAME,
    cgroup_kill,
    cgroup_members,
    cgroup_remove,
    marked,
    signal_pids,
)

log = logging.getLogger("andon.runtime")

PR_SET_CHILD_SUBREAPER = 36


class Cell:
    """The processes of one attempt."""

    def __init__(self, key: str, cgroup: Path | None) -> None:
        self.key = key
        self.cgroup = cgroup
        self._made = False

    @property
    def held(self) -> str:
        """How the lifeline's keeper names this cell (see andon.runtime.keeper.Held)."""
        return f"c{self.cgroup}" if self.cgroup is not None else f"e{self.key}"

    def spawn_options(self, env: dict[str, str] | None) -> dict[str, object]:
        """Keyword arguments for a subprocess that must belong to this cell."""
        if self.cgroup is None:
            return {"env": {**(os.environ if env is None else env), MARK_NAME: self.key}}
        if not self._made:
            self.cgroup.mkdir(exist_ok=True)
            self._made = True
        return {"env": env, "preexec_fn": _enter_cgroup(str(self.cgroup / "cgroup.procs"))}

    def members(self) -> list[int]:
        """Live processes of the cell."""
        if self.cgroup is not None:
            return cgroup_members(str(self.cgroup)) if self._made else []
        return marked(self.key.encode())

    def signal(self, sig: signal.Signals) -> None:
        if sig is signal.SIGKILL and self.cgroup is not None:
            if self._made:
                cgroup_kill(str(self.cgroup))
            return
        signal_pids(self.members(), sig)

    def close(self, pids: list[int]) -> None:
        """The cell is empty: reap its processes that re-parented to this one (they are
        zombies of this process until then), and remove its cgroup."""
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        if self.cgroup is not None and self._made:
            cgroup_remove(str(self.cgroup))
            self._made = False


def _enter_cgroup(procs: str) -> Callable[[], None]:
    def enter() -> None:  # runs in the child, between fork and exec
        fd = os.open(procs, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)

    return enter


class Containment:
    """This process's kind of containment, and where its cells live."""

    def __init__(self, kind: str, base: Path | None = None) -> None:
        self.kind = kind
        self.base = base

    def cell(self, key: str) -> Cell:
        return Cell(key, self.base / key if self.base is not None else None)

    def close(self) -> None:
        if self.base is not None:
            cgroup_remove(str(self.base))


KINDS = ("auto", "cgroup", "subreaper")


def detect(wanted: str = "auto") -> Containment:
    """The containment of this process: `auto` takes ANDON_CONTAINMENT, else a cgroup
    where one can be made and killed, else the subreaper."""
    if wanted == "auto":
        wanted = os.environ.get("ANDON_CONTAINMENT", "auto")
    containment = _detect(wanted)
    if containment.kind == "subreaper":
        set_subreaper(True)  # each time: whoever turned it off, this process needs it now
    return containment


def set_subreaper(on: bool) -> None:
    """Make this process (or stop it being) the one its orphaned descendants re-parent to."""
    import ctypes  # here: a process contained by cgroups never needs it

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        log.warning("could not set the child subreaper flag (errno %d)", ctypes.get_errno())


@cache
def _detect(wanted: str) -> Containment:
    if wanted not in KINDS:
        raise ValueError(f"ANDON_CONTAINMENT must be auto, cgroup or subreaper, not {wanted!r}")
    if wanted != "subreaper":
        base = _cgroup_base()
        if base is not None:
            containment = Containment("cgroup", base)
            atexit.register(containment.close)
            return containment
        if wanted == "cgroup":
            raise RuntimeError("ANDON_CONTAINMENT=cgroup, but no writable cgroup v2 was found")
    return Containment("subreaper")


def _cgroup_base() -> Path | None:
    """A cgroup for this process's cells, below its own, if cgroup v2 is writable and
    has `cgroup.kill` (Linux 5.14)."""
    mount = _cgroup2_mount()
    if mount is None:
        return None
    try:
        own = next(
            line.split("::", 1)[1].strip()
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        )
    except (OSError, StopIteration):
        return None
    parent = mount / own.lstrip("/")
    _remove_stale(parent)
    base = parent / f"andon-{os.getpid()}"
    try:
        base.mkdir(exist_ok=True)
    except OSError:
        return None
    if not (base / "cgroup.kill").exists() or not _can_enter(base / "probe"):
        cgroup_remove(str(base))
        return None
    return base


def _remove_stale(parent: Path) -> None:
    """Remove the cgroups of andon processes that are gone (killed before they could),
    with their empty cells; a cell something still lives in stays. Other andon
    processes starting beside this one may be removing the same ones."""
    for base in parent.glob("andon-*"):
        if Path(f"/proc/{base.name.removeprefix('andon-')}").exists():
            continue
        try:
            cells = [cell for cell in base.iterdir() if cell.is_dir()]
        except OSError:
            continue  # removed meanwhile (or not ours to list): best effort, as below
        for cell in cells:
            cgroup_remove(str(cell))
        cgroup_remove(str(base))


def _can_enter(cgroup: Path) -> bool:
    """Whether a child process can move itself into a new cgroup here (a hierarchy that
    is mounted and writable may still refuse it, e.g. where controllers forbid it)."""
    try:
        cgroup.mkdir(exist_ok=True)
        enter = _enter_cgroup(str(cgroup / "cgroup.procs"))
        return subprocess.run(["true"], preexec_fn=enter, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        cgroup_remove(str(cgroup))


def _cgroup2_mount() -> Path | None:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].split()[0] == "cgroup2":
            return Path(fields[0].split()[4])
    return None
