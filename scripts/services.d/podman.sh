#!/usr/bin/env bash
# Podman for the scenario runner's tests (`wattwise run` on real containers). Idempotent: seconds when done.
#
# - containers.conf drop-in: runc as the OCI runtime, cgroupfs as the cgroup manager (no systemd here) and
#   no default ulimits (runc may not raise RLIMIT_NOFILE inside this sandbox);
# - the local test image localhost/wattwise-busybox:latest, made from Debian's busybox-static (no registry
#   is reachable, so nothing is pulled): /bin/busybox and one symlink per applet, imported with
#   `podman import`.
# Packages (podman, runc, busybox-static, ...) come from scripts/test-packages.txt.
set -euo pipefail

if ! command -v podman >/dev/null; then
    echo "podman.sh: podman is not installed (see scripts/test-packages.txt); skipped" >&2
    exit 0
fi

conf_dir=/etc/containers/containers.conf.d
conf="$conf_dir/50-wattwise.conf"
want='# written by wattwise scripts/services.d/podman.sh
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"'
if [[ ! -f "$conf" || "$(cat "$conf")" != "$want" ]]; then
    mkdir -p "$conf_dir"
    printf '%s\n' "$want" > "$conf"
    echo "podman.sh: wrote $conf"
fi

image=localhost/wattwise-busybox:latest
if ! podman image exists "$image" 2>/dev/null; then
    busybox=/bin/busybox
    if [[ ! -x "$busybox" ]] || ! "$busybox" --list >/dev/null 2>&1; then
        echo "podman.sh: $busybox is missing (install busybox-static)" >&2
        exit 1
    fi
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/www" "$root/root" "$root/proc" "$root/sys" "$root/dev"
    chmod 1777 "$root/tmp"
    cp "$busybox" "$root/bin/busybox"
    for applet in $("$busybox" --list); do
        [[ "$applet" == busybox ]] || ln -sf busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\n' > "$root/etc/group"
    tar -C "$root" -cf "$root.tar" .
    podman import --quiet --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' \
        --change 'WORKDIR /' "$root.tar" "$image" >/dev/null
    rm -f "$root.tar"
    echo "podman.sh: built $image from $busybox"
fi
