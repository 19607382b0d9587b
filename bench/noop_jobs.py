"""procrastinate on its own, with a job that does nothing: the ceiling the queue itself
puts on distributed mode on this machine. bench.distributed measures it in the same
run as andon's echo through the queue, with as many worker processes at the same
concurrency, so that the two rates can be read against each other.

    python -m bench.noop_jobs postgresql://... CONCURRENCY   # one worker, until SIGTERM
"""

from __future__ import annotations

import asyncio
import sys

from procrastinate import App, PsycopgConnector

QUEUE = "noop"


def queue_app(url: str) -> App:
    app = App(connector=PsycopgConnector(conninfo=url))

    @app.task(name="noop", queue=QUEUE)
    async def noop() -> None:
        return None

    return app


async def work(url: str, concurrency: int) -> None:
    app = queue_app(url)
    async with app.open_async():
        await app.run_worker_async(queues=[QUEUE], concurrency=concurrency, wait=True)


BATCH = 100


async def defer(url: str, n: int) -> None:
    """Queue `n` no-op jobs, a hundred to a statement (a thousand separate defers at once
    wait longer for a pooled connection than the pool allows on a loaded machine)."""
    app = queue_app(url)
    async with app.open_async():
        job = app.configure_task("noop")
        for start in range(0, n, BATCH):
            await job.batch_defer_async(*({} for _ in range(min(BATCH, n - start))))


if __name__ == "__main__":
    asyncio.run(work(sys.argv[1], int(sys.argv[2])))
