"""Measurement cluster: job queue in the database, measurement client, control workload, e-mail, wake-on-LAN.

The names below are the package's public surface; each is imported from its module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattwise._lazy import lazy_exports

if TYPE_CHECKING:
    from wattwise.cluster.models import JobState
    from wattwise.cluster.queue import ClusterQueue

__all__ = [
    "ClusterQueue",
    "JobState",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "ClusterQueue": "wattwise.cluster.queue",
    "JobState": "wattwise.cluster.models",
})
