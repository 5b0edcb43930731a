"""libvirt/QEMU virtual machines and Kubernetes pods as compute units, on fixture trees modelled on the real
layouts: systemd's machine.slice/machine-qemu\\x2d<N>\\x2d<name>.scope with libvirt's emulator and vcpu
sub-cgroups, kubelet's systemd driver (kubepods.slice, cgroup v2) and cgroupfs driver (kubepods/, cgroup v1),
each QoS class; owners from domain XML metadata (Nova, wattwise) and a `kubectl get pods -A -o json` file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.monitor.conftest import check_metrics, parse_samples, unit_labels, unit_values

from wattwise.carbon.live import CachedIntensity, StaticSource
from wattwise.monitor import synth
from wattwise.monitor.exporter import ExporterConfig, MonitorExporter
from wattwise.monitor.managers import KubernetesPods, LibvirtDomains, parse_domain_xml
from wattwise.monitor.metadata import OwnerResolver, UserNames
from wattwise.monitor.node import NodeReader
from wattwise.providers.estimate import PowerCurve

POD_BURSTABLE = "6f1a3c9e-2b4d-4e8f-9a0b-1c2d3e4f5a6b"
POD_GUARANTEED = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
POD_BESTEFFORT = "d4c3b2a1-0f9e-4d8c-b7a6-958473625140"
CONTAINER = "e" * 64
DOCKER_IN_POD = "d" * 64

NOVA_XML = """<domstatus state='running' reason='booted' pid='4321'>
  <monitor path='/var/lib/libvirt/qemu/domain-1-instance-0000002a/monitor.sock' type='unix'/>
  <domain type='kvm' id='1'>
    <name>instance-0000002a</name>
    <uuid>8b1d1f33-2f51-4b5e-9d55-0e6a1a9e7c11</uuid>
    <metadata>
      <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
        <nova:package version="27.1.0"/>
        <nova:name>web-frontend</nova:name>
        <nova:creationTime>2024-05-14 09:00:00</nova:creationTime>
        <nova:flavor name="m1.large"><nova:memory>8192</nova:memory><nova:vcpus>4</nova:vcpus></nova:flavor>
        <nova:owner>
          <nova:user uuid="6c1e1a9b0c2d4e5f8a7b6c5d4e3f2a1b">alice</nova:user>
          <nova:project uuid="1f2e3d4c5b6a79881726354433221100">astro</nova:project>
        </nova:owner>
      </nova:instance>
    </metadata>
    <memory unit='KiB'>8388608</memory>
    <vcpu placement='static'>4</vcpu>
  </domain>
</domstatus>
"""
WATTWISE_XML = """<domain type='kvm'>
  <name>db</name>
  <uuid>c0ffee00-0000-4000-8000-000000000002</uuid>
  <metadata>
    <wattwise:owner xmlns:wattwise="https://wattwise.dev/xmlns/libvirt/owner/1" user="bob" project="chem"/>
  </metadata>
