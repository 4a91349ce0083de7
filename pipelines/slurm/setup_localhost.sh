#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, to run the workflow's slurm profile against
# (CI: .ci/run; tests/slurm/). Debian 12 (slurm-wlm 22.05), run as root; no systemd needed.
#
#   pipelines/slurm/setup_localhost.sh               # partitions cpu and gpu, one fake GPU
#   FAKE_GPUS=0 pipelines/slurm/setup_localhost.sh   # the same node without a GPU
#   pipelines/slurm/stop_localhost.sh                # stop every daemon this script started
#
# What it does, each step skipped when already done (so it can be rerun at any time):
#   1. installs munge, slurmctld, slurmd, slurm-client, slurmdbd and mariadb-server (apt);
#   2. starts munged with the package's key (/etc/munge/munge.key, made if missing);
#   3. starts MariaDB and makes the accounting database and its user for slurmdbd;
#   4. writes slurmdbd.conf, slurm.conf and gres.conf: one node with this machine's CPUs
#      (nproc) and memory (/proc/meminfo less a reserve for the system), partitions `cpu`
#      (default) and `gpu` over it, and FAKE_GPUS GPUs backed by /dev/null: jobs asking
#      --gpus=1 are scheduled as on a GPU node and run on the CPU (no CUDA device exists);
#   5. starts slurmdbd, registers the cluster, starts slurmctld and slurmd (restarting them
#      when a config file changed), and waits until the node is idle.
# Accounting goes through slurmdbd because snakemake-executor-plugin-slurm reads job states
# with `sacct`. On failure it prints the step, the daemons' log tails and the node's state.
set -euo pipefail

FAKE_GPUS="${FAKE_GPUS:-1}"
CLUSTER="${SLURM_CLUSTER:-weakstil}"
NODE="$(hostname -s)"
ETC=/etc/slurm
LOGS=/var/log/slurm
SPOOL=/var/lib/slurm
DB=slurm_acct_db
DB_USER=slurm
# Only reachable through the local socket; the password is a formality slurmdbd requires.
DB_PASS=weakstil-localhost
WAIT_S="${WAIT_S:-90}"

STEP="start"
step() { STEP="$*"; echo "[slurm-setup] $*"; }

diagnose() {
  local rc=$?
  echo "error: SLURM setup failed at step '$STEP' (exit $rc). Diagnostics follow; fix the cause and rerun $0." >&2
  for log in "$LOGS/slurmctld.log" "$LOGS/slurmd.log" "$LOGS/slurmdbd.log" /var/log/munge/munged.log \
             /var/log/mysql/mariadbd-localhost.log; do
    [ -s "$log" ] && { echo "--- last lines of $log" >&2; tail -n 15 "$log" >&2; }
  done
  if command -v sinfo >/dev/null 2>&1; then
    echo "--- sinfo -R (reasons of down/drained nodes)" >&2; timeout 10 sinfo -R >&2 || true
    echo "--- scontrol show node $NODE" >&2; timeout 10 scontrol show node "$NODE" >&2 || true
  fi
  echo "--- running daemons" >&2
  ps -eo pid,user,args | grep -E '[m]unged|[m]ariadbd|[s]lurmdbd|[s]lurmctld|[s]lurmd' >&2 || true
  exit "$rc"
}
trap diagnose ERR

[ "$(id -u)" -eq 0 ] || { echo "error: $0 must run as root (it installs packages and starts daemons). Fix: sudo $0" >&2; exit 2; }
[[ "$FAKE_GPUS" =~ ^[0-9]+$ ]] || { echo "error: FAKE_GPUS='$FAKE_GPUS' is not a count. Fix: FAKE_GPUS=0 or 1" >&2; exit 2; }

