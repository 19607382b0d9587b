"""Push notifications over real HTTP: `andon serve` delivering to a real webhook receiver
(tests/webhook.py) on 127.0.0.1, allowed with `--push-allow 127.0.0.1`.

Every state change of a task arrives in order, a cancel with its reason; a receiver that
fails then recovers gets each event once per idempotency key; a server killed with
deliveries still queued delivers them after its restart; refused addresses answer
InvalidParams and store nothing; the config methods in the four dialects.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from andon.client import Client, PushNotificationAuth, PushNotificationConfig
from tests.cluster import free_port
from tests.test_client import AndonServer, eventually
from tests.webhook import Hit, Receiver

TOKEN = "notification-token"
CREDENTIALS = "webhook-secret"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AndonServer]:
    with AndonServer(tmp_path_factory.mktemp("push"), "--push-allow", "127.0.0.1") as served:
        yield served


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def rpc(url: str, method: str, params: dict[str, Any], version: str = "1.0") -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    reply = httpx.post(url + "/", json=body, headers={"A2A-Version": version}, timeout=30)
    return dict(reply.json())


def push_config(url: str, **fields: Any) -> dict[str, Any]:
    return {
        "url": url,
        "token": TOKEN,
        "authentication": {"scheme": "Bearer", "credentials": CREDENTIALS},
        **fields,
    }


def send(url: str, text: str, push: dict[str, Any] | None, *, blocking: bool = True) -> Any:
    configuration: dict[str, Any] = {"returnImmediately": not blocking}
    if push is not None:
        configuration["taskPushNotificationConfig"] = push
    message = {"messageId": os.urandom(8).hex(), "role": "ROLE_USER", "parts": [{"text": text}]}
    return rpc(url, "SendMessage", {"message": message, "configuration": configuration})


def task_count(url: str) -> int:
    reply = httpx.get(url + "/tasks", params={"pageSize": 1}, headers={"A2A-Version": "1.0"})
    return int(reply.json()["totalSize"])


def states(hits: list[Hit]) -> list[str | None]:
    return [h.state for h in hits]


def test_every_state_change_arrives_in_order_with_the_cancel_and_its_reason(
    server: AndonServer, receiver: Receiver
) -> None:
    task = send(server.url, "sleep 30", push_config(receiver.url), blocking=False)["result"]
    task_id = task["task"]["id"]
    eventually(lambda: "working" in states(receiver.accepted(task_id)), 15)
    canceled = rpc(server.url, "CancelTask", {"id": task_id})["result"]
    assert canceled["status"]["state"] == "TASK_STATE_CANCELED"
    eventually(lambda: "canceled" in states(receiver.accepted(task_id)), 15)
    hits = receiver.accepted(task_id)
    seqs = [h.seq for h in hits]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert hits[0].state == "submitted" and hits[-1].state == "canceled"
    assert {h.state for h in hits} <= {"submitted", "working", "canceled"}
    last = hits[-1].body["statusUpdate"]
    assert last["metadata"]["andon.reason"] == "user"
    for hit in hits:
        assert hit.headers["authorization"] == f"Bearer {CREDENTIALS}"
        assert hit.headers["x-a2a-notification-token"] == TOKEN
        assert hit.key == f"{task_id}:{hit.seq}"
        assert hit.path == "/hook"
    # Each event is a StreamResponse of exactly one kind.
    assert all(len(h.body) == 1 for h in hits)
    # And nothing else arrives: the task ended.
    time.sleep(0.3)
    assert len(receiver.accepted(task_id)) == len(hits)


def test_a_receiver_that_fails_three_times_gets_each_event_once(
    server: AndonServer,
) -> None:
    with Receiver(fail_first=3) as receiver:
        task = send(server.url, "stream 3", push_config(receiver.url))["result"]["task"]
        eventually(lambda: "completed" in states(receiver.accepted(task["id"])), 30)
        hits = receiver.all(task["id"])
    refused = [h for h in hits if h.status != 200]
    accepted = [h for h in hits if h.status == 200]
    assert len(refused) == 3
    keys = [h.key for h in accepted]
    assert len(keys) == len(set(keys))  # once per idempotency key
    assert [h.seq for h in accepted] == sorted(h.seq for h in accepted)  # in order
    # Every event a stream would show: submitted, working, three chunks, completed.
    assert states(accepted)[0] == "submitted" and states(accepted)[-1] == "completed"
    assert sum("artifactUpdate" in h.body for h in accepted) == 3
    # The refused attempts were of the first event, retried until it went through.
    assert {h.key for h in refused} == {accepted[0].key}


@pytest.mark.parametrize(
    "url",
    [
        "https://10.1.2.3/hook",
        "https://192.168.0.7/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://127.0.0.2/hook",
        "https://[::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://[fd00:ec2::254]/hook",
        "https://0.0.0.0/hook",
        "http://203.0.113.9/hook",  # public (documentation range is not global: refused too)
        "http://example.com/hook",  # plain http to a host not allowed
        "ftp://example.com/hook",
        "https://user:pw@example.com/hook",
        "not a url",
    ],
)
def test_refused_addresses_are_invalid_params_and_store_nothing(
    server: AndonServer, url: str
) -> None:
    before = task_count(server.url)
    reply = send(server.url, "echo hi", push_config(url))
    assert reply["error"]["code"] == -32602, reply
    assert "push notification URL refused" in reply["error"]["message"]
    assert task_count(server.url) == before
    # On an existing task: refused, and the task has no config.
    task_id = send(server.url, "echo hi", None)["result"]["task"]["id"]
    created = rpc(
        server.url, "CreateTaskPushNotificationConfig", {"taskId": task_id, **push_config(url)}
    )
    assert created["error"]["code"] == -32602, created
    listed = rpc(server.url, "ListTaskPushNotificationConfigs", {"taskId": task_id})
    assert listed["result"]["configs"] == []


# -- the config methods, in each dialect -------------------------------------------------


def crud(
    server: AndonServer, dialect: str, op: str, task_id: str, config_id: str, url: str = ""
) -> tuple[int, Any]:
    """One config call as the dialect's specification writes it: (HTTP status, result
    or error)."""
    version, binding = dialect.split("/")
    auth_03 = {"schemes": ["Bearer"], "credentials": CREDENTIALS}
    if binding == "jsonrpc":
        if version == "1.0":
            method, params = {
                "create": (
                    "CreateTaskPushNotificationConfig",
                    {"taskId": task_id, "id": config_id, **push_config(url)},
                ),
                "get": ("GetTaskPushNotificationConfig", {"taskId": task_id, "id": config_id}),
                "list": ("ListTaskPushNotificationConfigs", {"taskId": task_id}),
                "delete": (
                    "DeleteTaskPushNotificationConfig",
                    {"taskId": task_id, "id": config_id},
                ),
            }[op]
        else:
            config = {"id": config_id, "url": url, "token": TOKEN, "authentication": auth_03}
            ref = {"id": task_id, "pushNotificationConfigId": config_id}
            method, params = {
                "create": ("set", {"taskId": task_id, "pushNotificationConfig": config}),
                "get": ("get", ref),
                "list": ("list", {"id": task_id}),
                "delete": ("delete", ref),
            }[op]
            method = "tasks/pushNotificationConfig/" + method
        reply = rpc(server.url, method, params, version)
        return 200, reply.get("result", reply.get("error"))
    base = (
        f"{server.url}{'/v1' if version == '0.3' else ''}/tasks/{task_id}/pushNotificationConfigs"
    )
    headers = {"A2A-Version": version}
    if op == "create":
        if version == "1.0":
            body: dict[str, Any] = {"id": config_id, **push_config(url)}
        else:
            body = {
                "parent": f"tasks/{task_id}",
                "configId": config_id,
                "config": {
                    "name": f"tasks/{task_id}/pushNotificationConfigs/{config_id}",
                    "pushNotificationConfig": {
                        "url": url,
                        "token": TOKEN,
                        "authentication": auth_03,
                    },
                },
            }
        reply = httpx.post(base, json=body, headers=headers)
    elif op == "list":
        reply = httpx.get(base, headers=headers)
    else:
        reply = httpx.request(
            "GET" if op == "get" else "DELETE", f"{base}/{config_id}", headers=headers
        )
    return reply.status_code, reply.json()


def config_of(dialect: str, result: Any) -> dict[str, Any]:
    """The PushNotificationConfig a result carries, in 1.0 form."""
    if dialect.startswith("1.0"):
        return dict(result)
    config = dict(result["pushNotificationConfig"])
    config["authentication"] = {
        "scheme": config["authentication"]["schemes"][0],
        "credentials": config["authentication"]["credentials"],
    }
    return config


@pytest.mark.parametrize("dialect", ["1.0/jsonrpc", "1.0/rest", "0.3/jsonrpc", "0.3/rest"])
def test_create_get_list_delete_in_each_dialect(
    server: AndonServer, receiver: Receiver, dialect: str
) -> None:
    task_id = send(server.url, "echo hi", None)["result"]["task"]["id"]
    status, created = crud(server, dialect, "create", task_id, "c1", receiver.url)
    assert status == 200, created
    assert config_of(dialect, created)["url"] == receiver.url
    assert config_of(dialect, created)["id"] == "c1"
    status, got = crud(server, dialect, "get", task_id, "c1")
    assert status == 200, got
    got_config = config_of(dialect, got)
    assert got_config["token"] == TOKEN
    assert got_config["authentication"] == {"scheme": "Bearer", "credentials": CREDENTIALS}
    status, listed = crud(server, dialect, "list", task_id, "")
    assert status == 200, listed
    configs = listed if dialect == "0.3/jsonrpc" else listed["configs"]
    assert [config_of(dialect, c)["id"] for c in configs] == ["c1"]
    for _ in range(2):  # idempotent
        status, deleted = crud(server, dialect, "delete", task_id, "c1")
        assert status == 200, deleted
    status, gone = crud(server, dialect, "get", task_id, "c1")
    if dialect.endswith("rest"):
        assert status == 404, gone
    else:
        assert gone["code"] == -32001, gone
    status, unknown_task = crud(server, dialect, "list", "no-such-task", "")
    assert status == 404 if dialect.endswith("rest") else unknown_task["code"] == -32001


def test_a_config_made_in_0_3_gets_0_3_events(server: AndonServer, receiver: Receiver) -> None:
    task_id = send(server.url, "ask what?", None)["result"]["task"]["id"]
    status, _ = crud(server, "0.3/jsonrpc", "create", task_id, "old", receiver.url)
    assert status == 200
    answer = {
        "messageId": "a1",
        "role": "ROLE_USER",
        "parts": [{"text": "this"}],
        "taskId": task_id,
    }
    rpc(server.url, "SendMessage", {"message": answer})

    def done() -> bool:
        hits = receiver.accepted(task_id)
        return any(h.body.get("status", {}).get("state") == "completed" for h in hits)

    eventually(done, 15)
    hits = receiver.accepted(task_id)
    assert all(h.body["kind"] in ("status-update", "artifact-update") for h in hits)


def test_the_card_declares_push_notifications(server: AndonServer) -> None:
    card = httpx.get(server.url + "/.well-known/agent-card.json").json()
    assert card["capabilities"]["pushNotifications"] is True


# -- a kill between the commit and the delivery ----------------------------------------


def test_deliveries_queued_before_a_sigkill_are_made_after_the_restart(
    tmp_path: Path,
) -> None:
    """The receiver is down: the task's events are committed, with their deliveries, and
    fail to go out; the server is killed (SIGKILL); the receiver comes up; the server is
    started again on the same store and delivers every event."""
    port = free_port()
    hook = f"http://127.0.0.1:{port}/hook"
    serve_port = free_port()
    url = f"http://127.0.0.1:{serve_port}"
    command = [
        *(sys.executable, "-m", "andon", "serve", "--port", str(serve_port)),
        *("--db", str(tmp_path / "s.db"), "--push-allow", "127.0.0.1", "--log-level", "warning"),
    ]

    def up() -> bool:
        try:
            return httpx.get(url + "/.well-known/agent-card.json", timeout=1).is_success
        except httpx.TransportError:
            return False

    first = subprocess.Popen(command, cwd=tmp_path)
    eventually(up, 20, "andon serve answering")
    try:
        task = send(url, "echo survive", push_config(hook))["result"]["task"]
        assert task["status"]["state"] == "TASK_STATE_COMPLETED"

        def retried() -> bool:
            metrics = httpx.get(url + "/metrics").text.splitlines()
            key = 'andon_push_deliveries_total{outcome="retried"}'
            return any(x.startswith(key) and float(x.split()[-1]) >= 1 for x in metrics)

        eventually(retried, 15, "a failed delivery")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with Receiver(port) as receiver:
        second = subprocess.Popen(command, cwd=tmp_path)
        try:
            eventually(up, 20, "andon serve answering again")
            eventually(lambda: "completed" in states(receiver.accepted(task["id"])), 30)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
        hits = receiver.accepted(task["id"])
    assert states(hits)[0] == "submitted" and states(hits)[-1] == "completed"
    assert len({h.key for h in hits}) == len(hits)


def test_no_push_answers_push_notification_not_supported(tmp_path: Path) -> None:
    with AndonServer(tmp_path, "--no-push") as server:
        card = httpx.get(server.url + "/.well-known/agent-card.json").json()
        assert card["capabilities"]["pushNotifications"] is False
        task_id = send(server.url, "echo hi", None)["result"]["task"]["id"]
        for method, params in (
            ("CreateTaskPushNotificationConfig", {"taskId": task_id, "url": "https://a.example"}),
            ("GetTaskPushNotificationConfig", {"taskId": task_id, "id": "c1"}),
            ("ListTaskPushNotificationConfigs", {"taskId": task_id}),
            ("DeleteTaskPushNotificationConfig", {"taskId": task_id, "id": "c1"}),
        ):
            assert rpc(server.url, method, params)["error"]["code"] == -32003
        before = task_count(server.url)
        reply = send(server.url, "echo hi", push_config("https://a.example/hook"))
        assert reply["error"]["code"] == -32003
        assert task_count(server.url) == before


@pytest.mark.parametrize("binding", ["jsonrpc", "http+json"])
@pytest.mark.parametrize("version", ["1.0", "0.3"])
def test_the_python_client_registers_a_webhook(
    server: AndonServer, receiver: Receiver, version: str, binding: str
) -> None:
    webhook = PushNotificationConfig(
        url=receiver.url,
        token=TOKEN,
        authentication=PushNotificationAuth(scheme="Bearer", credentials=CREDENTIALS),
    )
    with Client(server.url, version=version, binding=binding) as client:
        task = client.send("echo pushed", push=webhook)
        streamed = [e.task_id for e in client.stream("echo streamed", push=receiver.url)]
    for task_id in (task.id, streamed[0]):
        eventually(lambda: len(receiver.accepted(task_id)) >= 4, 15)  # noqa: B023
    hit = receiver.accepted(task.id)[0]
    assert hit.headers["authorization"] == f"Bearer {CREDENTIALS}"
    assert hit.headers["x-a2a-notification-token"] == TOKEN


def test_andon_send_push(server: AndonServer, receiver: Receiver) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "andon", "send", "echo from the command line"),
            *("--url", server.url, "--push", receiver.url, "--push-token", TOKEN, "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    eventually(lambda: "completed" in states(receiver.accepted()), 15)
    assert {h.headers["x-a2a-notification-token"] for h in receiver.accepted()} == {TOKEN}


def test_a_0_3_config_without_an_id_is_the_default_one(
    server: AndonServer, receiver: Receiver
) -> None:
    """`set` without an id, then `get` without one (or naming `default`) finds it."""
    task_id = send(server.url, "echo hi", None)["result"]["task"]["id"]
    config = {"url": receiver.url}
    params = {"taskId": task_id, "pushNotificationConfig": config}
    created = rpc(server.url, "tasks/pushNotificationConfig/set", params, "0.3")["result"]
    assert created["pushNotificationConfig"]["id"] == "default"
    for ref in ({"id": task_id}, {"id": task_id, "pushNotificationConfigId": "default"}):
        got = rpc(server.url, "tasks/pushNotificationConfig/get", ref, "0.3")["result"]
        assert got["pushNotificationConfig"]["url"] == receiver.url
