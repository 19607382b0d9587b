"""A2A 1.0 over gRPC: every method of `lf.a2a.v1.A2AService`, the two server streams
included, served by grpc.aio beside the HTTP server, through the same Operations (and so
the same TaskService) as JSON-RPC and HTTP+JSON.

A request is read as ProtoJSON, which is A2A 1.0's JSON: the 1.0 codec decodes it as it
does a JSON-RPC request's params, and its answer is written back into the method's
response message. Errors are the gRPC status the specification gives each A2A error,
with a google.rpc.Status carrying an ErrorInfo (reason, domain `a2a-protocol.org`) in the
`grpc-status-details-bin` trailer. Credentials come as `authorization` metadata; the
A2A version, if sent, as `a2a-version` (only 1.0 is served over gRPC); andon's
disconnect policy as `x-andon-on-disconnect`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from andon.grpc_binding.messages import SERVICE, from_json, message_class, to_json
from andon.protocol import errors as a2a
from andon.protocol.codec import codec_for, negotiate
from andon.protocol.wire import Method, Version
from andon.server.app import A2AServer, encode_update
from andon.server.http import DISCONNECT_HEADER
from andon.server.streams import DisconnectPolicy
from andon.service import Principal

log = logging.getLogger("andon.grpc")

DOMAIN = "a2a-protocol.org"
STATUS_TRAILER = "grpc-status-details-bin"
CODEC = codec_for(Version.V1_0)

METHODS = {
    "SendMessage": Method.SEND,
    "SendStreamingMessage": Method.STREAM,
    "GetTask": Method.GET,
    "ListTasks": Method.LIST,
    "CancelTask": Method.CANCEL,
    "SubscribeToTask": Method.SUBSCRIBE,
    "CreateTaskPushNotificationConfig": Method.PUSH_CREATE,
    "GetTaskPushNotificationConfig": Method.PUSH_GET,
    "ListTaskPushNotificationConfigs": Method.PUSH_LIST,
    "GetExtendedAgentCard": Method.EXTENDED_CARD,
    "DeleteTaskPushNotificationConfig": Method.PUSH_DELETE,
}

# The gRPC status of each A2A error (A2A 1.0, section 10.6).
STATUS: dict[type[a2a.A2AError], grpc.StatusCode] = {
    a2a.JSONParseError: grpc.StatusCode.INVALID_ARGUMENT,
    a2a.InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    a2a.InvalidParams: grpc.StatusCode.INVALID_ARGUMENT,
    a2a.MethodNotFound: grpc.StatusCode.UNIMPLEMENTED,
    a2a.InternalError: grpc.StatusCode.INTERNAL,
    a2a.TaskNotFound: grpc.StatusCode.NOT_FOUND,
    a2a.TaskNotCancelable: grpc.StatusCode.FAILED_PRECONDITION,
    a2a.PushNotificationNotSupported: grpc.StatusCode.UNIMPLEMENTED,
    a2a.UnsupportedOperation: grpc.StatusCode.UNIMPLEMENTED,
    a2a.ContentTypeNotSupported: grpc.StatusCode.INVALID_ARGUMENT,
    a2a.InvalidAgentResponse: grpc.StatusCode.INTERNAL,
    a2a.ExtendedAgentCardNotConfigured: grpc.StatusCode.FAILED_PRECONDITION,
    a2a.ExtensionSupportRequired: grpc.StatusCode.FAILED_PRECONDITION,
    a2a.VersionNotSupported: grpc.StatusCode.UNIMPLEMENTED,
}


class Unauthenticated(Exception):
    pass


def status_details(code: grpc.StatusCode, error: a2a.A2AError) -> bytes:
    """The google.rpc.Status of an error, with its ErrorInfo, serialized."""
    info = message_class("google.rpc.ErrorInfo")(reason=error.reason, domain=DOMAIN)
    detail = message_class("google.protobuf.Any")(
        type_url=f"type.googleapis.com/{info.DESCRIPTOR.full_name}",
        value=info.SerializeToString(),
    )
    status = message_class("google.rpc.Status")(
        code=code.value[0], message=error.message, details=[detail]
    )
    serialized: bytes = status.SerializeToString()
    return serialized


class GrpcBinding:
    """The handlers of A2AService, over an A2AServer's operations and settings."""

    def __init__(self, server: A2AServer) -> None:
        self.server = server

    def handler(self) -> grpc.GenericRpcHandler:
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        for rpc in SERVICE.methods:
            request = message_class(rpc.input_type.full_name)
            response = message_class(rpc.output_type.full_name)
            method = METHODS[rpc.name]
            if rpc.server_streaming:
                handlers[rpc.name] = grpc.unary_stream_rpc_method_handler(
                    self._streaming(method, response),
                    request_deserializer=request.FromString,
                    response_serializer=response.SerializeToString,
                )
            else:
                handlers[rpc.name] = grpc.unary_unary_rpc_method_handler(
                    self._unary(method, response),
                    request_deserializer=request.FromString,
                    response_serializer=response.SerializeToString,
                )
        return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)

    def _unary(
        self, method: Method, response: type[Message]
    ) -> Callable[[Message, grpc.aio.ServicerContext], Awaitable[Message]]:
        async def call(request: Message, context: grpc.aio.ServicerContext) -> Message:
            try:
                principal = self._principal(context)
                result = await self.server._call(method, CODEC, to_json(request), principal)
                return from_json(result, response.DESCRIPTOR.full_name)
            except Exception as exc:
                await self._abort(context, exc)
                raise  # abort raised already; this keeps type checkers content

        return call

    def _streaming(
        self, method: Method, response: type[Message]
    ) -> Callable[[Message, grpc.aio.ServicerContext], AsyncIterator[Message]]:
        async def stream(request: Message, context: grpc.aio.ServicerContext) -> Any:
            try:
                principal = self._principal(context)
                updates = await self._open(method, to_json(request), principal, context)
                async for update in updates:
                    item = encode_update(CODEC, update)
                    if item is not None:
                        yield from_json(item, response.DESCRIPTOR.full_name)
            except Exception as exc:
                await self._abort(context, exc)

        return stream

    async def _open(
        self,
        method: Method,
        params: dict[str, Any],
        principal: Principal,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[Any]:
        operations = self.server.operations
        if method is Method.STREAM:
            send = CODEC.decode_send(params)
            metadata = {**(send.message.metadata or {}), **(send.metadata or {})}
            policy = self._policy(context, metadata)
            return await operations.stream(send, principal, policy, Version.V1_0.value)
        subscribe = CODEC.decode_subscribe(params)
        policy = self._policy(context, subscribe.metadata)
        last = _metadata(context).get("last-event-id")
        return await operations.subscribe(subscribe, principal, last, policy)

    def _principal(self, context: grpc.aio.ServicerContext) -> Principal:
        metadata = _metadata(context)
        version = metadata.get("a2a-version")
        if version and negotiate(version) is not Version.V1_0:
            raise a2a.VersionNotSupported(
                f"A2A {version} is not served over gRPC; this binding speaks 1.0",
                data={"requested": version, "supported": "1.0"},
            )
        auth = self.server.config.auth
        if auth is None:
            from andon.server.auth import LOCAL

            return LOCAL
        principal = auth.authenticate(metadata.get("authorization"))
        if principal is None:
            raise Unauthenticated("a valid bearer token is required (authorization metadata)")
        return principal

    def _policy(
        self, context: grpc.aio.ServicerContext, metadata: dict[str, Any] | None
    ) -> DisconnectPolicy:
        chosen = _metadata(context).get(DISCONNECT_HEADER) or (metadata or {}).get(
            "andon.onDisconnect"
        )
        if chosen is None:
            return self.server.config.on_disconnect
        if not isinstance(chosen, str):
            raise a2a.InvalidParams("andon.onDisconnect must be a string")
        return DisconnectPolicy.parse(chosen)

    async def _abort(self, context: grpc.aio.ServicerContext, exc: Exception) -> None:
        if isinstance(exc, Unauthenticated):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        error = exc if isinstance(exc, a2a.A2AError) else None
        if error is None:
            log.error("gRPC request failed", exc_info=exc)
            error = a2a.InternalError()
        code = STATUS.get(type(error), grpc.StatusCode.INTERNAL)
        await context.abort(
            code, error.message, trailing_metadata=((STATUS_TRAILER, status_details(code, error)),)
        )


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {
        key.lower(): value
        for key, value in (context.invocation_metadata() or ())
        if isinstance(value, str)
    }


async def start_grpc(server: A2AServer, host: str, port: int) -> grpc.aio.Server:
    """A gRPC server for `server`'s agent on host:port, started."""
    running = grpc.aio.server()
    running.add_generic_rpc_handlers((GrpcBinding(server).handler(),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    running.add_insecure_port(address)
    await running.start()
    return running
