"""The `andon.*` keys of a new task's metadata: which ones a client may send, how each
is checked, and which ones only andon writes.

A client's message metadata and request metadata become the task's metadata, which
the runtime, the telemetry and the transports read back later. A key andon writes
itself (a retry's link to the task it retries, a cancel's mode, a stop's figures) set
by a client would be believed there: `andon.retryOf` would hand the agent another
principal's artifacts. So such keys are refused at the door, and each key a client
may set is checked for its type before anything is stored.
"""

from __future__ import annotations

from typing import Any

from andon.protocol.errors import InvalidParams
from andon.protocol.stops import KILL_GRACE, KILLED, STOP_MS, SURVIVORS
from andon.protocol.types import CANCEL_MODE, DIRECT_REPLY, STREAM_END
from andon.runtime.agent import SKILL_KEY
from andon.telemetry.tracing import CARRIER_KEY

RETRY_OF = "andon.retryOf"
REASON = "andon.reason"
CANCELING = "andon.canceling"
CREATED_AT = "andon.createdAt"

SERVER_KEYS = frozenset(
    {
        RETRY_OF,
        REASON,
        CANCELING,
        CREATED_AT,
        STREAM_END,
        SURVIVORS,
        STOP_MS,
        KILLED,
        KILL_GRACE,
        CANCEL_MODE,
        DIRECT_REPLY,
    }
)
"""Written by andon only: a client sending one is refused."""

TEXT_KEYS = ("andon.contextPolicy", "andon.onDisconnect", SKILL_KEY)
"""Client options whose value is a word (which words, is checked where each is used;
the seconds of `andon.timeout`, `andon.idleTimeout` and `andon.inputTimeout` are checked
by the service, which knows their defaults)."""


def client_options(*sources: dict[str, Any] | None) -> dict[str, Any]:
    """The options of a new task, from a client's message and request metadata (later
    sources win): server keys refused, words checked to be words, and any trace context
    dropped (the server puts the request's own)."""
    options: dict[str, Any] = {}
    for source in sources:
        options.update(source or {})
    refuse_nul("metadata", options)
    taken = sorted(SERVER_KEYS & options.keys())
    if taken:
        raise InvalidParams(f"{', '.join(taken)}: set by andon only, not by a client")
    for key in TEXT_KEYS:
        if options.get(key) is not None and not isinstance(options[key], str):
            raise InvalidParams(f"{key} must be a string")
    options.pop(CARRIER_KEY, None)
    return options


def refuse_nul(what: str, value: object) -> None:
    """InvalidParams when `value` (JSON data) holds a NUL character (see `holds_nul`)."""
    if holds_nul(value):
        raise InvalidParams(f"{what} must not hold a NUL character (\\u0000)")


def holds_nul(value: object) -> bool:
    """Whether a string anywhere in JSON data (a key too) holds a NUL character. What
    andon keys, filters or merges by (ids, metadata) never does: PostgreSQL's text and
    jsonb cannot hold one, and a request must mean the same on either store. A
    message's own content may (both stores keep it as JSON text)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False
