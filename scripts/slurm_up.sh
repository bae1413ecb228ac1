#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (Debian, root, no systemd). Elsewhere it exits 1
# with one line saying why (scripts/test.sh then runs every other test).
#
# Idempotent: each step checks before acting, so a second run with everything up
# only verifies and exits 0 within a second. The tests' `slurm_cluster` fixture
# and CI call it before any Slurm test.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
LOGDIR=/var/log/slurm
STATEDIR=/var/lib/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_KEY=/etc/munge/munge.key
WAIT_S=60

step() { echo "slurm_up: $*"; }

# This machine cannot host the cluster: one line, no daemon logs (none of ours ran).
cannot() {
    echo "slurm_up: ERROR: $*" >&2
    exit 1
}

die() {
    echo "slurm_up: ERROR: $*" >&2
    local log
    for log in /var/log/munge/munged.log "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log"; do
        [[ -r $log ]] && { echo "--- tail of $log" >&2; tail -n 25 "$log" >&2; }
    done
    exit 1
}

# True if PIDFILE names a live process whose command is NAME (pid files outlive
# their daemons when a machine's processes are killed, e.g. between sessions).
alive() {
    local name=$1 pidfile=$2 pid
    [[ -r $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ -n $pid && $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]
}

[[ $(id -u) -eq 0 ]] || cannot "run as root (installs packages and starts daemons)"

# 1. packages
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
    && command -v sbatch >/dev/null && command -v munged >/dev/null; then
    step "packages present"
elif ! command -v apt-get >/dev/null; then
    cannot "Slurm is not installed and this is not Debian (no apt-get): install slurmctld, slurmd, slurm-client, munge"
else
    step "installing slurmctld slurmd slurm-client munge"
    # The packages' postinst would start the daemons through init scripts with no
    # slurm.conf yet; deny that (as Debian container images do) when nothing does.
    tmp_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        tmp_policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$tmp_policy" && chmod 755 "$tmp_policy"
        trap 'rm -f "$tmp_policy"' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
        || die "apt-get install failed"
fi

# 2. munge key (the package's postinst usually made one)
if [[ -s $MUNGE_KEY ]]; then
    step "munge key present"
else
    step "creating munge key"
    install -d -o munge -g munge -m 700 /etc/munge
    mungekey --create --keyfile="$MUNGE_KEY" || die "mungekey failed"
fi
chown munge:munge /etc/munge "$MUNGE_KEY"
chmod 700 /etc/munge
chmod 400 "$MUNGE_KEY"

# 3. munged, as user munge
if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    step "munged running"
else
    step "starting munged"
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/log/munge
    install -d -o munge -g munge -m 711 /var/lib/munge
    # --force: a socket left by a killed munged would otherwise block the start.
    runuser -u munge -- /usr/sbin/munged --force || die "munged did not start"
    munge -n </dev/null | unmunge >/dev/null || die "munged started but munge/unmunge fails"
fi

# 4. slurm.conf
node=$(hostname -s)
cpus=$(nproc)
mem_total_mib=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
# slurmd drains a node whose RealMemory exceeds what it measures (MemTotal), and
# jobs need headroom; derive it from MemTotal, not free memory, so the file is the
# same on every run and an unchanged cluster is never restarted.
real_mem=$((mem_total_mib * 9 / 10))
conf=$(cat <<EOF
# Written by scripts/slurm_up.sh: a one-node cluster on localhost for zoo's tests.
ClusterName=zoo
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job may start again only once its old credential expired (default
# 120 s); tests preempt jobs on purpose, so keep it short.
AuthInfo=cred_expire=10
StateSaveLocation=$STATEDIR/slurmctld
SlurmdSpoolDir=$STATEDIR/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SchedulerType=sched/backfill
# Look at pending jobs every second (defaults: 60 s, backfill 30 s) so a requeued
# job starts as soon as it is eligible; the queue here is tiny.
SchedulerParameters=sched_interval=1,bf_interval=1,batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((real_mem / cpus))
# No cgroups in this container: track job processes by parent pid, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
# No slurmdbd: sacct is unavailable (submitit then reads results from its folder).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
# Preemption and timeouts are handled by requeueing (submitit's Checkpointable).
JobRequeue=1
# A node that comes back after a restart of the machine rejoins by itself.
ReturnToService=2
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
)
conf_changed=0
if [[ -r $CONF && $(<"$CONF") == "$conf" ]]; then
    step "slurm.conf up to date ($node, $cpus CPUs, ${real_mem} MiB)"
else
    step "writing $CONF ($node, $cpus CPUs, ${real_mem} MiB)"
    mkdir -p "$(dirname "$CONF")"
    tmp=$(mktemp "$CONF.XXXXXX")
    printf '%s\n' "$conf" >"$tmp"
    chmod 644 "$tmp"
    sync "$tmp"
    mv -f "$tmp" "$CONF"
    conf_changed=1
fi
mkdir -p "$LOGDIR" "$STATEDIR/slurmctld" "$STATEDIR/slurmd"

# 5. daemons (restarted only when the configuration changed under them)
if [[ $conf_changed -eq 1 ]] && { alive slurmctld "$CTLD_PID" || alive slurmd "$SLURMD_PID"; }; then
    step "configuration changed: stopping slurmctld and slurmd"
    scontrol shutdown >/dev/null 2>&1 || true
    for _ in $(seq 1 50); do
        alive slurmctld "$CTLD_PID" || alive slurmd "$SLURMD_PID" || break
        sleep 0.2
    done
    ! alive slurmctld "$CTLD_PID" && ! alive slurmd "$SLURMD_PID" \
        || die "slurmctld/slurmd did not stop after 'scontrol shutdown'"
fi
if alive slurmctld "$CTLD_PID"; then
    step "slurmctld running"
else
    step "starting slurmctld"
    slurmctld || die "slurmctld did not start"
fi
if alive slurmd "$SLURMD_PID"; then
    step "slurmd running"
else
    step "starting slurmd"
    slurmd || die "slurmd did not start"
fi

# 6. wait for the node; resume it if it came up DOWN or DRAINED
deadline=$((SECONDS + WAIT_S))
while :; do
    state=$(sinfo -h -n "$node" -o %T 2>/dev/null || true)
    case $state in
        idle | mixed | allocated | completing)
            step "node $node is $state"
            break
            ;;
        *down* | *drain* | *fail*)
            # "down*" (trailing star) means slurmd has not registered yet: resuming
            # is refused until it does, so keep trying until the deadline.
            scontrol update nodename="$node" state=resume >/dev/null 2>&1 \
                && step "node $node was $state: resumed"
            ;;
    esac
    [[ $SECONDS -lt $deadline ]] || die "node $node not up after ${WAIT_S}s (sinfo state: '${state:-none}')"
    sleep 0.5
done
