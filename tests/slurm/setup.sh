#!/usr/bin/env bash
# Stand up a single-node SLURM cluster on loopback, without systemd, for tests/test_slurm.py.
#
#   tests/slurm/setup.sh [STATE_DIR]      (default /tmp/diffxai-slurm)
#
# Installs Debian's packages when missing (slurmctld slurmd slurm-client slurmdbd munge
# mariadb-server; needs root and apt), then starts munged, mariadbd, slurmdbd, slurmctld and
# slurmd, each with its PID in STATE_DIR/pids/, all configuration under STATE_DIR/etc (the
# clients find it through SLURM_CONF and a symlink /etc/slurm/slurm.conf, made only when no other
# SLURM configuration is there). The node declares one GPU
# GRES backed by a dummy device file (gres.conf AutoDetect=off), so `--gpus=1` jobs schedule
# and get CUDA_VISIBLE_DEVICES from SLURM. Accounting goes to slurmdbd/MariaDB so that `sacct`
# works; MinJobAge is large so that `squeue` status queries work too.
#
# On success prints `export SLURM_CONF=...` and writes it to STATE_DIR/env. Exit status 3 means
# the packages could not be installed, 4 that /etc/slurm/slurm.conf belongs to a real SLURM
# installation (the test skips on both); any other failure is an error.
# Stop everything with tests/slurm/teardown.sh STATE_DIR.
set -euo pipefail

D=${1:-/tmp/diffxai-slurm}
HERE=$(cd "$(dirname "$0")" && pwd)
PKGS="slurmctld slurmd slurm-client slurmdbd munge mariadb-server"
ACCOUNT=diffxai
PARTITION=debug

log() { echo "[slurm-setup $(date +%T)] $*" >&2; }
# wait_for SECONDS CMD...: retry CMD (quietly) until it succeeds or SECONDS pass.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.3
    done
}

need_install=0
for b in slurmctld slurmd slurmdbd sbatch sacct sacctmgr munged mariadbd mariadb-install-db; do
    command -v "$b" >/dev/null 2>&1 || need_install=1
done
if [ "$need_install" = 1 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        log "SLURM packages missing and cannot install them (need root and apt-get)"
        exit 3
    fi
    log "installing $PKGS"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $PKGS; } >"/tmp/diffxai-slurm-apt.log" 2>&1; then
        tail -5 /tmp/diffxai-slurm-apt.log >&2
        log "apt-get install of $PKGS failed (log: /tmp/diffxai-slurm-apt.log)"
        exit 3
    fi
fi
if [ "$(id -u)" != 0 ]; then
    log "the daemons need root (SlurmUser=root); run as root"
    exit 3
fi

# A previous cluster in the same state dir is stopped first: setup is idempotent.
if [ -d "$D/pids" ]; then
    "$HERE/teardown.sh" "$D" || true
fi
rm -rf "$D"
mkdir -p "$D"/{etc,pids,log,state,spool,mysql,run,dev,munge}
# On any failure, stop what was started so far.
trap 'rc=$?; [ $rc = 0 ] || "$HERE/teardown.sh" "$D"; exit $rc' EXIT
chmod 755 "$D"
HOST=$(hostname -s)
# Installed CPUs: nproc would honour OMP_NUM_THREADS, which the test process may have set.
CPUS=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc --all)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)

