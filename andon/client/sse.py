"""Server-Sent Events, read line by line (the parts of the WHATWG format servers use)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerEvent:
    data: str
    event: str = "message"
    id: str | None = None


async def read_events(lines: AsyncIterable[str]) -> AsyncIterator[ServerEvent]:
    """Events of a stream of lines (without their line endings); comments (keep-alives)
    are skipped; an event is dispatched at the blank line that ends it."""
    data: list[str] = []
    event = ""
    event_id: str | None = None
    async for line in lines:
        if not line:
            if data:
                yield ServerEvent("\n".join(data), event or "message", event_id)
            data, event, event_id = [], "", None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            event_id = value
    # An event the stream ended in the middle of is not dispatched (as the format says):
    # a resumed stream replays it.
