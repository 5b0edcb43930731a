#!/usr/bin/env bash
# Install (Debian packages) and start the real services the test suite talks to.
# Needs root. Each part is skipped when already in place, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in $(grep -vE '^\s*(#|$)' scripts/test-packages.txt); do
    have_pkg "$pkg" || need+=("$pkg")
done
if ((${#need[@]})); then
    echo "installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# PostgreSQL: the machine's server; start it when it is down.
if command -v pg_ctlcluster >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi

for hook in scripts/services.d/*.sh; do
    [[ -e "$hook" ]] && bash "$hook"
done
exit 0
