"""Monitor: per-unit exporter (cgroups) → Prometheus → aggregation API with per-user access.

The names below are the package's public surface; each is imported from its module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattwise._lazy import lazy_exports

if TYPE_CHECKING:
    from wattwise.errors import AccessDenied, PrometheusError, PromQLError
    from wattwise.monitor.aggregate import Aggregator, AggregatorGroup, PromClient
    from wattwise.monitor.exporter import ExporterConfig, MonitorExporter
    from wattwise.monitor.gpus import GpuShare, share_gpus
    from wattwise.monitor.promql import check_access
    from wattwise.monitor.proxy import create_proxy
    from wattwise.monitor.routing import Backend, Router

__all__ = [
    "AccessDenied",
    "Aggregator",
    "AggregatorGroup",
    "Backend",
    "ExporterConfig",
    "GpuShare",
    "MonitorExporter",
    "PromClient",
    "PromQLError",
    "PrometheusError",
    "Router",
    "check_access",
    "create_proxy",
    "share_gpus",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "ExporterConfig": "wattwise.monitor.exporter",
    "MonitorExporter": "wattwise.monitor.exporter",
    "Aggregator": "wattwise.monitor.aggregate",
    "AggregatorGroup": "wattwise.monitor.aggregate",
    "GpuShare": "wattwise.monitor.gpus",
    "share_gpus": "wattwise.monitor.gpus",
    "Backend": "wattwise.monitor.routing",
    "Router": "wattwise.monitor.routing",
    "PromClient": "wattwise.monitor.aggregate",
    "create_proxy": "wattwise.monitor.proxy",
    "check_access": "wattwise.monitor.promql",
    "AccessDenied": "wattwise.errors",
    "PromQLError": "wattwise.errors",
    "PrometheusError": "wattwise.errors",
})
