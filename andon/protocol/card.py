"""The Agent Card: one model (shaped like A2A 1.0) and its 1.0 and 0.3 renderings.

A 1.0 card lists every interface (binding and version) in `supportedInterfaces`; a 0.3
card names one main `url` with its `preferredTransport` and lists the rest in
`additionalInterfaces`, which only 0.3 interfaces may appear in. Card fetches usually come
without an A2A-Version header, so `card_document` puts both forms in one document, as
the official SDK does: each version's readers find their fields and ignore the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import Field

from andon.protocol.types import Model
from andon.protocol.wire import Version

JSONRPC = "JSONRPC"
HTTP_JSON = "HTTP+JSON"
GRPC = "GRPC"
V03_PROTOCOL_VERSION = "0.3.0"


class AgentSkill(Model):
    id: str
    name: str
    description: str
    tags: list[str] = Field(default_factory=list)
    examples: list[str] | None = None
    input_modes: list[str] | None = None
    output_modes: list[str] | None = None


class AgentExtension(Model):
    uri: str
    description: str | None = None
    required: bool = False
    params: dict[str, Any] | None = None


class AgentInterface(Model):
    url: str
    protocol_binding: str
    protocol_version: str


class AgentCapabilities(Model):
    streaming: bool = True
    push_notifications: bool = False
    extensions: list[AgentExtension] | None = None
    extended_agent_card: bool = False


class AgentProvider(Model):
    organization: str
    url: str


class AgentCard(Model):
    name: str
    description: str
    version: str
    supported_interfaces: list[AgentInterface]
    capabilities: AgentCapabilities = Field(default_factory=AgentCapabilities)
    default_input_modes: list[str]
    default_output_modes: list[str]
    skills: list[AgentSkill]
    bearer_auth: bool = False
    """Requests need `Authorization: Bearer <token>` (rendered as each version's scheme)."""
    provider: AgentProvider | None = None
    documentation_url: str | None = None
    icon_url: str | None = None


def build_card(
    *,
    name: str,
    description: str,
    version: str,
    base_url: str,
    skills: Iterable[AgentSkill | Mapping[str, Any]] = (),
    security: bool = False,
    extensions: Iterable[str | AgentExtension] = (),
    streaming: bool = True,
    extended_card: bool = False,
    push_notifications: bool = False,
    input_modes: Sequence[str] = ("text/plain", "application/json"),
    output_modes: Sequence[str] = ("text/plain", "application/json"),
    jsonrpc_url: str | None = None,
    rest_url: str | None = None,
    rest: bool = True,
    grpc_url: str | None = None,
    provider: AgentProvider | None = None,
    documentation_url: str | None = None,
    versions: Iterable[Version] = (Version.V1_0, Version.V0_3),
) -> AgentCard:
    """The card of an andon server: JSON-RPC and HTTP+JSON in each of `versions`, all at
    `base_url` unless told otherwise (the REST paths never collide with JSON-RPC's POST;
    0.3's HTTP+JSON paths start with `/v1`, below the same URL); and gRPC (A2A 1.0 only)
    at `grpc_url` (`host:port`) when given."""
    rpc, rest_at = jsonrpc_url or base_url, rest_url or base_url
    wanted = set(versions)
    interfaces = []
    for served in (v for v in (Version.V1_0, Version.V0_3) if v in wanted):  # preferred first
        interfaces.append(
            AgentInterface(url=rpc, protocol_binding=JSONRPC, protocol_version=served.value)
        )
        if rest:
            interfaces.append(
                AgentInterface(
                    url=rest_at, protocol_binding=HTTP_JSON, protocol_version=served.value
                )
            )
        if grpc_url and served is Version.V1_0:
            interfaces.append(
                AgentInterface(url=grpc_url, protocol_binding=GRPC, protocol_version=served.value)
            )
    if not interfaces:
        raise ValueError("a card needs at least one A2A version")
    listed = [AgentSkill.model_validate(s) for s in skills]
    # 1.0 makes `skills` and each skill's `tags` required and non-empty.
    listed = [s if s.tags else s.model_copy(update={"tags": [s.id]}) for s in listed] or [
        AgentSkill(id="default", name=name, description=description, tags=["default"])
    ]
    declared = [e if isinstance(e, AgentExtension) else AgentExtension(uri=e) for e in extensions]
    return AgentCard(
        name=name,
        description=description,
        version=version,
        supported_interfaces=interfaces,
        capabilities=AgentCapabilities(
            streaming=streaming,
            push_notifications=push_notifications,
            extensions=declared or None,
            extended_agent_card=extended_card,
        ),
        default_input_modes=list(input_modes),
        default_output_modes=list(output_modes),
        skills=listed,
        bearer_auth=security,
        provider=provider,
        documentation_url=documentation_url,
    )


def card_v1(card: AgentCard) -> dict[str, Any]:
    out = card.model_dump(by_alias=True, exclude_none=True, mode="json", exclude={"bearer_auth"})
    if card.bearer_auth:
        out["securitySchemes"] = {"bearer": {"httpAuthSecurityScheme": {"scheme": "Bearer"}}}
        out["securityRequirements"] = [{"schemes": {"bearer": {"list": []}}}]
    return out


def card_v03(card: AgentCard) -> dict[str, Any]:
    interfaces = [i for i in card.supported_interfaces if i.protocol_version.startswith("0.3")]
    if not interfaces:
        raise ValueError("the card lists no A2A 0.3 interface")
    main = interfaces[0]
    capabilities = card.capabilities.model_dump(
        by_alias=True, exclude_none=True, mode="json", exclude={"extended_agent_card"}
    )
    out: dict[str, Any] = {
        "protocolVersion": V03_PROTOCOL_VERSION,
        "name": card.name,
        "description": card.description,
        "url": main.url,
        "preferredTransport": main.protocol_binding,
        # 0.3 asks for the main interface to be listed here too.
        "additionalInterfaces": [
            {"url": i.url, "transport": i.protocol_binding} for i in interfaces
        ],
        "version": card.version,
        "capabilities": capabilities,
        "defaultInputModes": card.default_input_modes,
        "defaultOutputModes": card.default_output_modes,
        "skills": [s.dump() for s in card.skills],
    }
    if card.capabilities.extended_agent_card:
        out["supportsAuthenticatedExtendedCard"] = True
    if card.bearer_auth:
        out["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        out["security"] = [{"bearer": []}]
    for key, value in (
        ("provider", card.provider.dump() if card.provider else None),
        ("documentationUrl", card.documentation_url),
        ("iconUrl", card.icon_url),
    ):
        if value is not None:
            out[key] = value
    return out


def render_card(card: AgentCard, version: Version) -> dict[str, Any]:
    return card_v1(card) if version is Version.V1_0 else card_v03(card)


def card_document(card: AgentCard) -> dict[str, Any]:
    """The card for `/.well-known/agent-card.json`: the 1.0 card plus the 0.3 fields it
    lacks (url, preferredTransport, protocolVersion, security, ...)."""
    document = card_v1(card)
    if not any(i.protocol_version.startswith("0.3") for i in card.supported_interfaces):
        return document
    for key, value in card_v03(card).items():
        if key not in document:
            document[key] = value
        elif key == "securitySchemes":
            # One entry read both ways: 1.0's oneof field beside 0.3's `type` and `scheme`.
            for scheme, legacy in value.items():
                document[key][scheme] = {**document[key][scheme], **legacy}
    return document
