#!/usr/bin/env bash
# memcap.sh: run a command under a memory limit, in a cgroup of its own.
#
# Usage: tools/memcap.sh [--report FILE.json] [--drop-caches] LIMIT -- COMMAND [ARGS...]
#
# Holds any program (sluice, llama.cpp, a Python script) below a chosen amount of memory, so
# tests and benchmarks can run a model bigger than the memory it is given. Works with cgroup v2
# or cgroup v1, whichever has the memory controller on this machine. Needs root.
#
#   LIMIT               bytes, with an optional binary suffix: 1073741824, 512M, 4G, 4GiB, 1.5G
#                       (K/M/G/T, optionally followed by "i" and/or "B"; all powers of 1024).
#   --report FILE.json  also write {limit_bytes, peak_bytes, oom_kills, exit_status, seconds,
#                       cgroup_version, cgroup_path} to FILE.json.
#   --drop-caches       `sync; echo 3 > /proc/sys/vm/drop_caches` before running (a cold page
#                       cache; note this empties the cache for the whole machine).
#   -h, --help          show this text.
#
# What it does: creates a fresh cgroup (v2: /sys/fs/cgroup/sluice-memcap-PID, enabling +memory
# in the root's cgroup.subtree_control if needed; v1: a child sluice-memcap-PID of the caller's
# memory cgroup, normally /sys/fs/cgroup/memory/sluice-memcap-PID), sets the limit (memory.max /
# memory.limit_in_bytes), forbids swap for it (memory.swap.max=0 / memory.memsw.limit_in_bytes
# where the kernel accounts swap), runs COMMAND as a child that moves itself into the cgroup
# before exec (memcap itself stays where it was), waits for it, reads the peak usage
# (memory.peak, else memory.current polled / memory.max_usage_in_bytes) and the OOM kill count
# (memory.events oom_kill / memory.oom_control oom_kill), kills anything the command left
# running in the cgroup, and removes the cgroup.
#
# Page cache counts: file-backed pages the command reads (including mmap'ed model weights) are
# charged to the cgroup and count toward LIMIT, but they are reclaimable. Under a cap smaller
# than the file, the kernel evicts clean file pages instead of OOM-killing, so an mmap reader
# re-reads from disk what it touched before: exactly the out-of-core behaviour to measure.
# Anonymous memory (malloc, heap, stacks) cannot be evicted without swap, so a program whose
# anonymous memory exceeds LIMIT is OOM-killed.
#
# Output: one line on stderr,
#   memcap: limit X, peak Y (Z% of limit), oom_kills N, exit S, W s
#
# Exit status: COMMAND's. A command killed by a signal gives 128+signal, so an OOM-killed
# command gives 137 (SIGKILL). 126/127: COMMAND could not be run / was not found. memcap's own
# failures: 2 for usage errors (bad LIMIT, missing --), 125 for setup errors (not root, no
# memory controller, cgroup not writable).
#
# Example: tools/memcap.sh --report cap.json 2G -- build/tools/sluice run --model big.gguf -n 32

set -uo pipefail

prog=memcap

usage() {
  sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
}
die_usage() { echo "$prog: error: $*" >&2; echo "Try '$0 --help'." >&2; exit 2; }
die() { echo "$prog: error: $*" >&2; exit 125; }
warn() { echo "$prog: warning: $*" >&2; }

# ---- arguments -------------------------------------------------------------------------------
report=""
drop_caches=0
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --report) (($# >= 2)) || die_usage "--report needs a FILE"; report=$2; shift 2 ;;
    --report=*) report=${1#--report=}; shift ;;
    --drop-caches) drop_caches=1; shift ;;
    --) die_usage "missing LIMIT before --" ;;
    -[0-9]*) break ;;  # a negative LIMIT: rejected below as a bad LIMIT
    -*) die_usage "unknown option '$1'" ;;
    *) break ;;
  esac
