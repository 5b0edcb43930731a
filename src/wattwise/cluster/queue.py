"""The cluster in a store's database, by job: `machines` (registry, heartbeats, status history), `jobs` (the
queue with leases: submit, claim, renew, finish, release, reclaim) and `outbox` (e-mails queued together with
the events they tell about). The three share one `ClusterDatabase` (transactions and the time source)."""

from __future__ import annotations

from wattwise.cluster.database import ClusterDatabase
from wattwise.cluster.jobs import JobQueue
from wattwise.cluster.machines import MachineRegistry
from wattwise.cluster.outbox import Outbox
from wattwise.store import Store


class ClusterQueue:
    """What a client, the CLI or the API works with. Thread-safe (each call uses its own connection)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = ClusterDatabase(store)
        self.machines = MachineRegistry(self.db)
        self.jobs = JobQueue(self.db)
        self.outbox = Outbox(self.db)
