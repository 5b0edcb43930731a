"""Commands of wattwise.monitor: `exporter`, `monitor-api`, `monitor-proxy`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wattwise.clitools import DbOption, console, err_console

if TYPE_CHECKING:
    from wattwise.carbon.live import CachedIntensity
    from wattwise.monitor.node import IpmiPoller
    from wattwise.providers.gpu_tools import GpuReader

PANEL = "Cluster monitoring (Prometheus/Grafana)"


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("exporter", rich_help_panel=PANEL)(exporter)
    app.command("monitor-api", rich_help_panel=PANEL)(monitor_api)
    app.command("monitor-proxy", rich_help_panel=PANEL)(monitor_proxy)


def _intensity(grid: str | None, grid_fallback: str | None, grid_url: str | None,
               grid_ttl: float) -> CachedIntensity:
    from wattwise.carbon.live import (
        CachedIntensity,
        IntensitySource,
        StaticSource,
        default_static_source,
        make_source,
    )

    fallback = StaticSource.for_country(grid_fallback) if grid_fallback else default_static_source()
    if grid and grid.lower().startswith("watttime:"):
        from wattwise.carbon.watttime import WATTTIME_URL, WattTimeSource
        from wattwise.errors import ConfigError

        region = grid.split(":", 1)[1].strip()
        if not region:
            raise ConfigError("--grid watttime:<region> needs a WattTime region, e.g. watttime:CAISO_NORTH")
        source: IntensitySource = WattTimeSource(region, base_url=grid_url or WATTTIME_URL)
    else:
        source = make_source(grid, base_url=grid_url) if grid else fallback
    return CachedIntensity(source, ttl_s=grid_ttl, fallback=None if source is fallback else fallback)


def exporter(
    listen: Annotated[str, typer.Option(help="Address to serve /metrics on: [HOST]:PORT.")] = ":9010",
    mountinfo: Annotated[Path, typer.Option(help="mountinfo file that says where cgroups are mounted.")] = Path(
        "/proc/self/mountinfo"),
    cgroup_root: Annotated[Path | None, typer.Option(
        help="Read the cgroup mount points under this directory (mount points below /sys/fs/cgroup keep "
             "their relative place): for fixture trees or a host cgroupfs mounted elsewhere.")] = None,
    powercap_root: Annotated[Path, typer.Option(help="powercap sysfs directory with intel-rapl:* zones.")] = Path(
        "/sys/class/powercap"),
    proc_root: Annotated[Path, typer.Option(help="proc filesystem (stat, meminfo, <pid>/status).")] = Path("/proc"),
    hostname: Annotated[str | None, typer.Option(help="Value of the hostname label (default: this host).")] = None,
    pue: Annotated[float | None, typer.Option(help="Power usage effectiveness (default $WATTWISE_PUE or 1).")] = None,
    grid: Annotated[str | None, typer.Option(
        help="Grid intensity source: static:<country|g/kWh>, trace:<csv>, electricitymaps:<zone>, rte, ukci, "
             "ukci:<postcode|region id>, watttime:<region> ($WATTTIME_USERNAME/$WATTTIME_PASSWORD) "
             "(default: static, from $WATTWISE_GRID_INTENSITY / $WATTWISE_COUNTRY, "
             "else the world average).")] = None,
    grid_fallback: Annotated[str | None, typer.Option(
        help="Country whose static factor is used while a live source has never answered.")] = None,
    grid_url: Annotated[str | None, typer.Option(help="Base URL of the live grid API (to use a proxy).")] = None,
    grid_ttl: Annotated[float, typer.Option(help="Seconds a grid intensity value is reused.")] = 900.0,
    ipmi: Annotated[str, typer.Option(
        help="IPMI DCMI power: auto (ipmitool or ipmi-dcmi if a BMC is there), off, or the command to run "
             "(e.g. 'ipmitool -I lanplus -H bmc dcmi power reading').")] = "auto",
    ipmi_interval: Annotated[float, typer.Option(help="Seconds between BMC readings.")] = 5.0,
    redfish: Annotated[str | None, typer.Option(
        help="Whole-node power from this Redfish service instead of IPMI (e.g. https://bmc01), summed over its "
             "chassis' Power.PowerControl[].PowerConsumedWatts.")] = None,
    redfish_user: Annotated[str | None, typer.Option(help="Redfish user (HTTP basic).")] = None,
    redfish_password_file: Annotated[Path | None, typer.Option(help="File holding the Redfish password.")] = None,
    redfish_chassis: Annotated[str | None, typer.Option(help="Chassis ids to read, comma-separated.")] = None,
    redfish_insecure: Annotated[bool, typer.Option(
        "--redfish-insecure", help="Do not verify the BMC's TLS certificate.")] = False,
    hwmon_power: Annotated[str | None, typer.Option(
        help="Whole-node power from hwmon power sensors instead of IPMI: driver[:label], comma-separated "
             "(e.g. power_meter).")] = None,
    hwmon_root: Annotated[Path, typer.Option(help="hwmon class directory.")] = Path("/sys/class/hwmon"),
    meter_stat: Annotated[str, typer.Option(
        help="Which figure of the whole-node meter is the node's power: current or average (over the meter's "
             "sampling period).")] = "current",
    gpu: Annotated[bool, typer.Option("--gpu/--no-gpu", help="Read GPUs and attribute their power to units.")] = True,
    gpu_source: Annotated[str, typer.Option(
        help="GPU source: auto (the first of nvml, amd-smi, rocm-smi, nvidia-smi that works), nvml, nvidia-smi, "
             "amd-smi, rocm-smi, or a tool with its path (e.g. 'amd-smi:/opt/rocm/bin/amd-smi').")] = "auto",
    tdp: Annotated[float | None, typer.Option(help="CPU TDP in W for the estimated power curve.")] = None,
    power_curve: Annotated[Path | None, typer.Option(
        help="Calibration CSV utilization,power_w for the estimated power.")] = None,
    cpu_fraction: Annotated[float, typer.Option(help="Share of a whole-node reading attributed by CPU.")] = 0.7,
    memory_fraction: Annotated[float, typer.Option(help="Share attributed by memory.")] = 0.1,
    managers: Annotated[str, typer.Option(help="Unit managers to export, comma-separated.")] = (
        "slurm,docker,podman,systemd,libvirt,k8s"),
    libvirt_xml: Annotated[str, typer.Option(
        help="Directories of libvirt domain XML (owner from Nova or wattwise metadata), comma-separated.")] = (
        "/run/libvirt/qemu,/etc/libvirt/qemu"),
    k8s_pods: Annotated[Path | None, typer.Option(
        help="Pod list as printed by 'kubectl get pods -A -o json' (namespace becomes the project), re-read "
             "when it changes.")] = None,
    k8s_user_label: Annotated[str, typer.Option(help="Pod label naming the pod's user.")] = "wattwise.dev/user",
    projects: Annotated[Path | None, typer.Option(help="Project mapping file (YAML: users:, units:).")] = None,
    passwd: Annotated[Path | None, typer.Option(help="passwd-format file for uid → user names.")] = None,
    scontrol: Annotated[str | None, typer.Option(
        help="Ask Slurm for a job's user and account with this scontrol command (e.g. scontrol).")] = None,
    once: Annotated[bool, typer.Option(
        "--once", help="Print one scrape to stdout (taken --interval after a first reading) and exit.")] = False,
    interval: Annotated[float, typer.Option(help="With --once: seconds between the two readings.")] = 1.0,
) -> None:
    """Serve per-unit (Slurm job, container, service) and node energy metrics to Prometheus.

    Examples:

      wattwise exporter --listen :9010 --grid static:DE --pue 1.3

      wattwise exporter --once --interval 2          # print one scrape and exit
    """
    import time

    from wattwise.carbon.static import resolve_pue
    from wattwise.errors import ConfigError
    from wattwise.monitor.exporter import ExporterConfig, MonitorExporter
    from wattwise.monitor.managers import KubernetesPods, LibvirtDomains
    from wattwise.monitor.metadata import OwnerResolver, ProjectMap, UserNames
    from wattwise.monitor.node import IpmiPoller, NodeReader
    from wattwise.monitor.server import make_server, parse_listen
    from wattwise.providers.estimate import default_power_curve

    config = ExporterConfig(
        mountinfo=mountinfo, cgroup_root=cgroup_root, powercap_root=powercap_root, proc_root=proc_root,
        pue=resolve_pue(pue), cpu_fraction=cpu_fraction, memory_fraction=memory_fraction,
        managers=frozenset(m.strip() for m in managers.split(",") if m.strip()),
    )
    if hostname:
        config.hostname = hostname
    config.check()
    host, port = parse_listen(listen)
    node = NodeReader(proc_root, powercap_root)
    if meter_stat not in ("current", "average"):
        raise ConfigError(f"--meter-stat {meter_stat!r}: allowed are current, average")
    if redfish and hwmon_power:
        raise ConfigError("--redfish and --hwmon-power both name the whole-node meter: give one")
    if redfish:
        node.ipmi = _redfish_poller(redfish, redfish_user, redfish_password_file, redfish_chassis,
                                    not redfish_insecure, ipmi_interval, meter_stat)
    elif hwmon_power:
        node.ipmi = _hwmon_poller(hwmon_power, hwmon_root, ipmi_interval, meter_stat)
    else:
        node.ipmi = _ipmi_poller(ipmi, ipmi_interval, IpmiPoller, meter_stat)
    if gpu:
        node.gpu = _open_gpu(gpu_source)
    owners = OwnerResolver(proc_root, ProjectMap.load(projects) if projects else None,
                           UserNames(passwd), shlex.split(scontrol) if scontrol else None,
                           LibvirtDomains(tuple(d.strip() for d in libvirt_xml.split(",") if d.strip())),
                           KubernetesPods(k8s_pods, k8s_user_label) if k8s_pods else None)
    curve = default_power_curve(tdp, power_curve)
    exp = MonitorExporter(config, _intensity(grid, grid_fallback, grid_url, grid_ttl), node=node,
                          owners=owners, power_curve=curve)
    exp.open()
    if once:
        if interval < 0:
            raise ConfigError("--interval must not be negative")
        time.sleep(interval)
        sys.stdout.write(exp.scrape())
        sys.stdout.flush()
        return
    server = make_server(exp, host, port)
    sources = ", ".join(filter(None, [
        "RAPL" if node.rapl_available else "", "IPMI" if node.ipmi else "", "GPU" if node.gpu else "",
        "estimate" if not (node.rapl_available or node.ipmi) else ""]))
    err_console.print(f"wattwise exporter on http://{host}:{server.server_address[1]}/metrics "
                      f"(node power: {sources})", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if node.ipmi:
            node.ipmi.stop()


def _redfish_poller(url: str, user: str | None, password_file: Path | None, chassis: str | None, verify: bool,
                    interval: float, stat: str) -> IpmiPoller:
    from wattwise.errors import ConfigError
    from wattwise.monitor.node import IpmiPoller
    from wattwise.providers.base import ProviderError
    from wattwise.providers.redfish import RedfishPower

    password = None
    if password_file is not None:
        try:
            password = password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--redfish-password-file {password_file}: {exc.strerror}") from exc
    names = [c.strip() for c in chassis.split(",") if c.strip()] if chassis else None
    meter = RedfishPower(url, user=user, password=password, chassis=names, verify=verify)
    try:
        meter.query()
    except ProviderError as exc:
        raise ConfigError(f"--redfish {url}: {exc}") from exc
    poller = IpmiPoller(meter, interval, meter="redfish", stat=stat)
    poller.start()
    return poller


def _hwmon_poller(patterns: str, root: Path, interval: float, stat: str) -> IpmiPoller:
    from wattwise.errors import ConfigError
    from wattwise.monitor.node import IpmiPoller
    from wattwise.providers.base import ProviderError
    from wattwise.providers.hwmon_power import HwmonPower

    meter = HwmonPower([p.strip() for p in patterns.split(",") if p.strip()], root)
    try:
        meter.open()
    except ProviderError as exc:
        raise ConfigError(f"--hwmon-power {patterns}: {exc}") from exc
    poller = IpmiPoller(meter, interval, meter="hwmon", stat=stat)
    poller.start()
    return poller


def _ipmi_poller(ipmi: str, interval: float, poller_class: type[IpmiPoller],
                 stat: str = "current") -> IpmiPoller | None:
    from wattwise.providers.ipmi import IpmiDcmiProvider

    if ipmi == "off":
        return None
    if ipmi == "auto":
        provider = IpmiDcmiProvider()
        if not provider.availability().available:
            return None
    else:
        provider = IpmiDcmiProvider(command=shlex.split(ipmi))
    poller = poller_class(provider, interval, stat=stat)
    poller.start()
    return poller


def _open_gpu(source: str) -> GpuReader | None:
    from wattwise.errors import ConfigError
    from wattwise.providers.base import ProviderError
    from wattwise.providers.gpu_tools import GPU_SOURCES, detect_gpu_reader, open_gpu_reader

    if source == "auto":
        return detect_gpu_reader()
    name, _, path = source.partition(":")
    if name not in GPU_SOURCES:
        raise ConfigError(f"--gpu-source {source!r}: allowed are auto, {', '.join(GPU_SOURCES)} "
                          "(a tool may carry its path: amd-smi:/opt/rocm/bin/amd-smi)")
    try:
        return open_gpu_reader(name, [path] if path else None)
    except ProviderError as exc:
        raise ConfigError(f"--gpu-source {source}: {exc}") from exc


def monitor_api(
    listen: Annotated[str, typer.Option(
        help="Address of the REST API: [HOST]:PORT (loopback by default: put it behind Grafana or a front "
             "proxy that sets the trusted header).")] = "127.0.0.1:9011",
    prometheus: Annotated[list[str] | None, typer.Option(
        help="Prometheus base URL to pull unit aggregates from; for several clusters repeat it as CLUSTER=URL "
             "(units are stored with their cluster). Default http://127.0.0.1:9090.")] = None,
    access: Annotated[Path | None, typer.Option(help="Access file (YAML): admins, tokens, projects, header.")] = None,
    db: DbOption = None,
    interval: Annotated[float, typer.Option(help="Seconds between pulls from Prometheus (0: never pull).")] = 300.0,
    lookback: Annotated[float, typer.Option(help="Seconds of history the very first pull covers.")] = 86400.0,
    step: Annotated[float, typer.Option(help="Resolution (s) of the subquery that finds units' last samples; "
                                             "use the scrape interval.")] = 15.0,
    once: Annotated[bool, typer.Option("--once", help="Pull once, print what was stored, and exit.")] = False,
    insecure_trust_header: Annotated[bool, typer.Option(
        "--insecure-trust-header", help="Start even though the access file trusts its user header from any "
                                        "address (no trusted_proxies).")] = False,
    carbon_trace: Annotated[Path | None, typer.Option(
        help="Carbon-intensity trace (CSV) for the monthly report's carbon-aware savings.")] = None,
    report_wait_hours: Annotated[float, typer.Option(
        help="How long the monthly report's carbon-aware start may delay a unit.")] = 12.0,
) -> None:
    """Pull per-unit aggregates from Prometheus into the database and serve them (users see their own).

    Client addresses come from the socket only (X-Forwarded-For and the like are ignored); the access file's
    trusted_header is believed only from its trusted_proxies.

    Example: wattwise monitor-api --prometheus http://127.0.0.1:9090 --db monitor.db --access access.yml

    Two clusters: --prometheus hpc1=http://prom-hpc1:9090 --prometheus hpc2=http://prom-hpc2:9090"""
    from wattwise.monitor.access import UVICORN_OPTIONS, AccessConfig, check_header_trust, default_access
    from wattwise.monitor.aggregate import Aggregator, AggregatorGroup, PromClient, parse_sources
    from wattwise.monitor.server import parse_listen
    from wattwise.store import open_store

    config = AccessConfig.load(access) if access else default_access()
    if not once:
        check_header_trust(config, insecure_trust_header, str(access))
    sources = parse_sources(prometheus or ["http://127.0.0.1:9090"])
    store = open_store(db)
    aggregators = [Aggregator(store, PromClient(url), step_s=step, lookback_s=lookback, cluster=cluster)
                   for cluster, url in sources]
    aggregator: Aggregator | AggregatorGroup = aggregators[0] if len(aggregators) == 1 else AggregatorGroup(
        aggregators)
    if once:
        summary = aggregator.run_once()
        console.print_json(data=summary)
        return
    import uvicorn

    from wattwise.monitor.api import create_app

    host, port = parse_listen(listen)
    from wattwise.carbon.trace import read_trace

    trace = read_trace(carbon_trace) if carbon_trace else None
    app = create_app(store, config, aggregator=aggregator if interval > 0 else None, interval_s=interval,
                     carbon_trace=trace, report_wait_h=report_wait_hours)
    uvicorn.run(app, host=host, port=port, log_level="warning", **UVICORN_OPTIONS)  # type: ignore[arg-type]


