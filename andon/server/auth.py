"""Bearer-token authentication: tokens map to a principal and a role; only their
SHA-256 digests are kept in memory.

A tokens file has one token a line: `NAME ROLE TOKEN [until=DATE]`, where ROLE is
`user` or `admin`, TOKEN is the token itself or `sha256:<hex digest>` (what `andon
token new` prints, so the file need not hold the secret), and `until=` an optional
expiry (an ISO date or date and time, UTC unless it says otherwise). The environment
variable ANDON_TOKENS holds the same lines separated by commas or newlines.

Refused, as an operator would want to hear before serving: a file any user may write
to, a name with spaces or commas, a token given twice (the second line would silently
win), and a token in clear shorter than MIN_TOKEN characters. `andon serve` reads the
file again on SIGHUP (`reload`): tokens added, removed or expired take effect without
a restart, and a file that no longer parses leaves the tokens as they were.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import stat
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from andon.service import Principal

log = logging.getLogger("andon.server")

LOCAL = Principal("local", "admin")
"""Everyone is this principal when auth is off (`--auth none`, for local use)."""

MIN_TOKEN = 8
"""Shortest token accepted in clear (`andon token new` makes 48 characters)."""

NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,128}")
"""What a principal's name may be: one word that a tokens line can hold."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "andon_" + secrets.token_urlsafe(32)


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} cannot name a principal: use letters, digits and _ . @ + - only "
            "(no spaces or commas), at most 128"
        )
    return name


@dataclass(frozen=True, slots=True)
class Grant:
    principal: Principal
    until: float | None = None
    """Expiry, seconds since the epoch; None: never."""


@dataclass
class TokenAuth:
    grants: dict[str, Grant]  # sha256 hex digest -> who, until when
    warnings: list[str] = field(default_factory=list)
    """What is legal but unwise in the source (said once at start)."""
    source: Path | None = None
    """The tokens file, read again by `reload`."""
    clear: bool = False
    """Some token is written in clear (not as its sha256)."""

    @classmethod
    def parse(cls, text: str) -> TokenAuth:
        grants: dict[str, Grant] = {}
        lines: dict[str, int] = {}
        clear = False
        for number, raw in enumerate(text.replace(",", "\n").splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) not in (3, 4) or fields[1] not in ("user", "admin"):
                raise ValueError(
                    f"tokens line {number}: expected 'NAME user|admin TOKEN [until=DATE]'"
                )
            name, role, token = fields[:3]
            try:
                check_name(name)
                until = _expiry(fields[3]) if len(fields) == 4 else None
            except ValueError as exc:
                raise ValueError(f"tokens line {number}: {exc}") from None
            if token.startswith("sha256:"):
                hashed = token.removeprefix("sha256:").lower()
                if not re.fullmatch(r"[0-9a-f]{64}", hashed):
                    raise ValueError(f"tokens line {number}: a sha256: digest is 64 hex digits")
            else:
                if len(token) < MIN_TOKEN:
                    raise ValueError(
                        f"tokens line {number}: a token of {len(token)} characters is easy to "
                        f"guess (at least {MIN_TOKEN}); make one with `andon token new {name}`"
                    )
                hashed, clear = digest(token), True
            if hashed in lines:
                raise ValueError(
                    f"tokens line {number}: the same token as line {lines[hashed]}; "
                    "give each principal its own"
                )
            lines[hashed] = number
            grants[hashed] = Grant(Principal(name, "admin" if role == "admin" else "user"), until)
        if not grants:
            raise ValueError("no tokens defined")
        return cls(grants, clear=clear)

    @classmethod
    def from_file(cls, path: str | Path) -> TokenAuth:
        path = Path(path)
        mode = path.stat().st_mode
        if mode & stat.S_IWOTH:
            raise ValueError(
                f"{path} is writable by every user, who could add a token of their own: "
                f"chmod o-w {path}"
            )
        auth = cls.parse(path.read_text())
        auth.source = path
        if auth.clear and mode & stat.S_IROTH:
            auth.warnings.append(
                f"{path} holds tokens in clear and every user may read it: chmod o-r {path}, "
                "or keep their sha256 only (the line `andon token new` prints)"
            )
        return auth

    def reload(self) -> None:
        """Read the tokens file again (SIGHUP). A file that no longer parses is logged
        and the tokens stay as they were."""
        if self.source is None:
            log.warning("tokens come from ANDON_TOKENS: nothing to reload")
            return
        try:
            fresh = TokenAuth.from_file(self.source)
        except (OSError, ValueError) as exc:
            log.error("tokens not reloaded, the old ones stay: %s", exc)
            return
        self.grants = fresh.grants
        log.warning("tokens reloaded from %s: %d token(s)", self.source, len(self.grants))

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal of an `Authorization: Bearer <token>` header, or None (no
        token, an unknown one, or one past its expiry)."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        # Looked up by digest: timing can reveal nothing about a token that is not held.
        grant = self.grants.get(digest(token.strip()))
        if grant is None or (grant.until is not None and time.time() >= grant.until):
            return None
        return grant.principal


def _expiry(text: str) -> float:
    if not text.startswith("until="):
        raise ValueError(f"expected until=DATE, not {text!r}")
    try:
        when = datetime.fromisoformat(text.removeprefix("until="))
    except ValueError:
        raise ValueError(f"{text!r}: the date is not ISO 8601 (2027-01-31)") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
