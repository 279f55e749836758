#!/usr/bin/env bash
# Tests tools/memcap.sh: a command under a memory cap succeeds or is OOM-killed as it should,
# errors are clear, the cgroup is removed afterwards, and the --report JSON parses.
# Usage: test_memcap.sh PATH/TO/memcap.sh
# Exits 77 (ctest: skipped), printing "SKIPPED: reason", when not root or when no memory cgroup
# controller is usable. PYTHON (default python3) runs the allocating commands.
set -uo pipefail

memcap=${1:?usage: test_memcap.sh PATH/TO/memcap.sh}
py=${PYTHON:-python3}

skip() { echo "SKIPPED: $*"; exit 77; }
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

[[ -r $memcap ]] || { echo "FAIL: $memcap not found"; exit 1; }
command -v "$py" >/dev/null || skip "$py not found"
((EUID == 0)) || skip "not root (memcap needs root to create cgroups)"

# A usable memory controller: cgroup v2 with "memory" available at its root, or a v1 memory
# hierarchy, on a writable mount.
usable=""
while read -r _ _ _ _ mpoint _ rest; do
  rest=" $rest"; fstype=${rest#* - }; fstype=${fstype%% *}; opts=${rest##* }
  if [[ $fstype == cgroup2 && -r $mpoint/cgroup.controllers &&
        " $(<"$mpoint/cgroup.controllers") " == *" memory "* && -w $mpoint ]]; then
    usable="cgroup v2 at $mpoint"
  elif [[ $fstype == cgroup && ,$opts, == *,memory,* && -w $mpoint ]]; then
    usable="cgroup v1 at $mpoint"
  fi
done </proc/self/mountinfo
[[ -n $usable ]] || skip "no usable (mounted, writable) memory cgroup controller"
echo "memory controller: $usable"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# json FILE KEY -> prints the value (fails if the file does not parse or the key is missing).
json() { "$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
MiB=$((1024 * 1024))

# (1) 64 MiB touched under a 256M cap: succeeds, 64 MiB <= peak < 256 MiB.
"$memcap" --report "$tmp/ok.json" 256M -- "$py" -c 'x = b"x" * (64 << 20); print(len(x))' \
  >"$tmp/ok.out" 2>"$tmp/ok.err"
st=$?
cat "$tmp/ok.err"
peak=$(json "$tmp/ok.json" peak_bytes 2>/dev/null || echo -1)
if ((st == 0)) && [[ $(<"$tmp/ok.out") == $((64 * MiB)) ]] && ((peak >= 64 * MiB && peak < 256 * MiB)); then
  pass "64 MiB under 256M: exit 0, peak $peak"
else
  fail "64 MiB under 256M: exit $st, peak $peak (want 0 and 64 MiB <= peak < 256 MiB)"
fi
if grep -Eq '^memcap: limit 256\.0 MiB, peak [0-9.]+ MiB \([0-9.]+% of limit\), oom_kills 0, exit 0, [0-9.]+ s$' "$tmp/ok.err"; then
  pass "summary line"
else
  fail "summary line not in the documented form"
fi

# (2) 512 MiB under a 128M cap: OOM-killed, exit 137, oom_kills >= 1.
"$memcap" --report "$tmp/oom.json" 128M -- "$py" -c 'x = b"x" * (512 << 20)' 2>"$tmp/oom.err"
st=$?
cat "$tmp/oom.err"
kills=$(json "$tmp/oom.json" oom_kills 2>/dev/null || echo -1)
jst=$(json "$tmp/oom.json" exit_status 2>/dev/null || echo -1)
if ((st == 137 && jst == 137 && kills >= 1)); then
  pass "512 MiB under 128M: OOM-killed (exit 137, oom_kills $kills)"
else
  fail "512 MiB under 128M: exit $st (report $jst), oom_kills $kills (want 137 and >= 1)"
fi

# (3) clear errors: bad LIMIT, missing --, missing LIMIT.
for args in "12Q -- true" "-5M -- true" "0 -- true" "256M true" "256M"; do
  # shellcheck disable=SC2086
  "$memcap" $args >"$tmp/err.out" 2>"$tmp/err.err"
  st=$?
  if ((st == 2)) && grep -q '^memcap: error: ' "$tmp/err.err" && [[ ! -s $tmp/err.out ]]; then
    pass "'$args' -> exit 2: $(head -n1 "$tmp/err.err")"
  else
    fail "'$args' -> exit $st, stderr: $(cat "$tmp/err.err")"
  fi
done
[[ $("$memcap" 12Q -- true 2>&1) == *"bad LIMIT '12Q'"* ]] || fail "bad LIMIT message does not name the LIMIT"
[[ $("$memcap" -5M -- true 2>&1) == *"bad LIMIT '-5M'"* ]] || fail "negative LIMIT message unclear"
[[ $("$memcap" 256M true 2>&1) == *"missing '--'"* ]] || fail "missing -- message unclear"

# (4) the cgroup is gone afterwards (after success, after an OOM kill, and after a command that
# leaves a process behind); the command's exit status comes through.
"$memcap" --report "$tmp/bg.json" 64M -- sh -c 'sleep 60 & exit 3' 2>/dev/null
st=$?
if ((st == 3)); then pass "exit status passed through"; else fail "exit status: got $st, want 3"; fi
for r in ok oom bg; do
  cg=$(json "$tmp/$r.json" cgroup_path 2>/dev/null)
  if [[ -z $cg ]]; then
    fail "$r: no cgroup_path in report"
  elif [[ -e $cg ]]; then
    fail "$r: cgroup $cg still exists"
  else
    pass "$r: cgroup $cg removed"
  fi
done

# (5) the --report JSON parses and holds the documented fields with sensible values.
if "$py" - "$tmp/ok.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
for k in ("limit_bytes", "peak_bytes", "oom_kills", "exit_status", "seconds", "cgroup_version"):
    assert k in d, k
assert d["limit_bytes"] == 256 << 20, d
assert d["oom_kills"] == 0 and d["exit_status"] == 0, d
assert isinstance(d["seconds"], float) and 0 <= d["seconds"] < 20, d
assert d["cgroup_version"] in (1, 2), d
EOF
then
  pass "--report JSON: $(<"$tmp/ok.json")"
else
  fail "--report JSON does not parse or lacks fields: $(cat "$tmp/ok.json" 2>/dev/null)"
fi

if ((failures)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all memcap checks passed"
