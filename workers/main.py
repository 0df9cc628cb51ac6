"""The worker: consumes task messages and runs their attempts until told to stop.

Signals are the CLI's business: it sets ``stop``. Then the worker stops consuming (cancelling its
subscription and nacking what it has not claimed), hands back attempts it claimed but has not
started, lets running attempts finish within ``worker_grace_period`` seconds and cancels the rest;
a cancelled attempt is reported ``interrupted`` and runs again elsewhere at once, without using
one of its retries.

Every long-lived piece of work, the consumer loop and each attempt, is a task of one
``asyncio.TaskGroup``: a crash ends the group and ``run`` raises, never leaving a half-alive worker.
"""

from __future__ import annotations

import asyncio
import logging

from weir.broker import Broker
from weir.config import Settings
from workers.attempt import AttemptHandler
from workers.client import ExecutionClient
from workers.consumer import Consumer
from workers.dag_callbacks import DagCallbackHandler
from workers.heartbeat import LeaseKeeper
from workers.identity import worker_name
from workers.runners import Runner

__all__ = ["Worker"]

logger = logging.getLogger(__name__)


class Worker:
    """``weir worker``: the broker must be connected by the caller, which also closes it."""

    def __init__(
        self, settings: Settings, broker: Broker, *, client: ExecutionClient | None = None
    ) -> None:
        self._settings = settings
        self._broker = broker
        self._client = client
        self.name = worker_name()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and run attempts until ``stop`` is set, then shut down gracefully."""
        settings = self._settings
        # Coalesced: claims, reports and log text ready together share one request. Several
        # batches are in flight at once, so a finished task's report never waits behind one
        # while a slot is free (a worker killed in that moment would leave it to run again).
        client = self._client or ExecutionClient(settings.api_url)
        runner = Runner(settings.dags_folder, settings.worker_concurrency)
        leases = LeaseKeeper(client)
        handler = AttemptHandler(
            client=client, runner=runner, leases=leases, worker=self.name, stop=stop
        )
        router = DagCallbackHandler(runner.load_dags, handler.handle, stop)
        consumer = Consumer(
            self._broker, settings.worker_queues, settings.worker_concurrency, router.handle
        )
        logger.info(
            "Worker %s serving queues %s with %d slot(s); DAGs from %s; execution API at %s",
            self.name,
            ",".join(settings.worker_queues),
            settings.worker_concurrency,
            settings.dags_folder,
            settings.api_url,
        )
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(runner.warm())  # beside the consumer: nothing waits for it
                group.create_task(consumer.run(group))
                beating = group.create_task(leases.run())
                await stop.wait()
                logger.info("Worker %s stopping: no new messages", self.name)
                await consumer.stop()
                await consumer.drain(settings.worker_grace_period)
                beating.cancel()
        finally:
            await runner.aclose()
            if self._client is None:
                await client.aclose()
        logger.info("Worker %s stopped", self.name)
