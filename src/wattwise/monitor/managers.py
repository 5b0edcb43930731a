"""Owner metadata of libvirt/QEMU virtual machines and Kubernetes pods, where it can be read.

**libvirt**: the domain XML libvirt keeps for each running domain (``/run/libvirt/qemu/<name>.xml``, whose
``<domain>`` is wrapped in a ``<domstatus>`` element; or a definition in ``/etc/libvirt/qemu/<name>.xml``).
In its ``<metadata>``:

* OpenStack Nova's ``<nova:instance>`` (namespace ``http://openstack.org/xmlns/libvirt/nova/1.x``):
  ``<nova:owner><nova:user>`` → user, ``<nova:project>`` → project, ``<nova:name>`` → the instance name;
* or wattwise's own ``<wattwise:owner user="…" project="…"/>`` (namespace
  ``https://wattwise.dev/xmlns/libvirt/owner/1``), for clusters that tag their VMs themselves.

The domain's ``<uuid>`` is kept as an info label.

**Kubernetes**: a pod list in the JSON that ``kubectl get pods --all-namespaces -o json`` prints (or the API
server's ``/api/v1/pods``), refreshed by whoever writes the file (e.g. a cron job or a sidecar). For a pod
uid: namespace → project, the value of a configurable label (default ``wattwise.dev/user``) → user, and name,
namespace and QoS class (``status.qosClass``, else the one of the cgroup path) as info labels. The file is
re-read when its modification time changes.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattwise.errors import ConfigError

NOVA_NAMESPACES = ("http://openstack.org/xmlns/libvirt/nova/1.0", "http://openstack.org/xmlns/libvirt/nova/1.1")
WATTWISE_NAMESPACE = "https://wattwise.dev/xmlns/libvirt/owner/1"
DEFAULT_USER_LABEL = "wattwise.dev/user"


@dataclass(frozen=True)
class ManagedOwner:
    user: str = ""
    project: str = ""
    info: tuple[tuple[str, str], ...] = ()  # extra labels of wattwise_unit_info


def parse_domain_xml(text: str, where: str = "domain XML") -> ManagedOwner:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ConfigError(f"{where}: not valid XML ({exc})") from exc
    domain = root if root.tag == "domain" else root.find("domain")
    if domain is None:
        raise ConfigError(f"{where}: no <domain> element")
    info: list[tuple[str, str]] = []
    uuid = domain.findtext("uuid")
    if uuid:
        info.append(("vm_uuid", uuid.strip()))
    metadata = domain.find("metadata")
    user = project = ""
    if metadata is not None:
        for ns in NOVA_NAMESPACES:
            instance = metadata.find(f"{{{ns}}}instance")
            if instance is not None:
                user = (instance.findtext(f"{{{ns}}}owner/{{{ns}}}user") or "").strip()
                project = (instance.findtext(f"{{{ns}}}owner/{{{ns}}}project") or "").strip()
                name = (instance.findtext(f"{{{ns}}}name") or "").strip()
                if name:
                    info.append(("vm_name", name))
                break
        own = metadata.find(f"{{{WATTWISE_NAMESPACE}}}owner")
        if own is not None:
            user = own.get("user", user)
            project = own.get("project", project)
    return ManagedOwner(user, project, tuple(info))


class LibvirtDomains:
    """Domain XML files of a directory, read per domain name (once per unit: labels must stay stable)."""

    def __init__(self, directories: tuple[str | Path, ...] = ("/run/libvirt/qemu", "/etc/libvirt/qemu")) -> None:
        self.directories = [Path(d) for d in directories]

    def owner(self, name: str) -> ManagedOwner:
        for directory in self.directories:
            path = directory / f"{name}.xml"
            try:
                text = path.read_text()
            except OSError:
                continue
            try:
                return parse_domain_xml(text, str(path))
            except ConfigError:
                return ManagedOwner()  # a half-written status file: no metadata rather than no unit
        return ManagedOwner()


class KubernetesPods:
    """Pods by uid from a ``kubectl get pods -A -o json`` file."""

    def __init__(self, path: str | Path, user_label: str = DEFAULT_USER_LABEL) -> None:
        self.path = Path(path)
        self.user_label = user_label
        self._mtime: float | None = None
        self._pods: dict[str, dict[str, Any]] = {}

    def _load(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except OSError as exc:
            raise ConfigError(f"cannot read the pod list {self.path}: {exc.strerror}") from exc
        if mtime == self._mtime:
            return
        try:
            document = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"pod list {self.path} is not readable JSON: {exc}") from exc
        items = document.get("items") if isinstance(document, dict) else None
        if not isinstance(items, list):
            raise ConfigError(f"pod list {self.path}: expected the JSON of 'kubectl get pods -A -o json' "
                              "(an object with items)")
        pods = {}
        for item in items:
            metadata = item.get("metadata") if isinstance(item, dict) else None
            if isinstance(metadata, dict) and isinstance(metadata.get("uid"), str):
                pods[metadata["uid"]] = item
        self._pods, self._mtime = pods, mtime

    def owner(self, uid: str, qos: str = "") -> ManagedOwner:
        try:
            self._load()
        except ConfigError:
            if not self._pods:
                return ManagedOwner("", "", (("qos_class", qos),) if qos else ())
        pod = self._pods.get(uid)
        if pod is None:
            return ManagedOwner("", "", (("qos_class", qos),) if qos else ())
        metadata = pod.get("metadata") or {}
        labels = metadata.get("labels") or {}
        status = pod.get("status") or {}
        qos_class = str(status.get("qosClass") or qos).lower()
        namespace = str(metadata.get("namespace") or "")
        info = (("namespace", namespace), ("pod", str(metadata.get("name") or "")), ("qos_class", qos_class))
        return ManagedOwner(str(labels.get(self.user_label, "")), namespace, info)
