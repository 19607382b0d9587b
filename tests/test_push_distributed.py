"""Push notifications in distributed mode: two API processes and a worker, as real
processes sharing PostgreSQL, each running a push sender over the one outbox. Every
event of every task reaches the receiver once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from andon.node.database import upgrade
from tests.cluster import Cluster
from tests.conftest import new_schema
from tests.test_client import eventually
from tests.test_push import push_config, send, states
from tests.webhook import Receiver

pytestmark = pytest.mark.postgres
ALLOW = ("--push-allow", "127.0.0.1")


@pytest.fixture
def cluster(postgres_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    db = new_schema(postgres_database)
    asyncio.run(upgrade(db))
    with Cluster(db, tmp_path_factory.mktemp("push-cluster")) as running:
        running.start(apis=2, workers=1, worker_args=ALLOW, api_args=("--no-worker", *ALLOW))
        yield running


def test_two_apis_and_a_worker_deliver_each_event_once(cluster: Cluster) -> None:
    with Receiver() as receiver:
        tasks = [
            send(cluster.api_urls[i % 2], "stream 3", push_config(receiver.url), blocking=False)
            for i in range(12)
        ]
        ids = [t["result"]["task"]["id"] for t in tasks]
        for task_id in ids:
            eventually(lambda: "completed" in states(receiver.accepted(task_id)), 60)  # noqa: B023
        time.sleep(1.0)  # a second delivery, were there one, would have come by now
        hits = receiver.accepted()
    repeated = [key for key, n in Counter(h.key for h in hits).items() if n > 1]
    assert repeated == []
    for task_id in ids:
        mine = [h for h in hits if h.task_id == task_id]
        assert [h.seq for h in mine] == sorted(h.seq for h in mine)
        assert states(mine)[0] == "submitted" and states(mine)[-1] == "completed"
        assert sum("artifactUpdate" in h.body for h in mine) == 3
