"""The Python client over the A2A 1.0 gRPC binding (`AndonClient(url="host:port",
binding="grpc")`; needs the `grpc` extra). Requests and answers are the binding's
protobuf messages, read and written as ProtoJSON, A2A 1.0's JSON, so the client's 1.0
codec reads them as it reads JSON-RPC results. An error is the gRPC status's
google.rpc.ErrorInfo reason, as the HTTP+JSON binding's is. gRPC stream items carry no
sequence number: a dropped gRPC stream is not resumed where it stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from andon.client.errors import ClientError, ServerUnreachable, Unauthorized
from andon.grpc_binding.messages import SERVICE, from_json, message_class, to_json
from andon.protocol.wire import Method

NAMES = {
    Method.SEND: "SendMessage",
    Method.STREAM: "SendStreamingMessage",
    Method.GET: "GetTask",
    Method.LIST: "ListTasks",
    Method.CANCEL: "CancelTask",
    Method.SUBSCRIBE: "SubscribeToTask",
    Method.PUSH_CREATE: "CreateTaskPushNotificationConfig",
    Method.PUSH_GET: "GetTaskPushNotificationConfig",
    Method.PUSH_LIST: "ListTaskPushNotificationConfigs",
    Method.PUSH_DELETE: "DeleteTaskPushNotificationConfig",
    Method.EXTENDED_CARD: "GetExtendedAgentCard",
}


class GrpcDropped(Exception):
    """A stream's call failed after it had begun."""


class GrpcTransport:
    def __init__(self, target: str, token: str | None) -> None:
        self.target = target
        self.metadata: tuple[tuple[str, str], ...] = (("a2a-version", "1.0"),)
        if token:
            self.metadata += (("authorization", f"Bearer {token}"),)
        self.channel = grpc.aio.insecure_channel(target)

    async def aclose(self) -> None:
        await self.channel.close()

    def _rpc(self, method: Method) -> tuple[str, str, str, bool]:
        name = NAMES.get(method)
        if name is None:
            raise ClientError(f"{method.value} is an andon extension, not served over gRPC")
        rpc = SERVICE.methods_by_name[name]
        path = f"/{SERVICE.full_name}/{name}"
        return path, rpc.input_type.full_name, rpc.output_type.full_name, rpc.server_streaming

    async def call(self, method: Method, params: dict[str, Any], timeout: float | None) -> Any:
        path, request, response, _ = self._rpc(method)
        call = self.channel.unary_unary(
            path,
            request_serializer=message_class(request).SerializeToString,
            response_deserializer=message_class(response).FromString,
        )
        try:
            answer = await call(from_json(params, request), metadata=self.metadata, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc) from None
        return to_json(answer)

    async def stream(self, method: Method, params: dict[str, Any]) -> AsyncIterator[Any]:
        """The stream's items as ProtoJSON; GrpcDropped if it fails once begun."""
        path, request, response, _ = self._rpc(method)
        call = self.channel.unary_stream(
            path,
            request_serializer=message_class(request).SerializeToString,
            response_deserializer=message_class(response).FromString,
        )(from_json(params, request), metadata=self.metadata)
        begun = False
        try:
            async for item in call:
                begun = True
                yield to_json(item)
        except grpc.aio.AioRpcError as exc:
            if begun and exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                raise GrpcDropped(exc.details() or exc.code().name) from None
            raise self._error(exc) from None
        finally:
            call.cancel()  # closing the stream early ends the call (its disconnect policy)

    def _error(self, exc: grpc.aio.AioRpcError) -> ClientError:
        from andon.client.api import rest_error

        code = exc.code()
        if code is grpc.StatusCode.UNAVAILABLE:
            return ServerUnreachable(self.target, exc.details() or "unavailable")
        if code is grpc.StatusCode.UNAUTHENTICATED:
            return Unauthorized(
                self.target, exc.details() or "", token_given=len(self.metadata) > 1
            )
        details = []
        for key, value in exc.trailing_metadata() or ():
            if key == "grpc-status-details-bin" and isinstance(value, bytes):
                status = message_class("google.rpc.Status").FromString(value)
                for detail in status.details:
                    info = message_class("google.rpc.ErrorInfo").FromString(detail.value)
                    details.append({"reason": info.reason})
        return rest_error({"error": {"message": exc.details(), "details": details}}, 0)
