#!/usr/bin/env bash
# A one-node Slurm on loopback for the tests (munge + slurmctld + slurmd), config in $WATTWISE_TEST_SLURM_DIR.
# Idempotent: does nothing when the daemons already answer.
set -euo pipefail
command -v slurmctld >/dev/null || { echo "slurm.sh: slurm-wlm is not installed"; exit 0; }
D="${WATTWISE_TEST_SLURM_DIR:-/var/lib/wattwise-test/slurm}"
mkdir -p "$D/state" "$D/spool" "$D/log"
cpus=$(nproc)
memory_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
cat > "$D/slurm.conf.new" <<CONF
ClusterName=wattwise-test
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
# scheduling passes every 2 s (default 60 s / 30 s), so that a job held by --begin starts within a second or two
# of its begin time: the closed-loop tests run plans on a compressed clock
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
changed=1
cmp -s "$D/slurm.conf.new" "$D/slurm.conf" && changed=0
mv "$D/slurm.conf.new" "$D/slurm.conf"
export SLURM_CONF="$D/slurm.conf"
if ((changed)) && scontrol ping 2>/dev/null | grep -q "is UP"; then
    scontrol reconfigure || true  # a running controller takes the new configuration
fi

if ! pgrep -x munged >/dev/null; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    [[ -s /etc/munge/munge.key ]] || { mungekey --create --force 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
fi
if ! scontrol ping 2>/dev/null | grep -q "is UP"; then
    pkill -x slurmctld 2>/dev/null || true
    slurmctld -f "$SLURM_CONF"
fi
if ! pgrep -x slurmd >/dev/null; then
    slurmd -f "$SLURM_CONF" -N localhost
fi
for _ in $(seq 1 30); do
    if sinfo -h -o "%T" 2>/dev/null | grep -qE "idle|mixed|allocated"; then
        echo "slurm: up ($SLURM_CONF)"
        exit 0
    fi
    sleep 1
done
echo "slurm: did not come up; see $D/log" >&2
exit 0