def monitor_proxy(
    listen: Annotated[str, typer.Option(
        help="Address of the guarded Prometheus API: [HOST]:PORT (loopback by default).")] = "127.0.0.1:9012",
    prometheus: Annotated[list[str] | None, typer.Option(
        help="Prometheus base URL behind the guard; repeat for several servers, each with its retention "
             "(http://prom-short:9090#retention=15d): a query goes to the one holding its time range, "
             "replicas with the same retention in turn. Default http://127.0.0.1:9090.")] = None,
    access: Annotated[Path | None, typer.Option(help="Access file (YAML): admins, tokens, projects, header.")] = None,
    db: DbOption = None,
    insecure_trust_header: Annotated[bool, typer.Option(
        "--insecure-trust-header", help="Start even though the access file trusts its user header from any "
                                        "address (no trusted_proxies).")] = False,
) -> None:
    """A PromQL guard in front of Prometheus: non-admins may only query series of units they own.

    Client addresses come from the socket only (X-Forwarded-For and the like are ignored); the access file's
    trusted_header is believed only from its trusted_proxies.

    Example: wattwise monitor-proxy --prometheus http://127.0.0.1:9090 --db monitor.db --access access.yml

    Two servers: --prometheus 'http://127.0.0.1:9090#retention=2d' --prometheus http://127.0.0.1:9091"""
    import uvicorn

    from wattwise.monitor.access import UVICORN_OPTIONS, AccessConfig, check_header_trust, default_access
    from wattwise.monitor.proxy import create_proxy
    from wattwise.monitor.server import parse_listen
    from wattwise.store import open_store

    config = AccessConfig.load(access) if access else default_access()
    check_header_trust(config, insecure_trust_header, str(access))
    host, port = parse_listen(listen)
    app = create_proxy(prometheus or ["http://127.0.0.1:9090"], config, open_store(db))
    uvicorn.run(app, host=host, port=port, log_level="warning", **UVICORN_OPTIONS)  # type: ignore[arg-type]