</domain>
"""


def pod_list() -> dict:
    def pod(uid: str, name: str, namespace: str, qos: str, user: str | None) -> dict:
        labels = {"app": name}
        if user:
            labels["wattwise.dev/user"] = user
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace, "uid": uid, "labels": labels},
                "spec": {"nodeName": "k8s01", "containers": [{"name": name, "image": f"{name}:1"}]},
                "status": {"phase": "Running", "qosClass": qos}}

    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
            "items": [pod(POD_BURSTABLE, "trainer-0", "ml-team", "Burstable", "carol"),
                      pod(POD_GUARANTEED, "db-0", "databases", "Guaranteed", None)]}


def _node_files(base: Path) -> None:
    proc = base / "proc"
    synth._write(proc / "stat", synth.proc_stat_text({"user": 100000, "system": 10000, "idle": 500000}, 8))
    synth._write(proc / "meminfo", synth.meminfo_text(2**36, 2**35, 2**35 + 2**33))
    for pid, uid in ((4321, 64055), (4400, 64055), (5001, 1000), (5002, 999), (5003, 65534), (5004, 0)):
        synth.write_process(proc, pid, uid)


def figures(cpu_s: float, pids: list[int]) -> synth.UnitFigures:
    return synth.UnitFigures(cpu_user_s=cpu_s, memory_b=2**30, memory_peak_b=2**30, rss_b=2**29, cache_b=2**29,
                             cpus="0-3", pids=pids)


def build_v2(base: Path, *, second: bool = False) -> Path:
    """cgroup v2, systemd drivers: a Nova VM, a tagged VM, three pods (one of each QoS class)."""
    (base / "mountinfo").parent.mkdir(parents=True, exist_ok=True)
    (base / "mountinfo").write_text(synth.V2_MOUNTINFO)
    cgroup = base / "cgroup"
    add = 10.0 if second else 0.0
    synth.write_v2_unit(cgroup / "machine.slice" / "machine-qemu\\x2d1\\x2dinstance\\x2d0000002a.scope",
                        figures(100 + add, [4321]), leaf="libvirt/emulator")
    (cgroup / "machine.slice" / "machine-qemu\\x2d1\\x2dinstance\\x2d0000002a.scope" / "libvirt" / "vcpu0").mkdir(
        parents=True, exist_ok=True)
    synth.write_v2_unit(cgroup / "machine.slice" / "machine-qemu\\x2d2\\x2ddb.scope", figures(50 + add, [4400]),
                        leaf="libvirt/emulator")
    pods = cgroup / "kubepods.slice"
    burst = pods / "kubepods-burstable.slice" / f"kubepods-burstable-pod{POD_BURSTABLE.replace('-', '_')}.slice"
    synth.write_v2_unit(burst, figures(30 + add, [5001]), leaf=f"cri-containerd-{CONTAINER}.scope")
    guaranteed = pods / f"kubepods-pod{POD_GUARANTEED.replace('-', '_')}.slice"
    synth.write_v2_unit(guaranteed, figures(20 + add, [5002]), leaf=f"crio-{CONTAINER}.scope")
    best = pods / "kubepods-besteffort.slice" / f"kubepods-besteffort-pod{POD_BESTEFFORT.replace('-', '_')}.slice"
    synth.write_v2_unit(best, figures(5 + add, [5003]), leaf=f"docker-{DOCKER_IN_POD}.scope")
    _node_files(base)
    return base


def build_v1(base: Path) -> Path:
    """cgroup v1, cgroupfs drivers: libvirt machine/qemu-3-hpc.libvirt-qemu, kubelet kubepods/<qos>/pod<uid>."""
    (base / "mountinfo").parent.mkdir(parents=True, exist_ok=True)
    (base / "mountinfo").write_text(synth.V1_MOUNTINFO)
    cgroup = base / "cgroup"
    roots = {"cpuacct": cgroup / "cpu,cpuacct", "memory": cgroup / "memory", "cpuset": cgroup / "cpuset"}
    synth.write_v1_unit(roots, "machine/qemu-3-hpc.libvirt-qemu", figures(70, [4321]), leaf="emulator")
    synth.write_v1_unit(roots, f"kubepods/burstable/pod{POD_BURSTABLE}", figures(30, [5001]), leaf=CONTAINER)
    synth.write_v1_unit(roots, f"kubepods/pod{POD_GUARANTEED}", figures(20, [5002]), leaf=CONTAINER)
    synth.write_v1_unit(roots, f"kubepods/besteffort/pod{POD_BESTEFFORT}", figures(5, [5003]), leaf=CONTAINER)
    _node_files(base)
    return base


def exporter_on(base: Path, owners: OwnerResolver) -> tuple[MonitorExporter, list[float]]:
    clock = [1_700_000_000.0]
    config = ExporterConfig(mountinfo=base / "mountinfo", cgroup_root=base / "cgroup", powercap_root=None,
                            proc_root=base / "proc", hostname="k8s01")
    exporter = MonitorExporter(config, CachedIntensity(StaticSource.for_country("FR")),
                               node=NodeReader(config.proc_root, None), owners=owners,
                               power_curve=PowerCurve.from_tdp(150.0, "test"), clock=lambda: clock[0])
    exporter.open()
    return exporter, clock


def _info(text: str) -> dict[str, dict[str, str]]:
    return {f"{dict(k)['manager']}/{dict(k)['unit']}": dict(k) for (n, k), _ in parse_samples(text).items()
            if n == "wattwise_unit_info"}


def test_vms_and_pods_in_cgroup_v2(tmp_path: Path) -> None:
    base = build_v2(tmp_path / "v2")
    xml = tmp_path / "libvirt"
    xml.mkdir()
    (xml / "instance-0000002a.xml").write_text(NOVA_XML)
    (xml / "db.xml").write_text(WATTWISE_XML)
    pods = tmp_path / "pods.json"
    pods.write_text(json.dumps(pod_list()))
    owners = OwnerResolver(base / "proc", names=UserNames(None), libvirt=LibvirtDomains((xml,)),
                           pods=KubernetesPods(pods))
    exporter, clock = exporter_on(base, owners)
    build_v2(base, second=True)
    clock[0] += 10
    text = exporter.scrape()
    check_metrics(text)
    labels = unit_labels(text)
    assert sorted(labels) == sorted([
        "libvirt/instance-0000002a", "libvirt/db", f"k8s/{POD_BURSTABLE}", f"k8s/{POD_GUARANTEED}",
        f"k8s/{POD_BESTEFFORT}"])  # the docker scope inside the BestEffort pod is part of the pod, not a unit
    assert (labels["libvirt/instance-0000002a"]["user"], labels["libvirt/instance-0000002a"]["project"]) == (
        "alice", "astro")
    assert (labels["libvirt/db"]["user"], labels["libvirt/db"]["project"]) == ("bob", "chem")
    assert (labels[f"k8s/{POD_BURSTABLE}"]["user"], labels[f"k8s/{POD_BURSTABLE}"]["project"]) == ("carol", "ml-team")
    # no user label on the pod: the user of its process's uid; the namespace is the project
    assert labels[f"k8s/{POD_GUARANTEED}"]["project"] == "databases"
    info = _info(text)
    assert info["libvirt/instance-0000002a"]["vm_name"] == "web-frontend"
    assert info["libvirt/instance-0000002a"]["vm_uuid"] == "8b1d1f33-2f51-4b5e-9d55-0e6a1a9e7c11"
    assert info[f"k8s/{POD_BURSTABLE}"]["qos_class"] == "burstable"
    assert info[f"k8s/{POD_BURSTABLE}"]["pod"] == "trainer-0"
    assert info[f"k8s/{POD_GUARANTEED}"]["qos_class"] == "guaranteed"
    # not in the pod list: the QoS class of its cgroup path, nothing else
    assert info[f"k8s/{POD_BESTEFFORT}"]["qos_class"] == "besteffort" and "pod" not in info[f"k8s/{POD_BESTEFFORT}"]
    # every unit used 10 CPU-seconds in the 10 s: equal CPU shares
    shares = unit_values(text, "wattwise_unit_cpu_share_ratio")
    assert len(set(shares.values())) == 1 and next(iter(shares.values())) > 0
    units = {dict(k)["manager"]: v for (n, k), v in parse_samples(text).items() if n == "wattwise_exporter_units"}
    assert (units["libvirt"], units["k8s"]) == (2, 3)


def test_pods_and_vms_in_cgroup_v1_without_metadata(tmp_path: Path) -> None:
    base = build_v1(tmp_path / "v1")
    exporter, clock = exporter_on(base, OwnerResolver(base / "proc", names=UserNames(None),
                                                      libvirt=LibvirtDomains((tmp_path / "none",))))
    clock[0] += 10
    text = exporter.scrape()
    check_metrics(text)
    labels = unit_labels(text)
    assert sorted(labels) == sorted(["libvirt/hpc", f"k8s/{POD_BURSTABLE}", f"k8s/{POD_GUARANTEED}",
                                     f"k8s/{POD_BESTEFFORT}"])
    assert labels["libvirt/hpc"]["user"] == "64055"  # the qemu process's uid: no metadata to say better
    assert {_info(text)[f"k8s/{p}"]["qos_class"] for p in (POD_BURSTABLE, POD_GUARANTEED, POD_BESTEFFORT)} == {
        "burstable", "guaranteed", "besteffort"}
    assert unit_values(text, "wattwise_unit_cpu_seconds_total")["libvirt/hpc"] == 70.0


def test_metadata_errors_are_clear(tmp_path: Path) -> None:
    from wattwise.errors import ConfigError

    with pytest.raises(ConfigError, match="not valid XML"):
        parse_domain_xml("<domain><name>x</domain>", "x.xml")
    with pytest.raises(ConfigError, match="no <domain> element"):
        parse_domain_xml("<other/>", "x.xml")
    bad = tmp_path / "pods.json"
    bad.write_text('{"kind": "Pod"}')
    pods = KubernetesPods(bad)
    with pytest.raises(ConfigError, match="expected the JSON of 'kubectl get pods -A -o json'"):
        pods._load()
    assert pods.owner(POD_BURSTABLE, "burstable").info == (("qos_class", "burstable"),)