done
(($# >= 1)) || die_usage "missing LIMIT (usage: $0 [--report FILE.json] [--drop-caches] LIMIT -- COMMAND [ARGS...])"
limit_arg=$1; shift
if (($# == 0)) || [[ $1 != -- ]]; then
  die_usage "missing '--' after LIMIT (usage: $0 [options] LIMIT -- COMMAND [ARGS...])"
fi
shift
(($# >= 1)) || die_usage "missing COMMAND after --"

# parse_size TEXT -> prints bytes, or fails.
parse_size() {
  local s=$1 int frac unit mult
  [[ $s =~ ^([0-9]+)(\.([0-9]{1,3}))?[[:space:]]*([KkMmGgTt]?)(i?)([Bb]?)$ ]] || return 1
  int=${BASH_REMATCH[1]} frac=${BASH_REMATCH[3]} unit=${BASH_REMATCH[4]}
  case "${unit,,}" in
    "") mult=1 ;; k) mult=1024 ;; m) mult=$((1024 ** 2)) ;; g) mult=$((1024 ** 3)) ;; t) mult=$((1024 ** 4)) ;;
  esac
  [[ -z $unit && -n ${BASH_REMATCH[5]} ]] && return 1  # "5i" / "5iB"
  [[ -n $frac && $mult == 1 ]] && return 1              # fractional bytes
  ((${#int} <= 15)) || return 1                         # keep the arithmetic in 64 bits
  int=$((10#$int))
  local bytes=$((int * mult))
  if [[ -n $frac ]]; then
    bytes=$((bytes + 10#$frac * mult / (10 ** ${#frac})))
  fi
  ((bytes > 0)) || return 1
  echo "$bytes"
}
limit=$(parse_size "$limit_arg") ||
  die_usage "bad LIMIT '$limit_arg': expected a positive size like 1073741824, 512M, 4G or 4GiB"
((limit >= 4 * 1024 * 1024)) || die_usage "LIMIT '$limit_arg' is below 4 MiB; no program can start under that"

# ---- environment -----------------------------------------------------------------------------
((EUID == 0)) || die "must run as root (creating cgroups and setting memory limits needs it); try: sudo $0 ..."

# Find the memory controller: a cgroup2 mount whose root lists "memory" in cgroup.controllers,
# else a cgroup v1 mount with the memory option.
cg_version="" cg_mnt="" cg_mnt_root=""
while read -r _ _ _ mroot mpoint _ rest; do
  rest=" $rest"
  fstype=${rest#* - }; fstype=${fstype%% *}
  opts=${rest##* }
  mpoint=${mpoint//\\040/ }
  case "$fstype" in
    cgroup2)
      if [[ -z $cg_version || $cg_version == 1 ]] && [[ -r $mpoint/cgroup.controllers ]] &&
         [[ " $(<"$mpoint/cgroup.controllers") " == *" memory "* ]]; then
        cg_version=2 cg_mnt=$mpoint cg_mnt_root=$mroot
      fi ;;
    cgroup)
      if [[ -z $cg_version ]] && [[ ,$opts, == *,memory,* ]]; then
        cg_version=1 cg_mnt=$mpoint cg_mnt_root=$mroot
      fi ;;
  esac
done </proc/self/mountinfo
[[ -n $cg_version ]] || die "no cgroup memory controller found (no cgroup2 mount with 'memory' in cgroup.controllers, no cgroup v1 'memory' mount); check /proc/self/mountinfo and /sys/fs/cgroup"

if [[ $cg_version == 2 ]]; then
  # v2: only leaves may hold processes (the root excepted), so the new group hangs off the root.
  parent=$cg_mnt
  if [[ " $(<"$parent/cgroup.subtree_control") " != *" memory "* ]]; then
    echo +memory >"$parent/cgroup.subtree_control" 2>/dev/null ||
      die "cannot enable the memory controller in $parent/cgroup.subtree_control (is /sys/fs/cgroup read-only, or is this a container whose cgroup root holds processes?)"
  fi
else
  # v1: a child of the caller's own memory cgroup, so limits the caller is under still apply.
  self_path=""
  while IFS=: read -r _ ctrls path; do
    [[ ,$ctrls, == *,memory,* ]] && { self_path=$path; break; }
  done </proc/self/cgroup
  if [[ -n $cg_mnt_root && $cg_mnt_root != / && $self_path == "$cg_mnt_root"* ]]; then
    self_path=${self_path#"$cg_mnt_root"}
  fi
  parent=$cg_mnt${self_path%/}
  [[ -d $parent ]] || parent=$cg_mnt
fi
[[ -w $parent ]] || die "cgroup directory $parent is not writable (read-only /sys/fs/cgroup?)"

if [[ -n $report ]]; then
  report_dir=$(dirname -- "$report")
  [[ -d $report_dir && -w $report_dir ]] || die_usage "--report: directory '$report_dir' does not exist or is not writable"
fi
if ((drop_caches)); then
  [[ -w /proc/sys/vm/drop_caches ]] || die "--drop-caches: /proc/sys/vm/drop_caches is not writable (read-only /proc/sys in a container?)"
fi

# ---- the cgroup ------------------------------------------------------------------------------
cg=$parent/sluice-memcap-$$
[[ -e $cg ]] && cg=$parent/sluice-memcap-$$-$RANDOM
mkdir "$cg" 2>/dev/null || die "cannot create cgroup $cg"

cmd_pid=""
cleaned=0
# Kill whatever is left in the cgroup, then remove it.
cleanup() {
  ((cleaned)) && return
  cleaned=1
  [[ -d $cg ]] || return
  local i pid
  for ((i = 0; i < 100; i++)); do
    local procs=()
    mapfile -t procs <"$cg/cgroup.procs" 2>/dev/null
    ((${#procs[@]} == 0)) && break
    if [[ $cg_version == 2 && -w $cg/cgroup.kill ]]; then
      echo 1 >"$cg/cgroup.kill" 2>/dev/null
    else
      for pid in "${procs[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    fi
    sleep 0.05
  done
  for ((i = 0; i < 40; i++)); do
    rmdir "$cg" 2>/dev/null && return
    sleep 0.05
  done
  warn "could not remove cgroup $cg (remove it with: rmdir $cg)"
}
trap cleanup EXIT
# Signals sent to memcap go on to the command (memcap then reports and cleans up as usual).
# shellcheck disable=SC2317  # invoked from the traps
forward() { [[ -n $cmd_pid ]] && kill -s "$1" "$cmd_pid" 2>/dev/null; }
# shellcheck disable=SC2064  # $sig expands now, on purpose
for sig in INT TERM HUP QUIT; do trap "forward $sig" "$sig"; done

if [[ $cg_version == 2 ]]; then
  echo "$limit" >"$cg/memory.max" || die "cannot set $cg/memory.max to $limit"
  if [[ -e $cg/memory.swap.max ]]; then
    echo 0 >"$cg/memory.swap.max" || warn "cannot set $cg/memory.swap.max to 0"
  fi
  limit_file=$cg/memory.max
else
  echo "$limit" >"$cg/memory.limit_in_bytes" || die "cannot set $cg/memory.limit_in_bytes to $limit"
  if [[ -e $cg/memory.memsw.limit_in_bytes ]]; then
    # memory+swap limit equal to the memory limit: no swap at all.
    echo "$limit" >"$cg/memory.memsw.limit_in_bytes" || warn "cannot set $cg/memory.memsw.limit_in_bytes"
  elif [[ -e $cg/memory.swappiness ]]; then
    echo 0 >"$cg/memory.swappiness" 2>/dev/null || true
  fi
  limit_file=$cg/memory.limit_in_bytes
fi
limit_eff=$(<"$limit_file")   # the kernel rounds down to a page
[[ $limit_eff =~ ^[0-9]+$ ]] && limit=$limit_eff

if ((drop_caches)); then
  sync
  echo 3 >/proc/sys/vm/drop_caches || die "--drop-caches: writing /proc/sys/vm/drop_caches failed"
fi

# ---- run -------------------------------------------------------------------------------------
peak_file=""
if [[ $cg_version == 2 ]]; then
  [[ -r $cg/memory.peak ]] && peak_file=$cg/memory.peak
else
  peak_file=$cg/memory.max_usage_in_bytes
fi

t0=${EPOCHREALTIME/[.,]/}
(
  trap - INT TERM HUP QUIT
  echo "$BASHPID" >"$cg/cgroup.procs" 2>/dev/null || { echo "$prog: error: cannot move into $cg" >&2; exit 125; }
  exec "$@"
) &
cmd_pid=$!

polled_peak=0
{  # stderr off: bash's own "Killed" job notice would duplicate the summary line
if [[ -z $peak_file ]]; then
  # cgroup v2 without memory.peak (kernels before 5.19): sample memory.current until the
  # command exits (a lower bound on the true peak).
  while :; do
    cur=0
    read -r cur <"$cg/memory.current"
    ((cur > polled_peak)) && polled_peak=$cur
    line=""
    read -r line <"/proc/$cmd_pid/stat" || break  # gone: bash reaped it already
    state=${line##*) }; state=${state%% *}
    [[ $state == Z || $state == X ]] && break
    sleep 0.05
  done
fi

# wait returns early (status > 128) when a trapped signal arrives; wait again until reaped.
while :; do
  wait "$cmd_pid"; status=$?
  kill -0 "$cmd_pid" || break
done
} 2>/dev/null
t1=${EPOCHREALTIME/[.,]/}
cmd_pid=""

# ---- results ---------------------------------------------------------------------------------
if [[ -n $peak_file ]]; then
  peak=$(<"$peak_file")
else
  peak=$polled_peak
fi
[[ $peak =~ ^[0-9]+$ ]] || peak=0

oom_kills=""
if [[ $cg_version == 2 ]]; then
  while read -r key val; do [[ $key == oom_kill ]] && oom_kills=$val; done <"$cg/memory.events"
else
  while read -r key val; do [[ $key == oom_kill ]] && oom_kills=$val; done <"$cg/memory.oom_control"
  if [[ -z $oom_kills ]]; then
    # Kernels before 4.13 do not count OOM kills: infer one from a SIGKILL after the limit was hit.
    failcnt=$(<"$cg/memory.failcnt")
    oom_kills=0
    ((status == 137 && failcnt > 0)) && oom_kills=1
  fi
fi
[[ $oom_kills =~ ^[0-9]+$ ]] || oom_kills=0

cleanup

elapsed_us=$((t1 - t0))
secs=$(printf '%d.%03d' $((elapsed_us / 1000000)) $((elapsed_us % 1000000 / 1000)))
secs_short=$(printf '%d.%02d' $((elapsed_us / 1000000)) $((elapsed_us % 1000000 / 10000)))

human() {
  local n=$1 unit=1 name=B
  if ((n >= 1024 ** 4)); then unit=$((1024 ** 4)) name=TiB
  elif ((n >= 1024 ** 3)); then unit=$((1024 ** 3)) name=GiB
  elif ((n >= 1024 ** 2)); then unit=$((1024 ** 2)) name=MiB
  elif ((n >= 1024)); then unit=1024 name=KiB
  fi
  if ((unit == 1)); then echo "$n B"; return; fi
  local tenths=$(((n * 10 + unit / 2) / unit))
  echo "$((tenths / 10)).$((tenths % 10)) $name"
}
permille=$(((peak * 1000 + limit / 2) / limit))
pct="$((permille / 10)).$((permille % 10))"

echo "$prog: limit $(human "$limit"), peak $(human "$peak") ($pct% of limit), oom_kills $oom_kills, exit $status, $secs_short s" >&2

if [[ -n $report ]]; then
  cg_json=${cg//\\/\\\\}; cg_json=${cg_json//\"/\\\"}
  printf '{"limit_bytes": %d, "peak_bytes": %d, "oom_kills": %d, "exit_status": %d, "seconds": %s, "cgroup_version": %d, "cgroup_path": "%s"}\n' \
    "$limit" "$peak" "$oom_kills" "$status" "$secs" "$cg_version" "$cg_json" >"$report" ||
    warn "cannot write report $report"
fi

exit "$status"