# Ports: far from the defaults, so that a real slurmctld/slurmd on this host is left alone.
CTLD_PORT=${DIFFXAI_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${DIFFXAI_SLURMD_PORT:-16818}
DBD_PORT=${DIFFXAI_SLURMDBD_PORT:-16819}

# ---- munge (own socket and key: a system munged, if any, is not disturbed)
dd if=/dev/urandom of="$D/munge/munge.key" bs=1 count=1024 status=none
chmod 400 "$D/munge/munge.key"
MUNGE_SOCKET="$D/munge/munge.socket"
munged --force --key-file="$D/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$D/pids/munged.pid" --log-file="$D/log/munged.log" --seed-file="$D/munge/munge.seed"
log "munged started"

# ---- MariaDB (own data dir, unix socket only)
DB_SOCKET="$D/run/mysqld.sock"
mariadb-install-db --user=root --datadir="$D/mysql" --auth-root-authentication-method=socket \
    --skip-test-db >"$D/log/mariadb-install.log" 2>&1
mariadbd --user=root --datadir="$D/mysql" --socket="$DB_SOCKET" --skip-networking \
    --pid-file="$D/pids/mariadbd.pid" --log-error="$D/log/mariadbd.log" \
    --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 >/dev/null 2>&1 &
for _ in $(seq 1 100); do
    [ -S "$DB_SOCKET" ] && break
    sleep 0.2
done
[ -S "$DB_SOCKET" ] || { log "mariadbd did not start: $(tail -3 "$D/log/mariadbd.log")"; exit 1; }
log "mariadbd started"

# ---- configuration
cat >"$D/etc/slurm.conf" <<EOF
ClusterName=diffxai
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/pids/slurmctld.pid
SlurmdPidFile=$D/pids/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MinJobAge=86400
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
SchedulerParameters=sched_interval=1,bf_interval=1
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

# The "GPU": a dummy character device (the same device numbers as /dev/null; SLURM only checks
# that File= is a device). AutoDetect=off, so SLURM does not probe NVML.
mknod "$D/dev/nvidia0" c 1 3 2>/dev/null || ln -s /dev/null "$D/dev/nvidia0"
cat >"$D/etc/gres.conf" <<EOF
AutoDetect=off
NodeName=$HOST Name=gpu File=$D/dev/nvidia0
EOF

cat >"$D/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$D/pids/slurmdbd.pid
LogFile=$D/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=root
EOF
# MariaDB's client library takes the socket from the environment.
chmod 600 "$D/etc/slurmdbd.conf"

export SLURM_CONF="$D/etc/slurm.conf"
# Clients inside jobs do not always see SLURM_CONF (snakemake's jobstep plugin drops SLURM_*
# variables before its nested srun), so the default path must lead here too: a symlink, made only
# where no other SLURM configuration exists (teardown.sh removes it).
if [ -e /etc/slurm/slurm.conf ] || [ -L /etc/slurm/slurm.conf ]; then
    current=$(readlink /etc/slurm/slurm.conf || true)
    if [[ "$current" != */etc/slurm.conf ]] || ! grep -q "^ClusterName=diffxai$" /etc/slurm/slurm.conf 2>/dev/null; then
        if [ "$current" != "" ] && [ ! -e "$current" ]; then
            rm -f /etc/slurm/slurm.conf   # a dangling link left by an earlier test cluster
        else
            log "/etc/slurm/slurm.conf belongs to another SLURM installation; not touching it"
            exit 4
        fi
    fi
fi
mkdir -p /etc/slurm
ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
export MYSQL_UNIX_PORT="$DB_SOCKET"
echo "export SLURM_CONF=$SLURM_CONF" >"$D/env"

# ---- slurmdbd, then the accounts, then slurmctld and slurmd
slurmdbd
wait_for 30 sacctmgr -i -n list cluster || { log "slurmdbd did not start: $(tail -3 "$D/log/slurmdbd.log")"; exit 1; }
log "slurmdbd started"
sacctmgr -i add cluster diffxai >/dev/null
sacctmgr -i add account "$ACCOUNT" Cluster=diffxai Description=tests Organization=diffxai >/dev/null
sacctmgr -i add user "$(id -un)" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null

slurmctld
slurmd
for _ in $(seq 1 150); do
    state=$(sinfo -h -N -o "%t" 2>/dev/null | head -1 || true)
    [ "$state" = "idle" ] && break
    sleep 0.2
done
if [ "$state" != "idle" ]; then
    log "node not idle (state '$state'):"
    tail -5 "$D/log/slurmctld.log" "$D/log/slurmd.log" >&2
    exit 1
fi
log "cluster up: node $HOST idle, partition $PARTITION, account $ACCOUNT, 1 GPU GRES"
echo "export SLURM_CONF=$SLURM_CONF"
