"""The protobuf messages of the gRPC binding, from descriptors.pb (compiled from
a2a.proto and status.proto) into a descriptor pool of andon's own: a process may also
hold another copy of A2A's messages under the same names (the official SDK's), and the
default pool would refuse the second."""

from __future__ import annotations

from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

POOL = descriptor_pool.DescriptorPool()
_files = descriptor_pb2.FileDescriptorSet.FromString(
    resources.files("andon.grpc_binding").joinpath("descriptors.pb").read_bytes()
)
for _file in _files.file:
    POOL.Add(_file)

SERVICE = POOL.FindServiceByName("lf.a2a.v1.A2AService")


def message_class(name: str) -> type[Message]:
    """The class of a message, by its full name (`lf.a2a.v1.Task`)."""
    found: type[Message] = message_factory.GetMessageClass(POOL.FindMessageTypeByName(name))
    return found


def to_json(message: Message) -> dict[str, Any]:
    """A message as ProtoJSON (camelCase names, enums by name): A2A 1.0's JSON form."""
    data: dict[str, Any] = json_format.MessageToDict(message)
    return data


def from_json(data: Any, name: str) -> Message:
    """A message from ProtoJSON; fields the message does not have are ignored."""
    return json_format.ParseDict(data, message_class(name)(), ignore_unknown_fields=True)
