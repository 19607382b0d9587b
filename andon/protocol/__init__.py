"""A2A on the wire: canonical models, two codecs (1.0 and 0.3), the JSON-RPC envelope
and the Agent Card. Nothing here knows about tasks running; see DESIGN.md, "Layers"."""

from andon.protocol.card import (
    AgentCard,
    AgentExtension,
    AgentSkill,
    build_card,
    card_document,
    render_card,
)
from andon.protocol.codec import VERSION_HEADER, codec_for, negotiate
from andon.protocol.jsonrpc import (
    RejectedRequest,
    Request,
    error_response,
    parse_request,
    success_response,
)
from andon.protocol.params import (
    CancelManyParams,
    CancelTaskParams,
    GetTaskParams,
    ListTasksParams,
    ListTasksResult,
    RetryParams,
    SendMessageParams,
    SubscribeParams,
)
from andon.protocol.wire import Codec, Method, StreamItem, Version

__all__ = [
    "VERSION_HEADER",
    "AgentCard",
    "AgentExtension",
    "AgentSkill",
    "CancelManyParams",
    "CancelTaskParams",
    "Codec",
    "GetTaskParams",
    "ListTasksParams",
    "ListTasksResult",
    "Method",
    "RejectedRequest",
    "Request",
    "RetryParams",
    "SendMessageParams",
    "StreamItem",
    "SubscribeParams",
    "Version",
    "build_card",
    "card_document",
    "codec_for",
    "error_response",
    "negotiate",
    "parse_request",
    "render_card",
    "success_response",
]