# pid of a running daemon from its pid file, or nothing
running() { local pid; pid="$(cat "$1" 2>/dev/null || true)"; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"; }
stop_pidfile() {  # stop_pidfile FILE NAME: TERM, then wait up to 20 s for it to exit
  local pid; pid="$(running "$1" || true)"
  [ -z "$pid" ] && return 0
  kill "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  echo "error: $2 (pid $pid) did not stop within 20 s" >&2; return 1
}
wait_for() {  # wait_for SECONDS WHAT COMMAND...: rerun COMMAND until it succeeds
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  STEP="$STEP: $what not ready after ${seconds} s"; return 1
}
# start a daemon detached from this shell (its own session, no inherited stdout: a caller
# capturing our output must not wait for it)
detach() { setsid "$@" </dev/null >>"$LOGS/daemons.out" 2>&1 & }

# --- 1. packages -------------------------------------------------------------------------
step "packages"
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[slurm-setup] apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # the packages' own scripts must not start daemons (without a config, or twice): this
  # script starts them itself; a policy-rc.d saying 101 stops invoke-rc.d (containers have one)
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; own_policy=1
  fi
  apt-get update -qq
  apt_rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || apt_rc=$?
  [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
  [ "$apt_rc" -eq 0 ] || { STEP="packages: apt-get install failed (exit $apt_rc)"; false; }
fi
mkdir -p "$LOGS" "$SPOOL/slurmctld" "$SPOOL/slurmd" /run/munge /var/log/munge /run/mysqld /var/log/mysql
chown slurm:slurm "$LOGS" "$SPOOL/slurmctld"
chown munge:munge /run/munge /var/log/munge
chown mysql:mysql /run/mysqld /var/log/mysql
# munged, mariadbd and the SLURM daemons run as their own users and open /dev/null; a
# `cp -p FILE /dev/null` run as root leaves it mode 0644, and munged then stops with
# "Failed to open /dev/null: Permission denied" (seen on a shared CI machine): put it right
if [ -c /dev/null ] && [ "$(stat -c %a /dev/null)" != 666 ]; then
  echo "[slurm-setup] /dev/null was mode $(stat -c %a /dev/null); restoring 0666" >&2
  chmod 0666 /dev/null
fi

# --- 2. munge ----------------------------------------------------------------------------
step "munge"
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
if [ -z "$(running /run/munge/munged.pid || true)" ]; then
  detach runuser -u munge -- /usr/sbin/munged --pid-file /run/munge/munged.pid
fi
wait_for 20 "munged" bash -c 'munge -n | unmunge'

# --- 3. MariaDB and the accounting database ---------------------------------------------
step "mariadb"
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
fi
if ! mariadb-admin ping >/dev/null 2>&1; then
  detach /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
    --log-error=/var/log/mysql/mariadbd-localhost.log
fi
wait_for 60 "mariadbd" mariadb-admin ping
mariadb -u root <<SQL
CREATE DATABASE IF NOT EXISTS $DB;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB.* TO '$DB_USER'@'localhost';
SQL

# --- 4. configuration --------------------------------------------------------------------
step "configuration"
CPUS="$(nproc)"
MEM_MB=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
# what slurmd leaves to the system: 10 %, at least 1 GB (a node whose RealMemory exceeds
# what slurmd finds is drained as "Low RealMemory")
REAL_MEM=$(( MEM_MB - (MEM_MB / 10 > 1024 ? MEM_MB / 10 : 1024) ))
# Without GPUs the cluster knows no GPU resource at all, as on a CPU-only site
GRES_NODE="" GRES_TYPES="" GRES_TRES=""
if [ "$FAKE_GPUS" -gt 0 ]; then
  GRES_NODE="Gres=gpu:$FAKE_GPUS" GRES_TYPES="GresTypes=gpu" GRES_TRES="AccountingStorageTRES=gres/gpu"
fi

changed=()
install_conf() {  # install_conf NAME MODE OWNER < CONTENT: rewrite only a changed file
  local tmp; tmp="$(mktemp)"; cat >"$tmp"
  if ! cmp -s "$tmp" "$ETC/$1"; then
    install -m "$2" -o "$3" -g "$3" "$tmp" "$ETC/$1"; changed+=("$1")
  fi
  rm -f "$tmp"
}

install_conf slurmdbd.conf 600 slurm <<EOF
# written by $0
DbdHost=localhost
SlurmUser=slurm
AuthType=auth/munge
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB
PidFile=/run/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
EOF

install_conf slurm.conf 644 root <<EOF
# written by $0: one node ($CPUS CPUs, $REAL_MEM of $MEM_MB MB, $FAKE_GPUS fake GPU(s))
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=$SPOOL/slurmd
StateSaveLocation=$SPOOL/slurmctld
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SwitchType=switch/none
SchedulerType=sched/backfill
# CPUs and memory are consumable: a job asking more than the node has is refused or pends
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
InactiveLimit=0
KillWait=10
MinJobAge=300
SlurmdTimeout=120
# accounting through slurmdbd: sacct (job states for Snakemake) works
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# sacct shows the rule of each Snakemake job (its --comment)
AccountingStoreFlags=job_comment
$GRES_TRES
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
$GRES_TYPES
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MEM $GRES_NODE State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE Default=NO MaxTime=INFINITE State=UP
EOF

# A GPU without a device file makes the node INVAL; /dev/null stands in for one.
install_conf gres.conf 644 root < <(
  echo "# written by $0"
  for _ in $(seq "$FAKE_GPUS"); do echo "NodeName=$NODE Name=gpu File=/dev/null"; done
)
[ "${#changed[@]}" -gt 0 ] && echo "[slurm-setup] changed: ${changed[*]}"
is_changed() { [[ " ${changed[*]} " == *" $1 "* ]]; }

# --- 5. daemons --------------------------------------------------------------------------
step "slurmdbd"
is_changed slurmdbd.conf && stop_pidfile /run/slurmdbd.pid slurmdbd
[ -n "$(running /run/slurmdbd.pid || true)" ] || detach /usr/sbin/slurmdbd
wait_for 60 "slurmdbd" sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
  sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi

step "slurmctld and slurmd"
if is_changed slurm.conf || is_changed gres.conf; then
  stop_pidfile /run/slurmd.pid slurmd
  stop_pidfile /run/slurmctld.pid slurmctld
fi
[ -n "$(running /run/slurmctld.pid || true)" ] || detach /usr/sbin/slurmctld
wait_for 60 "slurmctld" scontrol ping
[ -n "$(running /run/slurmd.pid || true)" ] || detach /usr/sbin/slurmd

step "node $NODE idle"
node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n1; }
for _ in $(seq $((WAIT_S * 2))); do
  state="$(node_state)"
  case "$state" in
    idle|mixed|allocated|completing) break ;;
    # left drained or down by an earlier configuration: the new one is in place, resume it
    drained|draining|down|"down*"|drained*|inval)
      scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
state="$(node_state)"
case "$state" in idle|mixed|allocated|completing) ;; *) STEP="node $NODE is '$state', not idle after $WAIT_S s"; false ;; esac

trap - ERR
echo "[slurm-setup] ready: cluster $CLUSTER, node $NODE ($CPUS CPUs, ${REAL_MEM} MB, $FAKE_GPUS fake GPU(s)), partitions:"
sinfo -o "  %P %D %T cpus=%c mem=%m gres=%G"
