#!/usr/bin/env bash
# `sluice convert` and `sluice synth` end to end: outputs are written atomically and in bounded
# memory. One part per ctest entry (so a part that cannot run here skips alone):
#   refuse      convert X X (same path, ./X, hard link, symlink) is refused and X stays byte-identical
#   kill        kill -9 mid-convert leaves nothing under the final name (and an older output there
#               untouched); the next convert replaces the stale temp file and verifies
#   full-disk   convert (and synth) into a 1 MiB tmpfs fail non-zero naming the output, leave an
#               existing output untouched and no temp file (needs root to mount; skips otherwise)
#   memcap      convert of a 914 MB model (every block extent ~436 MB) under tools/memcap.sh 256M
#               succeeds and equals an uncapped convert byte for byte; prints the peak (needs root
#               and a memory cgroup; skips otherwise)
#   synth-flags synth with bad numeric flags (--layers -1, 0, ...) is a CLI error that writes nothing
# Usage: test_convert_cli.sh SLUICE MODELS_DIR MEMCAP PART. Exit 77: skipped, with a message.
set -uo pipefail
sluice="$1"; models="$2"; memcap="$3"; part="$4"
vocab="$models/stories260K.gguf"
skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
[[ -f "$vocab" ]] || skip "$vocab not found (../shared/models): synth needs its vocabulary"

# Work next to the build (ctest's working directory), not in a tmpfs /tmp: a tmpfs file's pages
# are memory the cgroup charges and cannot drop, which would defeat the memcap part.
work=$(mktemp -d -p "${CONVERT_TEST_DIR:-$PWD}" convert-cli-XXXXXX) || fail "mktemp"
mounted=""
convert_pid=""
cleanup() {
  [[ -n "$convert_pid" ]] && kill -9 "$convert_pid" 2>/dev/null
  [[ -n "$mounted" ]] && umount "$mounted" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

synth_tiny() { "$sluice" synth "$1" --vocab-from "$vocab" > /dev/null || fail "synth $1"; }
no_file() { [[ ! -e "$1" && ! -L "$1" ]] || fail "$2: $1 exists ($(stat -c %s "$1" 2>/dev/null) bytes)"; }

case "$part" in
refuse)
  synth_tiny "$work/m.gguf"
  sha=$(sha256sum < "$work/m.gguf")
  ln "$work/m.gguf" "$work/hard.gguf"
  ln -s m.gguf "$work/soft.gguf"
  for out in "$work/m.gguf" "$work/./m.gguf" "$work/hard.gguf" "$work/soft.gguf"; do
    "$sluice" convert "$work/m.gguf" "$out" > /dev/null 2> "$work/err"
    rc=$?
    [[ $rc == 1 ]] || fail "convert m.gguf $out: exit $rc, expected 1: $(cat "$work/err")"
    grep -q "is the input" "$work/err" || fail "no clear refusal for $out: $(cat "$work/err")"
    [[ $(sha256sum < "$work/m.gguf") == "$sha" ]] || fail "the input changed after convert m.gguf $out"
    no_file "$out.tmp" "refused convert"
  done
  "$sluice" convert "$work/soft.gguf" "$work/m.gguf" > /dev/null 2>&1 && fail "convert soft.gguf m.gguf was accepted"
  [[ $(sha256sum < "$work/m.gguf") == "$sha" ]] || fail "the input changed after convert soft.gguf m.gguf"
  # The same refusal protects synth's vocabulary source.
  cp "$work/m.gguf" "$work/v.gguf"; vsha=$(sha256sum < "$work/v.gguf")
  "$sluice" synth "$work/v.gguf" --vocab-from "$work/v.gguf" > /dev/null 2> "$work/err" && fail "synth over its vocabulary source was accepted"
  grep -q "is the input" "$work/err" || fail "no clear refusal from synth: $(cat "$work/err")"
  [[ $(sha256sum < "$work/v.gguf") == "$vsha" ]] || fail "synth changed its vocabulary source"
  echo "refuse ok"
  ;;

kill)
  # ~130 MB of F32 converted at zstd level 19: tens of seconds of work, so the kill lands mid-run
  # (it is sent as soon as the temp file has data; nothing here waits on a clock).
  "$sluice" synth "$work/m.gguf" --type F32 --embedding-type F32 --embd 1024 --ff 4096 --layers 2 \
    --vocab-from "$vocab" > /dev/null || fail "synth"
  out="$work/m.sluice"
  kill_mid_convert() {
    "$sluice" convert --compress zstd:19 "$work/m.gguf" "$out" > /dev/null 2>&1 &
    convert_pid=$!
    for _ in $(seq 1 6000); do  # at most 10 minutes (ctest's TIMEOUT stops it sooner)
      [[ -s "$out.tmp" || -s "$out" && "$1" == fresh ]] && break
      kill -0 "$convert_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$convert_pid" 2>/dev/null || fail "convert finished before it could be killed"
    wait "$convert_pid" 2>/dev/null
    convert_pid=""
  }
  kill_mid_convert fresh
  no_file "$out" "after kill -9 of convert into a new name"
  [[ -s "$out.tmp" ]] || fail "the killed convert left no temp file: did it write at all?"
  # An older output under the final name survives a killed convert whole.
  synth_tiny "$work/old.gguf"
  "$sluice" convert "$work/old.gguf" "$out" > /dev/null 2>&1 || fail "convert old.gguf"
  old_sha=$(sha256sum < "$out")
  kill_mid_convert existing
  [[ $(sha256sum < "$out") == "$old_sha" ]] || fail "kill -9 of convert changed the existing $out"
  # The next run replaces the stale temp file instead of trusting it.
  "$sluice" convert "$work/m.gguf" "$out" > /dev/null 2>&1 || fail "convert after the kill"
  no_file "$out.tmp" "after a complete convert"
  "$sluice" inspect --verify "$out" > "$work/verify" 2>&1 || fail "inspect --verify: $(tail -3 "$work/verify")"
  grep -q "OK" "$work/verify" || fail "verify did not say OK: $(tail -3 "$work/verify")"
  echo "kill ok"
  ;;

