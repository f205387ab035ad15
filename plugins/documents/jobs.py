"""The ingestion queue: huey, on a SQLite file by default (one machine, nothing to run), or on
PostgreSQL or Redis for job workers on several machines. Its one task is ``documents.ingest``
of a file id; what the job needs (the file, its metered call) is in the portal's database, so a
job the queue loses is found again from the catalog (``worker.Reaper``)."""
from __future__ import annotations

import os

TASK_NAME = "documents.ingest"
PURGE_NAME = "documents.purge"


def make_queue(spec: dict):
    """Return the huey instance ``plugins.documents.queue`` names (no results are kept; its
    ``name`` keeps several portals on one Redis or PostgreSQL apart)."""
    import huey

    name = spec["name"]
    if spec["kind"] == "redis":
        return huey.RedisHuey(name, url=spec["url"], results=False)
    if spec["kind"] == "postgresql":
        dsn = spec["url"].replace("postgresql+psycopg://", "postgresql://", 1)
        return huey.PostgresHuey(name, dsn=dsn, results=False)
    path = os.path.abspath(spec["path"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return huey.SqliteHuey(name, filename=path, results=False)


class IngestQueue:
    """Queues file ids for the job worker; the worker sets :attr:`runner` to do the work."""

    def __init__(self, spec: dict):
        self.huey = make_queue(spec)
        self.runner = None  # set by `agent-portal worker`: runner(file_id) -> how it ended
        self.purger = None  # set by `agent-portal worker`: purger(file_ids) removes their chunks
        self.task = self.huey.task(name=TASK_NAME)(self._run)
        self.purge_task = self.huey.task(name=PURGE_NAME, retries=5, retry_delay=10)(self._purge)

    def _run(self, file_id: str):
        if self.runner is None:
            raise RuntimeError("documents.ingest runs in `agent-portal worker`")
        return self.runner(file_id)

    def _purge(self, file_ids: list[str]):
        if self.purger is None:
            raise RuntimeError("documents.purge runs in `agent-portal worker`")
        self.purger(file_ids)

    def purge(self, file_ids: list[str]) -> None:
        """Queue the removal of the chunks of deleted files (the store is the job worker's)."""
        self.purge_task(list(file_ids))

    def enqueue(self, file_id: str, delay: float = 0) -> None:
        """Queue the ingestion of ``file_id``, after ``delay`` seconds."""
        if delay > 0:
            self.task.schedule((file_id,), delay=delay)
        else:
            self.task(file_id)

    def pending(self) -> int:
        """Return how many jobs wait in the queue (not counting scheduled retries)."""
        return self.huey.pending_count()
