"""Which interface to talk to an agent through: read its agent card and choose a version
(1.0 before 0.3) and a binding (JSON-RPC before HTTP+JSON) that both sides speak.

A 1.0 card lists its interfaces in `supportedInterfaces`; a 0.3 card names a main `url`
with its `preferredTransport` and more in `additionalInterfaces`. andon's own card, and
the official SDK's, carry both forms in one document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from andon.client.api import BINDINGS, AndonClient, Binding
from andon.client.errors import ProtocolError
from andon.protocol.wire import Version

_BINDING_NAMES: dict[str, Binding] = {"JSONRPC": "jsonrpc", "HTTP+JSON": "http+json"}
_PREFERENCE = [(v, b) for v in (Version.V1_0, Version.V0_3) for b in BINDINGS]


@dataclass(frozen=True, slots=True)
class Interface:
    """One way to reach an agent: where, in which A2A version, over which binding."""

    url: str
    version: Version
    binding: Binding
    agent: str
    """The agent's name, from its card."""

    def client(self, token: str | None = None, **options: Any) -> AndonClient:
        return AndonClient(self.url, token, self.version.value, binding=self.binding, **options)


def interfaces(card: dict[str, Any]) -> list[Interface]:
    """Every interface the card lists in a version and binding andon speaks."""
    name = str(card.get("name") or "agent")
    found: list[Interface] = []

    def add(url: Any, binding: Any, version: Any) -> None:
        speaks = _BINDING_NAMES.get(str(binding).upper())
        numbers = str(version or "").split(".")
        known = {v.value: v for v in Version}.get(".".join(numbers[:2]))
        if isinstance(url, str) and url and speaks and known:
            found.append(Interface(url, known, speaks, name))

    for entry in card.get("supportedInterfaces") or ():
        if isinstance(entry, dict):
            add(entry.get("url"), entry.get("protocolBinding"), entry.get("protocolVersion"))
    legacy = card.get("protocolVersion")
    if isinstance(legacy, str) and legacy.startswith("0."):
        add(card.get("url"), card.get("preferredTransport") or "JSONRPC", legacy)
        for entry in card.get("additionalInterfaces") or ():
            if isinstance(entry, dict):
                add(entry.get("url"), entry.get("transport"), legacy)
    return found


def choose(
    card: dict[str, Any], *, version: str | None = None, binding: Binding | None = None
) -> Interface:
    """The preferred interface of the card (1.0 first, JSON-RPC first), or the one of
    the version and binding asked for; ProtocolError when there is none."""
    listed = interfaces(card)
    for wanted in _PREFERENCE:
        if version is not None and wanted[0].value != version:
            continue
        if binding is not None and wanted[1] != binding:
            continue
        for interface in listed:
            if (interface.version, interface.binding) == wanted:
                return interface
    asked = " ".join(x for x in (version, binding) if x) or "A2A 1.0 or 0.3, JSON-RPC or HTTP+JSON"
    raise ProtocolError(f"the agent card of {card.get('name')!r} lists no interface in {asked}")


async def discover(
    url: str,
    *,
    token: str | None = None,
    version: str | None = None,
    binding: Binding | None = None,
    timeout: float = 10.0,
) -> Interface:
    """Fetch the agent card at `url` (its `/.well-known/agent-card.json`) and choose."""
    probe = AndonClient(url, token, timeout=timeout)
    try:
        card = await probe.card()
    finally:
        await probe.aclose()
    return choose(card, version=version, binding=binding)
