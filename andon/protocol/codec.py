"""Choosing the codec of a request: the A2A-Version header (or query parameter).

A2A 1.0 (section 3.6): versions are `Major.Minor`, a patch number never matters, and an
empty value means 0.3 — so clients written before 1.0, which send no header, still work.
"""

from __future__ import annotations

from andon.protocol.errors import VersionNotSupported
from andon.protocol.v03 import V03Codec
from andon.protocol.v03_rest import V03RestCodec
from andon.protocol.v1 import V1Codec
from andon.protocol.wire import Codec, Version

VERSION_HEADER = "A2A-Version"


def negotiate(header_value: str | None) -> Version:
    """The version a request speaks: absent or empty is 0.3; `1.0`, `1.0.2`, `0.3.0`
    are theirs; anything else is VersionNotSupported (-32009)."""
    value = (header_value or "").strip()
    if not value:
        return Version.V0_3
    numbers = value.split(".")
    if 2 <= len(numbers) <= 3 and all(n.isascii() and n.isdigit() for n in numbers):
        found = _BY_NAME.get(f"{int(numbers[0])}.{int(numbers[1])}")
        if found is not None:
            return found
    raise VersionNotSupported(
        f"A2A version {value!r} is not supported; this server speaks 1.0 and 0.3",
        data={"requested": value, "supported": "1.0, 0.3"},
    )


_BY_NAME = {v.value: v for v in Version}

_V1_NAMES = set(V1Codec.methods)
_V03_NAMES = set(V03Codec.methods)
CODECS: dict[Version, Codec] = {
    Version.V1_0: V1Codec(foreign=dict.fromkeys(_V03_NAMES - _V1_NAMES, Version.V0_3)),
    Version.V0_3: V03Codec(foreign=dict.fromkeys(_V1_NAMES - _V03_NAMES, Version.V1_0)),
}


# The HTTP+JSON binding: ProtoJSON in both versions, which in 1.0 is the JSON-RPC form too.
REST_CODECS: dict[Version, Codec] = {
    Version.V1_0: CODECS[Version.V1_0],
    Version.V0_3: V03RestCodec(),
}


def codec_for(version: Version, *, rest: bool = False) -> Codec:
    """The codec of a version, for JSON-RPC or (`rest`) for the HTTP+JSON binding."""
    return (REST_CODECS if rest else CODECS)[version]