full-disk)
  ((EUID == 0)) || skip "not root: cannot mount a 1 MiB tmpfs"
  synth_tiny "$work/m.gguf"  # ~2 MB: more than the tmpfs holds
  disk="$work/disk"; mkdir "$disk"
  mount -t tmpfs -o size=1m tmpfs "$disk" 2> "$work/err" || skip "mount -t tmpfs failed: $(cat "$work/err")"
  mounted="$disk"
  for name in new.sluice existing.sluice; do
    out="$disk/$name"
    [[ $name == existing.sluice ]] && printf 'an older pack\n' > "$out"
    before=$(sha256sum < "$out" 2>/dev/null)
    "$sluice" convert "$work/m.gguf" "$out" > /dev/null 2> "$work/err"
    rc=$?
    [[ $rc != 0 ]] || fail "convert into a full disk ($out) exited 0"
    grep -q "$out" "$work/err" || fail "the error does not name $out: $(cat "$work/err")"
    grep -q "No space left" "$work/err" || fail "the error does not say why: $(cat "$work/err")"
    if [[ $name == new.sluice ]]; then no_file "$out" "failed convert"; fi
    [[ $(sha256sum < "$out" 2>/dev/null) == "$before" ]] || fail "the failed convert changed $out"
    no_file "$out.tmp" "failed convert (temp file)"
  done
  "$sluice" synth "$disk/s.gguf" --vocab-from "$vocab" > /dev/null 2> "$work/err" && fail "synth into a full disk exited 0"
  grep -q "$disk/s.gguf" "$work/err" || fail "synth's error does not name the output: $(cat "$work/err")"
  no_file "$disk/s.gguf" "failed synth"; no_file "$disk/s.gguf.tmp" "failed synth (temp file)"
  echo "full-disk ok"
  ;;

memcap)
  ((EUID == 0)) || skip "not root: memcap needs root to create a cgroup"
  avail_kb=$(df -Pk "$work" | awk 'NR == 2 { print $4 }')
  ((avail_kb > 3 * 1024 * 1024)) || skip "less than 3 GiB free under $work for a 914 MB model and two packs"
  "$sluice" synth "$work/big.gguf" --type F32 --embedding-type F32 --embd 2048 --ff 16384 --layers 2 \
    --vocab-from "$vocab" > /dev/null || fail "synth big.gguf"
  # Given speeds make --compress auto's choice (and its record in the manifest) deterministic, so
  # the two packs can be compared byte for byte; a 10 MB/s disk keeps zstd wherever it saves 5%.
  policy=(--disk-gbps 0.01 --decode-gbps 1 --decode-cores 1)
  "$memcap" --report "$work/cap.json" 256M -- "$sluice" convert "${policy[@]}" "$work/big.gguf" "$work/capped.sluice" \
    > /dev/null 2> "$work/err"
  rc=$?
  [[ $rc == 125 ]] && skip "memcap cannot set up a cgroup here: $(tail -1 "$work/err")"
  [[ $rc == 0 ]] || fail "convert under a 256 MiB cap: exit $rc: $(tail -2 "$work/err")"
  grep "^memcap:" "$work/err"
  "$sluice" convert "${policy[@]}" "$work/big.gguf" "$work/free.sluice" > /dev/null 2>&1 || fail "uncapped convert"
  cmp -s "$work/capped.sluice" "$work/free.sluice" || fail "the capped pack differs from the uncapped one"
  echo "model $(stat -c %s "$work/big.gguf") bytes, pack $(stat -c %s "$work/capped.sluice") bytes, report: $(cat "$work/cap.json")"
  echo "memcap ok"
  ;;

synth-flags)
  bad=("--layers -1" "--layers 0" "--embd 0" "--embd -256" "--embd 100" "--heads 0" "--heads 3" "--kv-heads 0"
       "--kv-heads -1" "--kv-heads 3" "--ff 0" "--ff -768" "--layers 100000" "--arch gemma3 --head-dim -64"
       "--arch gemma3 --sliding-window -1" "--arch gemma3 --swa-pattern -2" "--embd 96 --type Q4_K")
  for flags in "${bad[@]}"; do
    # shellcheck disable=SC2086  # the flags are meant to split
    "$sluice" synth "$work/bad.gguf" $flags --vocab-from "$vocab" > /dev/null 2> "$work/err"
    rc=$?
    [[ $rc != 0 ]] || fail "synth $flags exited 0"
    flag=${flags##*--}; flag="--${flag%% *}"
    grep -q -- "${flag}" "$work/err" || fail "synth $flags: the error does not name $flag: $(cat "$work/err")"
    no_file "$work/bad.gguf" "synth $flags"; no_file "$work/bad.gguf.tmp" "synth $flags"
  done
  "$sluice" synth "$work/good.gguf" --layers 1 --vocab-from "$vocab" > /dev/null || fail "synth --layers 1 failed"
  echo "synth-flags ok"
  ;;

*) fail "unknown part '$part'" ;;
esac
