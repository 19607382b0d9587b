"""Create each peer server's own virtual environment under bench/.venvs/<peer>.

    python bench/peers/setup_envs.py            # every peer
    python bench/peers/setup_envs.py bindu      # one peer
    python bench/peers/setup_envs.py --force    # rebuild even if up to date

Idempotent: an environment whose stamp matches its requirements file (and its
interpreter's version) is left alone, so the benchmark can call `ensure()` before
every run for free. The requirements files pin every package (`pip freeze` of the
environments the peers were written and measured against). Standard library only:
it runs under any Python 3.11+.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENVS = HERE.parent / ".venvs"


@dataclass(frozen=True)
class PeerEnv:
    name: str
    python_version: str  # major.minor the venv is built with
    requirements: Path

    @property
    def venv(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def stamp(self) -> Path:
        return self.venv / ".andon-bench-installed"


ENVS = {
    "a2a-sdk": PeerEnv("a2a-sdk", "3.11", HERE / "requirements-a2a-sdk.txt"),
    # bench/llm.py: the agent frameworks served the way their users serve them today.
    "fasta2a": PeerEnv("fasta2a", "3.11", HERE / "requirements-fasta2a.txt"),
    "a2a-sdk-agents": PeerEnv("a2a-sdk-agents", "3.11", HERE / "requirements-a2a-sdk-agents.txt"),
    # Bindu requires Python >= 3.12.
    "bindu": PeerEnv("bindu", "3.12", HERE / "requirements-bindu.txt"),
    # bench/llm.py: LangGraph's own server (`langgraph dev`, in-memory runtime).
    "langgraph-dev": PeerEnv("langgraph-dev", "3.11", HERE / "requirements-langgraph-dev.txt"),
}


def find_interpreter(version: str) -> str:
    """A `python<version>` on PATH, else one of pyenv's builds, else this one if it fits."""
    for candidate in (
        shutil.which(f"python{version}"),
        *sorted(
            glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}"))
        ),
        *sorted(glob.glob(f"/root/.pyenv/versions/{version}.*/bin/python{version}")),
    ):
        if candidate and _version_of(candidate) == version:
            return candidate
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    raise RuntimeError(f"no Python {version} found (looked on PATH and in ~/.pyenv/versions)")


def _version_of(python: str) -> str | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _fingerprint(env: PeerEnv) -> str:
    digest = hashlib.sha256(env.requirements.read_bytes()).hexdigest()
    return f"{env.python_version} {digest}\n"


def is_ready(env: PeerEnv) -> bool:
    return (
        env.python.exists()
        and env.stamp.exists()
        and env.stamp.read_text() == _fingerprint(env)
        and _version_of(str(env.python)) == env.python_version
    )


def ensure(peer: str, *, force: bool = False, quiet: bool = True) -> Path:
    """Make sure the peer's venv exists and matches its pins; return its python."""
    env = ENVS[peer]
    if not force and is_ready(env):
        return env.python
    if env.venv.exists():
        shutil.rmtree(env.venv)
    VENVS.mkdir(parents=True, exist_ok=True)
    interpreter = find_interpreter(env.python_version)
    print(f"[setup_envs] {peer}: creating {env.venv} with {interpreter}", file=sys.stderr)
    subprocess.run([interpreter, "-m", "venv", str(env.venv)], check=True)
    pip = [str(env.python), "-m", "pip", "--disable-pip-version-check", "install"]
    print(f"[setup_envs] {peer}: installing {env.requirements.name}", file=sys.stderr)
    result = subprocess.run(
        [*pip, "-r", str(env.requirements)], capture_output=quiet, text=True, check=False
    )
    if result.returncode != 0:
        if quiet:
            sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise RuntimeError(f"pip could not install {env.requirements} into {env.venv}")
    env.stamp.write_text(_fingerprint(env))
    return env.python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peers", nargs="*", help=f"any of: {', '.join(ENVS)} (default: all)")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--verbose", action="store_true", help="show pip's output")
    args = parser.parse_args()
    unknown = set(args.peers) - set(ENVS)
    if unknown:
        parser.error(f"unknown peer(s): {', '.join(sorted(unknown))}")
    for peer in args.peers or list(ENVS):
        python = ensure(peer, force=args.force, quiet=not args.verbose)
        print(f"{peer}: {python}")


if __name__ == "__main__":
    main()
