#!/usr/bin/env bash
# Stop the daemons that tests/slurm/setup.sh started, by the PIDs it recorded.
#
#   tests/slurm/teardown.sh [STATE_DIR]      (default /tmp/diffxai-slurm)
#
# Order: slurmd, slurmctld, slurmdbd, mariadbd, munged. SIGTERM, then SIGKILL after 10 s.
set -uo pipefail

D=${1:-/tmp/diffxai-slurm}
[ -d "$D/pids" ] || exit 0

stop() {
    local pidfile="$D/pids/$1.pid" pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile" 2>/dev/null)
    [ -n "$pid" ] || return 0
    # Only signal the process if it is still the daemon we started.
    if [ -r "/proc/$pid/comm" ] && grep -q "$1" "/proc/$pid/comm"; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

for daemon in slurmd slurmctld slurmdbd mariadbd munged; do
    stop "$daemon"
done
# The symlink setup.sh made for clients inside jobs.
if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$D/etc/slurm.conf" ]; then
    rm -f /etc/slurm/slurm.conf
fi
exit 0
