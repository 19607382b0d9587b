"""Bearer-token authentication: tokens map to a principal and a role; only their
SHA-256 digests are kept in memory.

A tokens file has one token a line: `NAME ROLE TOKEN`, where ROLE is `user` or
`admin` and TOKEN is the token itself or `sha256:<hex digest>` (what
`andon token new` prints, so the file need not hold the secret). The environment
variable ANDON_TOKENS holds the same lines separated by commas or newlines.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from andon.service import Principal

LOCAL = Principal("local", "admin")
"""Everyone is this principal when auth is off (`--auth none`, for local use)."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "andon_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TokenAuth:
    principals: dict[str, Principal]  # sha256 hex digest -> principal

    @classmethod
    def parse(cls, text: str) -> TokenAuth:
        principals: dict[str, Principal] = {}
        for number, raw in enumerate(text.replace(",", "\n").splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) != 3 or fields[1] not in ("user", "admin"):
                raise ValueError(f"tokens line {number}: expected 'NAME user|admin TOKEN'")
            name, role, token = fields
            hashed = token.removeprefix("sha256:") if token.startswith("sha256:") else digest(token)
            principals[hashed] = Principal(name, "admin" if role == "admin" else "user")
        if not principals:
            raise ValueError("no tokens defined")
        return cls(principals)

    @classmethod
    def from_file(cls, path: str | Path) -> TokenAuth:
        return cls.parse(Path(path).read_text())

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal of an `Authorization: Bearer <token>` header, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        # Looked up by digest: timing can reveal nothing about a token that is not held.
        return self.principals.get(digest(token.strip()))
