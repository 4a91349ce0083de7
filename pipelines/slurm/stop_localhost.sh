#!/usr/bin/env bash
# Stop the single-node SLURM of setup_localhost.sh: slurmd, slurmctld, slurmdbd, MariaDB and
# munged, each by its pid file (nothing else is touched; configs, accounting and packages stay,
# so setup_localhost.sh brings it back in seconds). Queued or running jobs are cancelled first.
set -uo pipefail
[ "$(id -u)" -eq 0 ] || { echo "error: $0 must run as root. Fix: sudo $0" >&2; exit 2; }

stop() {  # stop PIDFILE NAME
  local pid; pid="$(cat "$1" 2>/dev/null || true)"
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$1"; echo "[slurm-stop] $2 not running"; return 0
  fi
  kill "$pid"
  for _ in $(seq 150); do
    # a pid file left behind would make the packages' scripts think the daemon still runs
    kill -0 "$pid" 2>/dev/null || { rm -f "$1"; echo "[slurm-stop] $2 stopped"; return 0; }
    sleep 0.2
  done
  echo "error: $2 (pid $pid) did not stop within 30 s. Fix: kill $pid" >&2
  return 1
}

rc=0
if command -v scancel >/dev/null 2>&1 && timeout 5 scontrol ping >/dev/null 2>&1; then
  timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
fi
stop /run/slurmd.pid slurmd || rc=1
stop /run/slurmctld.pid slurmctld || rc=1
stop /run/slurmdbd.pid slurmdbd || rc=1
stop /run/mysqld/mysqld.pid mariadbd || rc=1
stop /run/munge/munged.pid munged || rc=1
exit "$rc"
