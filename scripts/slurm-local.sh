#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for testing owl's launch
# under `srun` (see launch/ and cli/tests/cluster.rs):
#
#   scripts/slurm-local.sh start    # install if missing, start munged, slurmctld, slurmd; wait for an idle node
#   scripts/slurm-local.sh status   # daemons and sinfo
#   scripts/slurm-local.sh stop     # cancel jobs, stop the daemons by pid
#   scripts/slurm-local.sh start --with-mpi   # also install openmpi-bin (mpirun) if missing
#
# Everything lives under $OWL_SLURM_DIR (/tmp/owl-slurm): slurm.conf, state,
# spool, logs, pid files. /etc/slurm/slurm.conf is made a symlink to that
# config (only when no other config is there), so plain `srun`, `sinfo` work
# without SLURM_CONF. Idempotent: `start` leaves running daemons alone,
# `stop` does nothing when nothing runs. Needs root (or sudo) for apt-get and
# the daemons; there is no systemd here, so the daemons are started directly.
#
# The node is `hostname -s` at 127.0.0.1 and advertises max(nproc, 8) CPUs
# (SlurmdParameters=config_overrides), so `srun -n 4` on a 2-core machine
# runs instead of queueing forever. MpiDefault=pmix: Open MPI binaries need
# it under srun, and plain programs run fine with it.
set -euo pipefail

DIR="${OWL_SLURM_DIR:-/tmp/owl-slurm}"
CONF="$DIR/slurm.conf"
ETC_CONF=/etc/slurm/slurm.conf
MUNGE_PID=/run/munge/munged.pid
NODE="$(hostname -s)"
CPUS="$(nproc)"
[ "$CPUS" -ge 8 ] || CPUS=8
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { echo "slurm-local: $*" >&2; }

# A pid counts as alive when its process exists and is not a zombie (PID 1
# here reaps orphans only every ~2 s).
alive() {
    local pid="$1" state
    [ -n "$pid" ] || return 1
    state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" || return 1
    [ -n "$state" ] && [ "$state" != "Z" ] && [ "$state" != "X" ]
}

pid_of() { [ -r "$1" ] && tr -d ' \n' <"$1" || true; }

install_pkgs() {
    local need=()
    command -v srun >/dev/null 2>&1 && command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 \
        || need+=(slurm-wlm)
    command -v munged >/dev/null 2>&1 || need+=(munge)
    # MpiDefault=pmix: Slurm's PMIx plugin dlopens the unversioned
    # libpmix.so, which only libpmix-dev ships; without it every srun fails
    # with "can not load PMIx library".
    dpkg -s libpmix-dev >/dev/null 2>&1 || need+=(libpmix-dev)
    if [ "${WITH_MPI:-0}" = 1 ]; then
        command -v mpirun >/dev/null 2>&1 || need+=(openmpi-bin)
    fi
    if [ "${#need[@]}" -gt 0 ]; then
        log "installing ${need[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
    fi
}

write_conf() {
    $SUDO mkdir -p "$DIR/state" "$DIR/spool"
    local tmp="$DIR/slurm.conf.tmp"
    $SUDO tee "$tmp" >/dev/null <<EOF
# Written by owl's scripts/slurm-local.sh: a one-node test cluster.
ClusterName=owl-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
    $SUDO mv -f "$tmp" "$CONF"
    if [ -L "$ETC_CONF" ] || [ ! -e "$ETC_CONF" ]; then
        $SUDO mkdir -p "$(dirname "$ETC_CONF")"
        $SUDO ln -sfn "$CONF" "$ETC_CONF"
    elif ! cmp -s "$ETC_CONF" "$CONF"; then
        log "$ETC_CONF exists and is not ours; leaving it alone (export SLURM_CONF=$CONF to use this cluster)"
    fi
}

start_munge() {
    if alive "$(pid_of "$MUNGE_PID")"; then return; fi
    $SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge
    $SUDO chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    if [ ! -e /etc/munge/munge.key ]; then
        $SUDO mungekey --create 2>/dev/null || $SUDO /usr/sbin/create-munge-key -f
        $SUDO chown munge:munge /etc/munge/munge.key
    fi
    # --force: a stale socket from an unclean stop must not block the start.
    $SUDO runuser -u munge -- munged --force
}

start_daemon() { # name pidfile command...
    local name="$1" pidfile="$2"
    shift 2
    if alive "$(pid_of "$pidfile")"; then return; fi
    $SUDO rm -f "$pidfile"
    # Both daemons fork into the background and write their pid files.
    SLURM_CONF="$CONF" $SUDO "$@"
    local i
    for i in $(seq 100); do
        alive "$(pid_of "$pidfile")" && return
        sleep 0.1
    done
    log "$name did not start; its log:"
    tail -n 20 "$DIR/$name.log" >&2 || true
    exit 1
}

wait_idle() {
    local i state
    for i in $(seq 300); do
        state="$(SLURM_CONF="$CONF" timeout 5 sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1 || true)"
        case "$state" in
            idle | mixed | allocated) return 0 ;;
            drain* | down* | fail*)
                SLURM_CONF="$CONF" scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.1
    done
    log "node $NODE never became idle (last state: '${state:-none}'); logs in $DIR"
    tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
    exit 1
}

stop_pid() { # name pidfile
    local pid
    pid="$(pid_of "$2")"
    if alive "$pid"; then
        $SUDO kill "$pid" 2>/dev/null || true
        local i
        for i in $(seq 100); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            log "$1 ($pid) ignored SIGTERM; killing it"
            $SUDO kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    $SUDO rm -f "$2"
}

cmd="${1:-}"
shift || true
for arg in "$@"; do
    case "$arg" in
        --with-mpi) WITH_MPI=1 ;;
        *) log "unknown option $arg"; exit 2 ;;
    esac
done

case "$cmd" in
    start)
        t0="$(date +%s.%N)"
        install_pkgs
        t1="$(date +%s.%N)"
        write_conf
        start_munge
        start_daemon slurmctld "$DIR/slurmctld.pid" slurmctld -c
        start_daemon slurmd "$DIR/slurmd.pid" slurmd
        wait_idle
        t2="$(date +%s.%N)"
        log "node $NODE idle ($(awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "install %.1f s, start %.1f s", b - a, c - b }'))"
        ;;
    stop)
        if [ -e "$CONF" ] && alive "$(pid_of "$DIR/slurmctld.pid")"; then
            SLURM_CONF="$CONF" timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
            SLURM_CONF="$CONF" timeout 10 scancel --quiet --state=PENDING 2>/dev/null || true
        fi
        stop_pid slurmd "$DIR/slurmd.pid"
        stop_pid slurmctld "$DIR/slurmctld.pid"
        stop_pid munged "$MUNGE_PID"
        ;;
    status)
        for d in "slurmctld:$DIR/slurmctld.pid" "slurmd:$DIR/slurmd.pid" "munged:$MUNGE_PID"; do
            pid="$(pid_of "${d#*:}")"
            if alive "$pid"; then echo "${d%%:*}: running (pid $pid)"; else echo "${d%%:*}: stopped"; fi
        done
        if alive "$(pid_of "$DIR/slurmctld.pid")"; then
            SLURM_CONF="$CONF" timeout 5 sinfo || true
        fi
        ;;
    *)
        echo "usage: $0 start [--with-mpi] | stop | status" >&2
        exit 2
        ;;
esac
