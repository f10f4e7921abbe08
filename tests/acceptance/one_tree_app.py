import asyncio
import logging
from typing import Any

import underway
from underway.jobs import Job, Jobs
from underway.pipelines import DummyProducer, Message, Pipeline
from underway.tasks import Server, Supervisor, run

jobs = Jobs("sqlite:///uploads.db", queues={"thumbnails": 2})


@jobs.worker(name="thumbnails.make", queue="thumbnails")
async def make_thumbnail(job: Job[dict[str, Any]]) -> None:
    await asyncio.sleep(job.args["size"] / 50_000_000)  # rendering, at 50 MB/s


class Stats(Server):
    """Counts uploads in memory (lost on a crash, as everything in a task)."""

    async def init(self) -> None:
        self.uploads = 0

    async def handle_cast(self, message: Any) -> None:
        self.uploads += 1

    async def terminate(self, reason: Any) -> None:
        print(f"stats: {self.uploads} upload(s)")


stats = Stats()
uploads = DummyProducer(  # stands in for a RabbitMQProducer or a RedisStreamProducer
    [{"name": "cat.png", "size": 120_000}, {"name": "dog.png", "size": 340_000}]
)


async def handle_message(message: Message) -> Message:
    upload = message.data
    await asyncio.sleep(upload["size"] / 100_000_000)  # a virus scan, at 100 MB/s
    await make_thumbnail.enqueue(upload)  # durable from here on
    await stats.cast("upload")
    print(f"{upload['name']}: thumbnail queued")
    return message


pipeline = Pipeline(producer=uploads, handle_message=handle_message, name="uploads")

app = Supervisor(
    [
        jobs.child_spec(id="jobs"),  # first up, last down: the others enqueue jobs
        stats.child_spec(id="stats"),
        pipeline.child_spec(id="pipeline"),  # last up, first down: it drains first
    ],
    name="app",
)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    underway.attach_logging(prefix="tasks.child.")  # one line per child stopped
    run(app, shutdown_timeout=60)  # SIGTERM: uploads drain, then stats, then jobs
    acked = [m.data["name"] for m in uploads.acknowledger.successful]
    print("acknowledged:", ", ".join(acked))


if __name__ == "__main__":
    main()
