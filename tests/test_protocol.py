"""andon.protocol: both codecs against JSON the official SDKs produce, round trips of
every model and method in both versions, decoding errors, the JSON-RPC envelope,
version negotiation and the Agent Card. (a2a-sdk is not imported: its JSON is below.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from andon.protocol import (
    CancelManyParams,
    CancelTaskParams,
    Codec,
    GetTaskParams,
    ListTasksParams,
    Method,
    RejectedRequest,
    RetryParams,
    SendMessageParams,
    SubscribeParams,
    Version,
    build_card,
    card_document,
    codec_for,
    error_response,
    negotiate,
    parse_request,
    render_card,
    success_response,
)
from andon.protocol.errors import (
    A2AError,
    InvalidAgentResponse,
    InvalidParams,
    InvalidRequest,
    JSONParseError,
    MethodNotFound,
    TaskNotFound,
    VersionNotSupported,
)
from andon.protocol.params import (
    PushNotificationAuth,
    PushNotificationConfig,
    SendMessageConfiguration,
)
from andon.protocol.types import (
    Artifact,
    CancelReason,
    Message,
    Part,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
    agent_text,
)

V1 = codec_for(Version.V1_0)
V03 = codec_for(Version.V0_3)
BOTH = pytest.mark.parametrize("codec", [V1, V03], ids=["1.0", "0.3"])

# JSON produced by the official a2a-sdk 1.3.0 (protobuf MessageToDict of lf.a2a.v1 types)
SDK_V1: dict[str, Any] = {
    "send_result_task": {
        "task": {
            "id": "t1",
            "contextId": "c1",
            "status": {
                "state": "TASK_STATE_INPUT_REQUIRED",
                "message": {
                    "messageId": "m2",
                    "contextId": "c1",
                    "taskId": "t1",
                    "role": "ROLE_AGENT",
                    "parts": [{"data": {"y": None, "x": [1.0, 2.0]}}, {"data": "just a string"}],
                },
                "timestamp": "2025-05-01T12:00:00.123Z",
            },
            "artifacts": [
                {
                    "artifactId": "a1",
                    "name": "out",
                    "description": "d",
                    "parts": [{"text": "chunk"}],
                    "metadata": {"m": True},
                    "extensions": ["e"],
                }
            ],
            "history": [
                {
                    "messageId": "m1",
                    "contextId": "c1",
                    "taskId": "t1",
                    "role": "ROLE_USER",
                    "parts": [
                        {"text": "hello", "metadata": {"k": "v"}},
                        {
                            "raw": "AAFiaW5hcnk=",
                            "filename": "a.bin",
                            "mediaType": "application/octet-stream",
                        },
                        {"url": "https://x/y.png", "filename": "y.png", "mediaType": "image/png"},
                    ],
                    "metadata": {"a": 1.0},
                    "extensions": ["https://ext/1"],
                    "referenceTaskIds": ["t0"],
                }
            ],
            "metadata": {"z": "q"},
        }
    },
    "send_result_message": {
        "message": {
            "messageId": "m2",
            "contextId": "c1",
            "taskId": "t1",
            "role": "ROLE_AGENT",
            "parts": [{"data": {"y": None, "x": [1.0, 2.0]}}, {"data": "just a string"}],
        }
    },
    "stream_status": {
        "statusUpdate": {
            "taskId": "t1",
            "contextId": "c1",
            "status": {"state": "TASK_STATE_COMPLETED", "timestamp": "2025-05-01T12:00:00.123Z"},
            "metadata": {"r": 1.0},
        }
    },
    "stream_artifact": {
        "artifactUpdate": {
            "taskId": "t1",
            "contextId": "c1",
            "artifact": {
                "artifactId": "a1",
                "name": "out",
                "description": "d",
                "parts": [{"text": "chunk"}],
                "metadata": {"m": True},
                "extensions": ["e"],
            },
            "append": True,
        }
    },
    "send_params": {
        "message": {
            "messageId": "m1",
            "contextId": "c1",
            "taskId": "t1",
            "role": "ROLE_USER",
            "parts": [
                {"text": "hello", "metadata": {"k": "v"}},
                {
                    "raw": "AAFiaW5hcnk=",
                    "filename": "a.bin",
                    "mediaType": "application/octet-stream",
                },
                {"url": "https://x/y.png", "filename": "y.png", "mediaType": "image/png"},
            ],
            "metadata": {"a": 1.0},
            "extensions": ["https://ext/1"],
            "referenceTaskIds": ["t0"],
        },
        "configuration": {
            "acceptedOutputModes": ["text/plain"],
            "taskPushNotificationConfig": {
                "url": "https://hook",
                "token": "tok",
                "authentication": {"scheme": "Bearer", "credentials": "x"},
            },
            "historyLength": 3,
            "returnImmediately": True,
        },
        "metadata": {"andon.disconnect": "cancel"},
    },
    "list_params": {
        "contextId": "c1",
        "status": "TASK_STATE_WORKING",
        "pageSize": 10,
        "pageToken": "abc",
        "historyLength": 2,
        "statusTimestampAfter": "2025-05-01T00:00:00Z",
        "includeArtifacts": True,
    },
    "cancel_params": {"id": "t1", "metadata": {"andon.reason": "user"}},
    "get_params": {"id": "t1", "historyLength": 0},
    "error_not_found": {
        "error": {
            "code": -32001,
            "message": "Task not found",
            "data": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "TASK_NOT_FOUND",
                    "domain": "a2a-protocol.org",
                    "metadata": {},
                }
            ],
        },
        "id": 1,
        "jsonrpc": "2.0",
    },
}

# JSON produced by the official a2a-sdk 0.3.26 (pydantic model_dump by alias)
SDK_V03: dict[str, Any] = {
    "task": {
        "artifacts": [
            {
                "artifactId": "a1",
                "description": "d",
                "extensions": ["e"],
                "metadata": {"m": True},
                "name": "out",
                "parts": [{"kind": "text", "text": "chunk"}],
            }
        ],
        "contextId": "c1",
        "history": [
            {
                "contextId": "c1",
                "extensions": ["https://ext/1"],
                "kind": "message",
                "messageId": "m1",
                "metadata": {"a": 1},
                "parts": [
                    {"kind": "text", "metadata": {"k": "v"}, "text": "hello"},
                    {
                        "file": {
                            "bytes": "AAFiaW5hcnk=",
                            "mimeType": "application/octet-stream",
                            "name": "a.bin",
                        },
                        "kind": "file",
                    },
                    {
                        "file": {
                            "mimeType": "image/png",
                            "name": "y.png",
                            "uri": "https://x/y.png",
                        },
                        "kind": "file",
                    },
                ],
                "referenceTaskIds": ["t0"],
                "role": "user",
                "taskId": "t1",
            }
        ],
        "id": "t1",
        "kind": "task",
        "metadata": {"z": "q"},
        "status": {
            "message": {
                "contextId": "c1",
                "kind": "message",
                "messageId": "m2",
                "parts": [{"data": {"x": [1, 2], "y": None}, "kind": "data"}],
                "role": "agent",
                "taskId": "t1",
            },
            "state": "input-required",
            "timestamp": "2025-05-01T12:00:00.123Z",
        },
    },
    "status_update": {
        "contextId": "c1",
        "final": True,
        "kind": "status-update",
        "metadata": {"r": 1},
        "status": {"state": "completed", "timestamp": "2025-05-01T12:00:00.123Z"},
        "taskId": "t1",
    },
    "artifact_update": {
        "append": True,
        "artifact": {
            "artifactId": "a1",
            "description": "d",
            "extensions": ["e"],
            "metadata": {"m": True},
            "name": "out",
            "parts": [{"kind": "text", "text": "chunk"}],
        },
        "contextId": "c1",
        "kind": "artifact-update",
        "lastChunk": False,
        "taskId": "t1",
    },
    "send_params": {
        "configuration": {
            "acceptedOutputModes": ["text/plain"],
            "blocking": False,
            "historyLength": 3,
            "pushNotificationConfig": {
                "authentication": {"credentials": "x", "schemes": ["Bearer"]},
                "token": "tok",
                "url": "https://hook",
            },
        },
        "message": {
            "contextId": "c1",
            "extensions": ["https://ext/1"],
            "kind": "message",
            "messageId": "m1",
            "metadata": {"a": 1},
            "parts": [
                {"kind": "text", "metadata": {"k": "v"}, "text": "hello"},
                {
                    "file": {
                        "bytes": "AAFiaW5hcnk=",
                        "mimeType": "application/octet-stream",
                        "name": "a.bin",
                    },
                    "kind": "file",
                },
                {
                    "file": {"mimeType": "image/png", "name": "y.png", "uri": "https://x/y.png"},
                    "kind": "file",
                },
            ],
            "referenceTaskIds": ["t0"],
            "role": "user",
            "taskId": "t1",
        },
        "metadata": {"andon.disconnect": "cancel"},
    },
    "get_params": {"historyLength": 0, "id": "t1"},
    "stream_status_response": {
        "id": 1,
        "jsonrpc": "2.0",
        "result": {
            "contextId": "c1",
            "final": False,
            "kind": "status-update",
            "status": {"state": "working"},
            "taskId": "t1",
        },
    },
    "card": {
        "additionalInterfaces": [
            {"transport": "JSONRPC", "url": "http://h/a2a"},
            {"transport": "HTTP+JSON", "url": "http://h/rest"},
        ],
        "capabilities": {
            "extensions": [{"uri": "https://andon.dev/ext/cancel/v1"}],
            "pushNotifications": False,
            "streaming": True,
        },
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "description": "d",
        "name": "n",
        "preferredTransport": "JSONRPC",
        "protocolVersion": "0.3.0",
        "security": [{"bearer": []}],
        "securitySchemes": {"bearer": {"scheme": "bearer", "type": "http"}},
        "skills": [{"description": "sd", "examples": ["e"], "id": "s", "name": "S", "tags": ["t"]}],
        "url": "http://h/a2a",
        "version": "1.2.3",
    },
}


def wire(value: Any) -> Any:
    """Through real JSON bytes, as a client would read it."""
    return json.loads(success_response(1, value))["result"]


def user_message() -> Message:
    return Message(
        message_id="m1",
        role=Role.USER,
        context_id="c1",
        task_id="t1",
        parts=[
            Part(text="hello", metadata={"k": "v"}),
            Part(raw="AAFiaW5hcnk=", media_type="application/octet-stream", filename="a.bin"),
            Part(url="https://x/y.png", media_type="image/png", filename="y.png"),
            Part(data={"x": [1, 2], "y": None}),
            Part(data=[1, "two"]),
        ],
        reference_task_ids=["t0"],
        extensions=["https://ext/1"],
        metadata={"a": 1},
    )


def agent_message() -> Message:
    return Message(message_id="m2", role=Role.AGENT, parts=[Part(text="which topic?")])


def sample_task(state: TaskState = TaskState.INPUT_REQUIRED) -> Task:
    return Task(
        id="t1",
        context_id="c1",
        status=TaskStatus(
            state=state, message=agent_message(), timestamp="2025-05-01T12:00:00.123Z"
        ),
        history=[user_message()],
        artifacts=[
            Artifact(artifact_id="a1", name="out", parts=[Part(text="chunk")], metadata={"m": True})
        ],
        metadata={"z": "q"},
    )


def status_update(final: bool = True) -> TaskStatusUpdateEvent:
    state = TaskState.COMPLETED if final else TaskState.WORKING
    return TaskStatusUpdateEvent(
        task_id="t1",
        context_id="c1",
        status=TaskStatus(
            state=state, message=agent_message(), timestamp="2025-05-01T12:00:01.000Z"
        ),
        final=final,
        metadata={"andon.reason": "user"},
    )


def artifact_update() -> TaskArtifactUpdateEvent:
    return TaskArtifactUpdateEvent(
        task_id="t1",
        context_id="c1",
        artifact=Artifact(artifact_id="a1", parts=[Part(text="more")]),
        append=True,
        last_chunk=True,
    )


def failure(call: Any, *args: Any) -> A2AError:
    with pytest.raises(A2AError) as caught:
        call(*args)
    return caught.value


# -- the official SDKs' JSON -----------------------------------------------------------


def test_sdk_v1_task_decodes_and_encodes_back() -> None:
    task = V1.decode_send_result(SDK_V1["send_result_task"])
    assert isinstance(task, Task)
    assert task.status.state is TaskState.INPUT_REQUIRED
    assert task.status.message is not None and task.status.message.role is Role.AGENT
    assert task.status.message.parts[1].data == "just a string"
    history = task.history or []
    assert history[0].role is Role.USER
    assert history[0].parts[1].raw == "AAFiaW5hcnk=" and history[0].parts[1].filename == "a.bin"
    assert history[0].parts[2].url == "https://x/y.png"
    assert V1.encode_send_result(task) == SDK_V1["send_result_task"]


def test_sdk_v1_message_result_decodes_and_encodes_back() -> None:
    message = V1.decode_send_result(SDK_V1["send_result_message"])
    assert isinstance(message, Message) and message.parts[0].data == {"x": [1.0, 2.0], "y": None}
    assert V1.encode_send_result(message) == SDK_V1["send_result_message"]


def test_sdk_v1_status_update_has_no_final_flag_and_ends_the_stream() -> None:
    event = V1.decode_stream_item(SDK_V1["stream_status"])
    assert isinstance(event, TaskStatusUpdateEvent)
    assert event.status.state is TaskState.COMPLETED and event.final
    assert event.status.timestamp == "2025-05-01T12:00:00.123Z"
    assert V1.encode_stream_item(event) == SDK_V1["stream_status"]


def test_sdk_v1_artifact_update() -> None:
    event = V1.decode_stream_item(SDK_V1["stream_artifact"])
    assert isinstance(event, TaskArtifactUpdateEvent)
    assert event.append and not event.last_chunk
    # ProtoJSON leaves out false booleans; andon writes them, which parses the same.
    assert V1.encode_stream_item(event) == {
        "artifactUpdate": {**SDK_V1["stream_artifact"]["artifactUpdate"], "lastChunk": False}
    }


def test_sdk_v1_request_params() -> None:
    send = V1.decode_send(SDK_V1["send_params"])
    config = send.configuration
    assert config is not None and config.return_immediately and not config.blocking
    assert config.history_length == 3 and config.accepted_output_modes == ["text/plain"]
    push = config.push_notification_config
    assert push is not None and push.authentication is not None
    assert push.url == "https://hook" and push.authentication.scheme == "Bearer"
    assert V1.encode_params(send) == SDK_V1["send_params"]

    listing = V1.decode_list(SDK_V1["list_params"])
    assert listing.status is TaskState.WORKING and listing.page_size == 10
    assert listing.include_artifacts and listing.history_length == 2
    assert listing.status_timestamp_after is not None
    assert listing.status_timestamp_after.isoformat() == "2025-05-01T00:00:00+00:00"
    assert V1.encode_params(listing) == SDK_V1["list_params"]

    cancel = V1.decode_cancel(SDK_V1["cancel_params"])
    assert cancel.id == "t1" and cancel.reason is CancelReason.USER and cancel.metadata is None
    assert V1.encode_params(cancel) == SDK_V1["cancel_params"]

    get = V1.decode_get(SDK_V1["get_params"])
    assert get.id == "t1" and get.history_length == 0  # 1.0: zero means no history


def test_sdk_v1_error_shape() -> None:
    ours = V1.encode_error(TaskNotFound())
    assert ours == SDK_V1["error_not_found"]["error"]


def test_sdk_v03_task_decodes_and_encodes_back() -> None:
    task = V03.decode_task(SDK_V03["task"])
    assert task.status.state is TaskState.INPUT_REQUIRED
    history = task.history or []
    assert history[0].parts[1].raw == "AAFiaW5hcnk=" and history[0].parts[1].media_type == (
        "application/octet-stream"
    )
    assert history[0].parts[2].url == "https://x/y.png" and history[0].parts[2].filename == "y.png"
    assert V03.encode_task(task) == SDK_V03["task"]
    # The same task, said in 1.0, then read back: one model set, two wire forms.
    assert V1.decode_task(wire(V1.encode_task(task))) == task


def test_sdk_v03_stream_items() -> None:
    status = V03.decode_stream_item(SDK_V03["status_update"])
    assert isinstance(status, TaskStatusUpdateEvent) and status.final
    assert V03.encode_stream_item(status) == SDK_V03["status_update"]
    artifact = V03.decode_stream_item(SDK_V03["artifact_update"])
    assert isinstance(artifact, TaskArtifactUpdateEvent) and artifact.append
    assert V03.encode_stream_item(artifact) == SDK_V03["artifact_update"]
    working = V03.decode_stream_item(SDK_V03["stream_status_response"]["result"])
    assert isinstance(working, TaskStatusUpdateEvent) and not working.final


def test_sdk_v03_request_params() -> None:
    send = V03.decode_send(SDK_V03["send_params"])
    config = send.configuration
    assert config is not None and not config.blocking
    push = config.push_notification_config
    assert push is not None and push.authentication is not None
    assert push.authentication.scheme == "Bearer" and push.authentication.credentials == "x"
    assert send.metadata == {"andon.disconnect": "cancel"}
    assert V03.encode_params(send) == SDK_V03["send_params"]
    # 0.3 servers read historyLength 0 as "no limit" (the 0.3 SDK does).
    assert V03.decode_get(SDK_V03["get_params"]).history_length is None


def test_sdk_v03_card_fields() -> None:
    card = build_card(
        name="n",
        description="d",
        version="1.2.3",
        base_url="http://h/a2a",
        skills=[{"id": "s", "name": "S", "description": "sd", "tags": ["t"], "examples": ["e"]}],
        security=True,
        extensions=["https://andon.dev/ext/cancel/v1"],
        input_modes=["text/plain"],
        output_modes=["text/plain"],
    )
    ours = render_card(card, Version.V0_3)
    sdk = SDK_V03["card"]
    for key in ("url", "preferredTransport", "protocolVersion", "skills", "security"):
        assert ours[key] == sdk[key], key
    assert ours["capabilities"] == {
        **sdk["capabilities"],
        "extensions": [{"uri": "https://andon.dev/ext/cancel/v1", "required": False}],
    }
    assert ours["securitySchemes"] == sdk["securitySchemes"]
    assert {"url": "http://h/a2a", "transport": "JSONRPC"} in ours["additionalInterfaces"]


# -- round trips -----------------------------------------------------------------------


@BOTH
def test_task_and_message_round_trip(codec: Codec) -> None:
    task = sample_task()
    assert codec.decode_task(wire(codec.encode_task(task))) == task
    assert codec.decode_message(wire(codec.encode_message(user_message()))) == user_message()


@BOTH
def test_send_results_round_trip(codec: Codec) -> None:
    for result in (sample_task(), agent_message()):
        assert codec.decode_send_result(wire(codec.encode_send_result(result))) == result


@BOTH
def test_stream_items_round_trip(codec: Codec) -> None:
    items: list[Any] = [sample_task(), agent_message(), status_update(), artifact_update()]
    for item in items:
        assert codec.decode_stream_item(wire(codec.encode_stream_item(item))) == item


@BOTH
def test_working_status_update_round_trips_not_final(codec: Codec) -> None:
    item = status_update(final=False)
    assert codec.decode_stream_item(wire(codec.encode_stream_item(item))) == item


@BOTH
def test_task_list_round_trip(codec: Codec) -> None:
    page = codec.decode_task_list(wire(codec.encode_task_list([sample_task()], "next", 10, 11)))
    assert page.tasks == [sample_task()]
    assert (page.next_page_token, page.page_size, page.total_size) == ("next", 10, 11)


REQUESTS: list[tuple[str, Any]] = [
    (
        "send",
        SendMessageParams(
            message=user_message(),
            configuration=SendMessageConfiguration(
                accepted_output_modes=["text/plain"],
                history_length=5,
                return_immediately=True,
                push_notification_config=PushNotificationConfig(
                    url="https://hook",
                    id="p1",
                    token="tok",
                    authentication=PushNotificationAuth(scheme="Bearer", credentials="c"),
                ),
            ),
            metadata={"andon.disconnect": "cancel"},
        ),
    ),
    ("send", SendMessageParams(message=user_message())),
    ("get", GetTaskParams(id="t1", history_length=3)),
    (
        "list",
        ListTasksParams(
            context_id="c1",
            status=TaskState.INPUT_REQUIRED,
            page_size=20,
            page_token="p",
            history_length=1,
            include_artifacts=True,
            status_timestamp_after=datetime(2025, 5, 1, tzinfo=UTC),
        ),
    ),
    ("list", ListTasksParams()),
    (
        "cancel",
        CancelTaskParams(
            id="t1", metadata={"k": 1}, reason=CancelReason.USER, wait=2.5, mode="graceful"
        ),
    ),
    ("cancel", CancelTaskParams(id="t1")),
    ("subscribe", SubscribeParams(id="t1", last_event_id="42")),
    (
        "cancel_many",
        CancelManyParams(context_id="c1", states=[TaskState.WORKING, TaskState.SUBMITTED], wait=0),
    ),
    ("cancel_many", CancelManyParams(ids=["a", "b"], reason=CancelReason.SHUTDOWN)),
    ("retry", RetryParams(id="t1")),
]


@BOTH
@pytest.mark.parametrize(("kind", "params"), REQUESTS)
def test_request_params_round_trip(codec: Codec, kind: str, params: Any) -> None:
    decoder = getattr(codec, f"decode_{kind}")
    assert decoder(wire(codec.encode_params(params))) == params


@BOTH
def test_method_names_cover_every_method(codec: Codec) -> None:
    assert set(codec.names) == set(Method)
    for name, method in codec.methods.items():
        assert codec.method(name) is method and codec.names[method] == name


def test_method_names() -> None:
    assert V1.names[Method.SEND] == "SendMessage"
    assert V1.names[Method.STREAM] == "SendStreamingMessage"
    assert V1.names[Method.SUBSCRIBE] == "SubscribeToTask"
    assert V1.names[Method.PUSH_LIST] == "ListTaskPushNotificationConfigs"
    assert V1.names[Method.EXTENDED_CARD] == "GetExtendedAgentCard"
    assert V03.names[Method.SEND] == "message/send"
    assert V03.names[Method.SUBSCRIBE] == "tasks/resubscribe"
    assert V03.names[Method.PUSH_CREATE] == "tasks/pushNotificationConfig/set"
    assert V03.names[Method.EXTENDED_CARD] == "agent/getAuthenticatedExtendedCard"
    assert V03.names[Method.LIST] == "tasks/list"
    assert Method.STREAM.streaming and Method.SUBSCRIBE.streaming and not Method.SEND.streaming


def test_wire_shapes() -> None:
    v1 = wire(V1.encode_task(sample_task()))
    assert v1["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
    assert v1["history"][0]["role"] == "ROLE_USER" and "kind" not in v1
    assert v1["history"][0]["parts"][1] == {
        "raw": "AAFiaW5hcnk=",
        "mediaType": "application/octet-stream",
        "filename": "a.bin",
    }
    v03 = wire(V03.encode_task(sample_task()))
    assert v03["kind"] == "task" and v03["status"]["state"] == "input-required"
    assert v03["history"][0]["kind"] == "message" and v03["history"][0]["role"] == "user"
    assert v03["history"][0]["parts"][2] == {
        "kind": "file",
        "file": {"uri": "https://x/y.png", "mimeType": "image/png", "name": "y.png"},
    }
    # 0.3 data parts hold an object; other values go wrapped, as the official SDK does.
    assert v03["history"][0]["parts"][4] == {
        "kind": "data",
        "data": {"value": [1, "two"]},
        "metadata": {"data_part_compat": True},
    }
    assert wire(V1.encode_send_result(agent_message()))["message"]["role"] == "ROLE_AGENT"
    assert "final" not in wire(V1.encode_stream_item(status_update()))["statusUpdate"]
    assert wire(V03.encode_stream_item(status_update()))["final"] is True


def test_v03_accepts_task_id_and_parts_without_kind() -> None:
    params = V03.decode_send(
        {"message": {"messageId": "m", "role": "user", "parts": [{"text": "hi"}], "taskId": "t"}}
    )
    assert params.message.text == "hi" and params.message.task_id == "t"
    assert V03.decode_cancel({"taskId": "t9"}).id == "t9"
    assert V03.decode_subscribe({"taskId": "t9"}).id == "t9"
    assert V03.decode_get({"taskId": "t9", "historyLength": 2}).history_length == 2


def test_v1_accepts_enum_numbers() -> None:
    params = V1.decode_send({"message": {"messageId": "m", "role": 1, "parts": [{"text": "x"}]}})
    assert params.message.role is Role.USER
    assert V1.decode_list({"status": 2}).status is TaskState.WORKING
    assert V1.decode_list({"status": "TASK_STATE_UNSPECIFIED"}).status is None


def test_v03_tasks_list_draft_params() -> None:
    # The JSON-RPC tasks/list drafted after 0.3: lowercase status, lastUpdatedAfter in ms.
    params = V03.decode_list({"status": "working", "lastUpdatedAfter": 1714521600000})
    assert params.status is TaskState.WORKING
    assert params.status_timestamp_after == datetime(2024, 5, 1, tzinfo=UTC)


def test_cancel_options_from_metadata_or_top_level() -> None:
    for codec in (V1, V03):
        lifted = codec.decode_cancel(
            {"id": "t", "metadata": {"andon.reason": "user", "andon.wait": 3, "keep": True}}
        )
        assert (lifted.reason, lifted.wait, lifted.metadata) == (
            CancelReason.USER,
            3.0,
            {"keep": True},
        )
        top = codec.decode_cancel({"id": "t", "reason": "operator", "wait": 0, "mode": "graceful"})
        assert (top.reason, top.wait, top.mode) == (CancelReason.OPERATOR, 0.0, "graceful")
        both = codec.decode_cancel(
            {"id": "t", "reason": "timeout", "metadata": {"andon.reason": "user"}}
        )
        assert both.reason is CancelReason.TIMEOUT and both.metadata is None


# -- events from the store -------------------------------------------------------------


@BOTH
def test_status_event_hides_canceling(codec: Codec) -> None:
    data = {
        "state": "canceling",
        "priorState": "input-required",
        "timestamp": 1714521600.5,
        "message": agent_message().dump(),
        "reason": "user",
    }
    event = codec.decode_stream_item(wire(codec.encode_event("t1", "c1", "status", data, False)))
    assert isinstance(event, TaskStatusUpdateEvent)
    assert event.status.state is TaskState.INPUT_REQUIRED
    assert event.status.timestamp == "2024-05-01T00:00:00.500Z"
    assert event.status.message == agent_message()
    assert event.metadata == {"andon.reason": "user", "andon.canceling": True}
    assert (event.task_id, event.context_id) == ("t1", "c1")


def test_status_event_final_flag() -> None:
    data = {"state": "canceled", "timestamp": 1714521601, "reason": "user"}
    v03 = V03.encode_event("t1", "c1", "status", data, True)
    assert v03 is not None and v03["final"] is True and v03["kind"] == "status-update"
    assert v03["status"] == {"state": "canceled", "timestamp": "2024-05-01T00:00:01.000Z"}
    v1 = V1.encode_event("t1", "c1", "status", data, True)
    assert v1 == {
        "statusUpdate": {
            "taskId": "t1",
            "contextId": "c1",
            "status": {"state": "TASK_STATE_CANCELED", "timestamp": "2024-05-01T00:00:01.000Z"},
            "metadata": {"andon.reason": "user"},
        }
    }


@BOTH
def test_final_event_carries_what_the_stop_recorded(codec: Codec) -> None:
    data = {
        "state": "canceled",
        "timestamp": 1714521601,
        "reason": "user",
        "metadata": {"andon.stopMs": 1.25},
    }
    event = codec.decode_stream_item(wire(codec.encode_event("t1", "c1", "status", data, True)))
    assert isinstance(event, TaskStatusUpdateEvent)
    assert event.metadata == {"andon.stopMs": 1.25, "andon.reason": "user"}


@BOTH
def test_progress_and_artifact_events(codec: Codec) -> None:
    progress = codec.encode_event(
        "t1", "c1", "progress", {"state": "working", "message": agent_message().dump()}, False
    )
    event = codec.decode_stream_item(wire(progress))
    assert isinstance(event, TaskStatusUpdateEvent) and not event.final
    assert event.status.state is TaskState.WORKING and event.status.message == agent_message()

    chunk = Artifact(artifact_id="a1", parts=[Part(text="x")])
    raw = codec.encode_event(
        "t1",
        "c1",
        "artifact",
        {"artifact": chunk.dump(), "append": True, "lastChunk": False},
        False,
    )
    artifact = codec.decode_stream_item(wire(raw))
    assert isinstance(artifact, TaskArtifactUpdateEvent)
    assert artifact.artifact == chunk and artifact.append and not artifact.last_chunk


@BOTH
def test_message_events_are_not_streamed(codec: Codec) -> None:
    assert codec.encode_event("t1", "c1", "message", user_message().dump(), False) is None
    with pytest.raises(ValueError, match="unknown event kind"):
        codec.encode_event("t1", "c1", "bogus", {}, False)


@BOTH
def test_a_canceling_task_shows_working(codec: Codec) -> None:
    task = sample_task(TaskState.CANCELING)
    assert codec.decode_task(wire(codec.encode_task(task))).status.state is TaskState.WORKING


# -- decoding errors -------------------------------------------------------------------

MESSAGE_V1 = {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x"}]}
MESSAGE_V03 = {"messageId": "m", "role": "user", "parts": [{"kind": "text", "text": "x"}]}


@pytest.mark.parametrize(
    ("codec", "method", "params", "field"),
    [
        (V1, "send", {}, "message"),
        (V1, "send", {"message": "hi"}, "message"),
        (V1, "send", {"message": {**MESSAGE_V1, "role": "user"}}, "message.role"),
        (V1, "send", {"message": {**MESSAGE_V1, "messageId": None}}, "message.messageId"),
        (V1, "send", {"message": {**MESSAGE_V1, "parts": []}}, "message.parts"),
        (V1, "send", {"message": {**MESSAGE_V1, "parts": [{"text": 5}]}}, "message.parts[0].text"),
        (
            V1,
            "send",
            {"message": {**MESSAGE_V1, "parts": [{"text": "a", "url": "b"}]}},
            "message.parts[0]",
        ),
        (V1, "send", {"message": {**MESSAGE_V1, "metadata": []}}, "message.metadata"),
        (
            V1,
            "send",
            {"message": MESSAGE_V1, "configuration": {"historyLength": -1}},
            "configuration.historyLength",
        ),
        (V1, "send", {"message": MESSAGE_V1, "configuration": []}, "configuration"),
        (V1, "get", {}, "id"),
        (V1, "get", {"id": 7}, "id"),
        (V1, "get", {"id": ""}, "id"),
        (V1, "list", {"pageSize": 0}, "pageSize"),
        (V1, "list", {"pageSize": 101}, "pageSize"),
        (V1, "list", {"status": "working"}, "status"),
        (V1, "list", {"statusTimestampAfter": "yesterday"}, "statusTimestampAfter"),
        (V1, "cancel", {"id": "t", "reason": "because"}, "reason"),
        (V1, "cancel", {"id": "t", "metadata": {"andon.wait": -1}}, "wait"),
        (V1, "cancel_many", {}, ""),
        (V1, "cancel_many", {"states": ["TASK_STATE_WORKING", "busy"]}, "states[1]"),
        (V1, "retry", [], "params"),
        (V03, "send", {"message": {**MESSAGE_V03, "role": "robot"}}, "message.role"),
        (
            V03,
            "send",
            {"message": {**MESSAGE_V03, "parts": [{"kind": "video"}]}},
            "message.parts[0].kind",
        ),
        (
            V03,
            "send",
            {"message": {**MESSAGE_V03, "parts": [{"kind": "data", "data": [1]}]}},
            "message.parts[0].data",
        ),
        (
            V03,
            "send",
            {
                "message": {
                    **MESSAGE_V03,
                    "parts": [{"kind": "file", "file": {"bytes": "x", "uri": "y"}}],
                }
            },
            "message.parts[0].file",
        ),
        (
            V03,
            "send",
            {"message": {**MESSAGE_V03, "parts": [{"kind": "file", "file": {"uri": 3}}]}},
            "message.parts[0].file.uri",
        ),
        (
            V03,
            "send",
            {"message": MESSAGE_V03, "configuration": {"blocking": "yes"}},
            "configuration.blocking",
        ),
        (V03, "list", {"state": "canceling"}, "state"),
        (V03, "subscribe", {"id": None}, "id"),
    ],
)
def test_bad_params_are_invalid_params(codec: Codec, method: str, params: Any, field: str) -> None:
    error = failure(getattr(codec, f"decode_{method}"), params)
    assert isinstance(error, InvalidParams) and error.code == -32602
    problems = error.data["errors"]
    assert problems[0]["field"] == field
    assert error.message.startswith(f"{field}: " if field else problems[0]["message"])
    assert "pydantic" not in error.message and "\n" not in error.message


def test_method_of_the_other_version_names_the_header() -> None:
    error = failure(V03.method, "SendMessage")
    assert isinstance(error, VersionNotSupported) and error.code == -32009
    assert "A2A-Version: 1.0" in error.message
    error = failure(V1.method, "tasks/get")
    assert isinstance(error, VersionNotSupported) and "A2A-Version: 0.3" in error.message
    error = failure(V1.method, "tasks/frobnicate")
    assert isinstance(error, MethodNotFound) and error.code == -32601


@BOTH
def test_bad_results_are_invalid_agent_responses(codec: Codec) -> None:
    for call, raw in [
        (codec.decode_task, {"id": "t", "contextId": "c"}),
        (codec.decode_task, {"id": "t", "contextId": "c", "status": {"state": "done"}}),
        (codec.decode_message, {"messageId": "m"}),
        (codec.decode_stream_item, []),
        (codec.decode_send_result, wire(codec.encode_stream_item(status_update()))),
    ]:
        error = failure(call, raw)
        assert isinstance(error, InvalidAgentResponse) and error.code == -32006


def test_error_objects() -> None:
    problem = failure(V1.decode_get, {"id": 7})
    v1 = V1.encode_error(problem)
    assert v1["code"] == -32602 and v1["message"] == "id: Input should be a valid string"
    info, bad_request = v1["data"]
    assert info == {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "INVALID_PARAMS",
        "domain": "a2a-protocol.org",
        "metadata": {},
    }
    assert bad_request == {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "id", "description": "Input should be a valid string"}],
    }
    assert V03.encode_error(problem) == {
        "code": -32602,
        "message": "id: Input should be a valid string",
        "data": {"errors": [{"field": "id", "message": "Input should be a valid string"}]},
    }
    found = V1.encode_error(
        TaskNotFound("task t not found", data={"taskId": "t", "n": 2, "b": True})
    )
    assert found["data"][0]["metadata"] == {"taskId": "t", "n": "2", "b": "true"}
    assert V03.encode_error(TaskNotFound()) == {"code": -32001, "message": "Task not found"}


# -- JSON-RPC envelope -----------------------------------------------------------------


def test_parse_request() -> None:
    body = b'{"jsonrpc": "2.0", "id": 7, "method": "SendMessage", "params": {"a": 1}}'
    assert parse_request(body) == parse_request(body.decode())
    request = parse_request(body)
    assert (request.id, request.method, request.params) == (7, "SendMessage", {"a": 1})
    assert parse_request(b'{"jsonrpc":"2.0","id":"x","method":"GetExtendedAgentCard"}').params == {}
    assert parse_request(b'{"jsonrpc":"2.0","id":null,"method":"m","params":null}').id is None


@pytest.mark.parametrize(
    ("body", "error", "request_id"),
    [
        (b"{", JSONParseError, None),
        (b"\xff\xfe", JSONParseError, None),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "m", "x": NaN}', JSONParseError, None),
        (b"[]", InvalidRequest, None),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "m"}]', InvalidRequest, None),
        (b'"hello"', InvalidRequest, None),
        (b'{"jsonrpc": "2.0", "id": true, "method": "m"}', InvalidRequest, None),
        (b'{"jsonrpc": "2.0", "id": 1.5, "method": "m"}', InvalidRequest, None),
        (b'{"jsonrpc": "2.0", "id": {}, "method": "m"}', InvalidRequest, None),
        (b'{"id": 3, "method": "m"}', InvalidRequest, 3),
        (b'{"jsonrpc": "1.0", "id": 3, "method": "m"}', InvalidRequest, 3),
        (b'{"jsonrpc": "2.0", "id": "a", "params": {}}', InvalidRequest, "a"),
        (b'{"jsonrpc": "2.0", "id": "a", "method": ""}', InvalidRequest, "a"),
        (b'{"jsonrpc": "2.0", "id": "a", "method": 5}', InvalidRequest, "a"),
        (b'{"jsonrpc": "2.0", "id": "a", "method": "m", "params": "x"}', InvalidRequest, "a"),
        (b'{"jsonrpc": "2.0", "id": "a", "method": "m", "params": [1]}', InvalidParams, "a"),
    ],
)
def test_rejected_requests(body: bytes, error: type[A2AError], request_id: Any) -> None:
    with pytest.raises(RejectedRequest) as caught:
        parse_request(body)
    assert type(caught.value.error) is error
    assert caught.value.request_id == request_id


def test_responses_are_json_rpc() -> None:
    result = V1.encode_send_result(sample_task())
    assert json.loads(success_response("r1", result)) == {
        "jsonrpc": "2.0",
        "id": "r1",
        "result": result,
    }
    error = V03.encode_error(TaskNotFound())
    assert json.loads(error_response(None, error)) == {"jsonrpc": "2.0", "id": None, "error": error}
    # A NaN from an agent's data must not make the body invalid JSON.
    assert json.loads(success_response(1, {"x": float("nan")}))["result"] == {"x": None}


# -- version negotiation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "version"),
    [
        (None, Version.V0_3),
        ("", Version.V0_3),
        ("  ", Version.V0_3),
        ("0.3", Version.V0_3),
        ("0.3.0", Version.V0_3),
        ("1.0", Version.V1_0),
        ("1.0.1", Version.V1_0),
        (" 1.0 ", Version.V1_0),
    ],
)
def test_negotiate(header: str | None, version: Version) -> None:
    assert negotiate(header) is version
    assert codec_for(version).version is version


@pytest.mark.parametrize("header", ["1", "1.1", "2.0", "0.2.6", "1.0.0.0", "v1.0", "latest", "1.x"])
def test_negotiate_refuses(header: str) -> None:
    error = failure(negotiate, header)
    assert isinstance(error, VersionNotSupported) and error.code == -32009


# -- Agent Card ------------------------------------------------------------------------


def demo_card(**overrides: Any) -> Any:
    options: dict[str, Any] = {
        "name": "demo",
        "description": "andon's demo agent",
        "version": "0.1.0",
        "base_url": "http://localhost:8000/",
        "skills": [
            {"id": "echo", "name": "Echo", "description": "Echoes", "examples": ["echo hi"]}
        ],
        "security": True,
        "extensions": ["https://andon.dev/ext/cancel/v1"],
    }
    return build_card(**{**options, **overrides})


def test_card_v1() -> None:
    card = render_card(demo_card(), Version.V1_0)
    assert card["supportedInterfaces"] == [
        {"url": "http://localhost:8000/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
        {"url": "http://localhost:8000/", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
        {"url": "http://localhost:8000/", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
        {"url": "http://localhost:8000/", "protocolBinding": "HTTP+JSON", "protocolVersion": "0.3"},
    ]
    assert card["capabilities"] == {
        "streaming": True,
        "pushNotifications": False,
        "extensions": [{"uri": "https://andon.dev/ext/cancel/v1", "required": False}],
        "extendedAgentCard": False,
    }
    assert card["securitySchemes"] == {"bearer": {"httpAuthSecurityScheme": {"scheme": "Bearer"}}}
    assert card["securityRequirements"] == [{"schemes": {"bearer": {"list": []}}}]
    # 1.0 requires non-empty tags on every skill.
    assert card["skills"][0]["tags"] == ["echo"]
    for key in ("name", "description", "version", "defaultInputModes", "defaultOutputModes"):
        assert card[key]
    assert "url" not in card and "bearerAuth" not in card


def test_card_v03() -> None:
    card = render_card(demo_card(extended_card=True, rest=False), Version.V0_3)
    assert card["protocolVersion"] == "0.3.0"
    assert card["url"] == "http://localhost:8000/" and card["preferredTransport"] == "JSONRPC"
    assert card["additionalInterfaces"] == [
        {"url": "http://localhost:8000/", "transport": "JSONRPC"}
    ]
    assert card["supportsAuthenticatedExtendedCard"] is True
    assert card["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    assert card["security"] == [{"bearer": []}]
    assert card["capabilities"]["pushNotifications"] is False


def test_card_without_security_or_skills() -> None:
    card = demo_card(security=False, skills=[], extensions=[])
    v1 = render_card(card, Version.V1_0)
    assert "securitySchemes" not in v1 and "extensions" not in v1["capabilities"]
    assert [s["id"] for s in v1["skills"]] == ["default"]
    assert "security" not in render_card(card, Version.V0_3)


def test_card_document_serves_both_versions() -> None:
    card = demo_card()
    document = card_document(card)
    v1, v03 = render_card(card, Version.V1_0), render_card(card, Version.V0_3)
    for key in v1:
        if key != "securitySchemes":
            assert document[key] == v1[key], key
    for key in ("url", "preferredTransport", "protocolVersion", "additionalInterfaces", "security"):
        assert document[key] == v03[key], key
    assert document["securitySchemes"]["bearer"] == {
        "httpAuthSecurityScheme": {"scheme": "Bearer"},
        "type": "http",
        "scheme": "bearer",
    }


def test_agent_text_is_the_message_models_dump() -> None:
    for task_id in (None, "t1"):
        made = agent_text("step 1/3", task_id)
        dumped = Message(role=Role.AGENT, parts=[Part(text="step 1/3")], task_id=task_id).dump()
        assert made.pop("messageId") and dumped.pop("messageId")
        assert made == dumped
        assert list(made) == list(dumped)  # the stored JSON reads the same
    with pytest.raises(TypeError):
        agent_text(123)  # type: ignore[arg-type]  # stored, it would break every read
