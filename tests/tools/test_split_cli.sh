#!/usr/bin/env bash
# `sluice split` end to end on the tiny real model (stories260K, 1.1 MB). One part per ctest entry:
#   basic      shards within --max-size, reported; --dry-run writes nothing; a second run refuses
#              to overwrite and changes nothing, --force rewrites; re-splitting the shards gives
#              the same shards; `convert` of the shards makes the same pack byte for byte as of the
#              unsplit file, and `run` on it the same greedy text
#   full-disk  split into a 512 KiB tmpfs fails part-way (shard 4 of 7), naming the shard and ENOSPC;
#              no shard and no temp file is left (needs root to mount; skips otherwise)
#   kill       split killed by SIGXFSZ (ulimit -f) in the middle of a shard leaves no shard; the
#              next run replaces its temp files; with SIGXFSZ ignored the same limit is a clean
#              error (EFBIG) that leaves nothing at all
#   memcap     split of a 914 MB model (tensors up to 128 MiB) under tools/memcap.sh 64M (above the binary's own start-up peak) succeeds,
#              with progress on stderr, and writes the same shards as an uncapped split; prints the
#              peak (needs root and a memory cgroup; skips otherwise)
# Usage: test_split_cli.sh SLUICE MODELS_DIR PART [MEMCAP]. Exit 77: skipped, with a message.
set -uo pipefail
sluice="$1"; models="$2"; part="$3"; memcap="${4:-}"
model="$models/stories260K.gguf"
# Both converts decide compression from the same given speeds (a measured policy would differ
# between two runs, and with it the packs).
policy="--disk-gbps 0.01 --decode-gbps 1 --decode-cores 1"
skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
[[ -f "$model" ]] || skip "$model not found (../shared/models)"

work=$(mktemp -d -p "${SPLIT_TEST_DIR:-$PWD}" split-cli-XXXXXX) || fail "mktemp"
mounted=""
cleanup() {
  [[ -n "$mounted" ]] && umount "$mounted" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
no_shards() {  # $1: directory, $2: what happened
  local left
  left=$(find "$1" -name '*-of-*.gguf*' | sort)
  [[ -z "$left" ]] || fail "$2 left: $left"
}

case "$part" in
basic)
  out=$("$sluice" split --dry-run --max-size 300K "$model" "$work/st" 2>&1) || fail "dry run: $out"
  [[ "$out" == *"st-00001-of-00005.gguf"* ]] || fail "dry run output: $out"
  no_shards "$work" "--dry-run"
  out=$("$sluice" split --max-size 300K "$model" "$work/st" 2>&1) || fail "split exited $?: $out"
  echo "$out"
  [[ "$out" == *"-> 5 shard(s)"* ]] || fail "split output: $out"
  for i in 1 2 3 4 5; do
    f="$work/st-0000$i-of-00005.gguf"
    [[ -f "$f" ]] || fail "no $f"
    (( $(stat -c %s "$f") <= 300 * 1024 )) || fail "$f is $(stat -c %s "$f") bytes, over 300K"
  done
  [[ -z "$(find "$work" -name '*.tmp')" ]] || fail "temp files left: $(find "$work" -name '*.tmp')"
  sums=$(cd "$work" && sha256sum st-*.gguf)

  out=$("$sluice" split --max-size 300K "$model" "$work/st" 2>&1); rc=$?
  [[ $rc == 1 && "$out" == *"already exist"*"--force"* ]] || fail "second split: rc $rc: $out"
  [[ "$(cd "$work" && sha256sum st-*.gguf)" == "$sums" ]] || fail "the refused split changed the shards"
  "$sluice" split --force --max-size 300K "$model" "$work/st" > /dev/null 2>&1 || fail "split --force"
  [[ "$(cd "$work" && sha256sum st-*.gguf)" == "$sums" ]] || fail "split --force wrote different shards"

  # A shard bigger than --max-size is said so: the first holds the 512-token vocabulary.
  out=$("$sluice" split --max-size 20K "$model" "$work/tiny" 2>&1) || fail "split 20K: $out"
  [[ "$out" == *"note: "*"over --max-size"* ]] || fail "no note for an oversized shard: $out"

  # Re-split from the shards (given the third): the same 5 shards byte for byte.
  mkdir "$work/again"
  "$sluice" split --max-size 300K "$work/st-00003-of-00005.gguf" "$work/again/st" > /dev/null 2>&1 || fail "re-split"
  [[ "$(cd "$work/again" && sha256sum st-*.gguf)" == "$sums" ]] || fail "re-split shards differ"

  # convert of the shards: the pack of the unsplit file, byte for byte; the same greedy text.
  "$sluice" convert $policy "$work/st-00001-of-00005.gguf" "$work/shards.sluice" > /dev/null 2>&1 || fail "convert shards"
  "$sluice" convert $policy "$model" "$work/whole.sluice" > /dev/null 2>&1 || fail "convert whole"
  cmp "$work/shards.sluice" "$work/whole.sluice" || fail "the shards' pack differs from the unsplit file's"
  a=$("$sluice" run -m "$model" -p "Once upon a time" -n 48 --temp 0 2>/dev/null) || fail "run on the GGUF"
  b=$("$sluice" run -m "$work/shards.sluice" -p "Once upon a time" -n 48 --temp 0 2>/dev/null) || fail "run on the pack"
  [[ -n "$a" && "$a" == "$b" ]] || fail "greedy text differs: '$a' vs '$b'"
  echo "greedy: $b"
  echo "basic ok"
  ;;

full-disk)
  ((EUID == 0)) || skip "not root: cannot mount a tmpfs"
  disk="$work/disk"; mkdir "$disk"
  mount -t tmpfs -o size=512k tmpfs "$disk" 2> "$work/err" || skip "mount -t tmpfs failed: $(cat "$work/err")"
  mounted="$disk"
  "$sluice" split --max-size 200K "$model" "$disk/st" > /dev/null 2> "$work/err"; rc=$?
  [[ $rc == 1 ]] || fail "split into a full disk exited $rc: $(cat "$work/err")"
  grep -q "$disk/st-0000[0-9]-of-000[0-9][0-9].gguf" "$work/err" || fail "the error names no shard: $(cat "$work/err")"
  grep -q "No space left" "$work/err" || fail "the error does not say why: $(cat "$work/err")"
  no_shards "$disk" "a split into a full disk"
  echo "$(cat "$work/err")"
  echo "full-disk ok"
  ;;

kill)
  # 100 KiB per file: every shard of a 300K split is bigger, so the first write past it ends the run.
  ( ulimit -f 100; exec "$sluice" split --max-size 300K "$model" "$work/st" ) > /dev/null 2>&1; rc=$?
  ((rc == 128 + 25)) || fail "split under ulimit -f exited $rc, expected death by SIGXFSZ (153)"
  [[ -z "$(find "$work" -name '*-of-*.gguf')" ]] || fail "the killed split left shards: $(ls "$work")"
  [[ -n "$(find "$work" -name '*.tmp')" ]] || fail "the killed split left no temp file: did it write at all?"
  "$sluice" split --max-size 300K "$model" "$work/st" > /dev/null 2>&1 || fail "split after the kill"
  [[ -z "$(find "$work" -name '*.tmp')" ]] || fail "temp files left after a complete split: $(ls "$work")"
  "$sluice" convert $policy "$work/st-00001-of-00005.gguf" "$work/shards.sluice" > /dev/null 2>&1 || fail "convert shards"
  "$sluice" convert $policy "$model" "$work/whole.sluice" > /dev/null 2>&1 || fail "convert whole"
  cmp -s "$work/shards.sluice" "$work/whole.sluice" || fail "shards written after a kill differ"
  # SIGXFSZ ignored: the write fails with EFBIG, an error naming the shard; nothing is left.
  mkdir "$work/efbig"
  ( trap '' XFSZ; ulimit -f 100; exec "$sluice" split --max-size 300K "$model" "$work/efbig/st" ) > /dev/null \
    2> "$work/err"; rc=$?
  [[ $rc == 1 ]] || fail "split with EFBIG exited $rc: $(cat "$work/err")"
  grep -q "$work/efbig/st-00001-of-00005.gguf" "$work/err" || fail "EFBIG error names no shard: $(cat "$work/err")"
  no_shards "$work/efbig" "a split failing with EFBIG"
  echo "kill ok"
  ;;

memcap)
  ((EUID == 0)) || skip "not root: memcap needs root to create a cgroup"
  avail_kb=$(df -Pk "$work" | awk 'NR == 2 { print $4 }')
  ((avail_kb > 3 * 1024 * 1024)) || skip "less than 3 GiB free under $work for a 914 MB model and two splits"
  "$sluice" synth "$work/big.gguf" --type F32 --embedding-type F32 --embd 2048 --ff 16384 --layers 2 \
    --vocab-from "$model" > /dev/null || fail "synth big.gguf"
  mkdir "$work/capped" "$work/free"
  # The cap is 64 MiB above what the binary itself takes to start: a sanitizer build's runtime
  # and its pages of a larger binary peak near 61 MiB for `--version` alone (6 MB in Release).
  "$memcap" --report "$work/base.json" 1G -- "$sluice" --version > /dev/null 2> "$work/err"
  rc=$?
  [[ $rc == 125 ]] && skip "memcap cannot set up a cgroup here: $(tail -1 "$work/err")"
  base=$(grep -o '"peak_bytes": [0-9]*' "$work/base.json" | grep -o '[0-9]*$')
  [[ -n "$base" ]] || fail "no baseline peak from memcap: $(cat "$work/base.json")"
  cap=$((64 * 1024 * 1024 + base))
  "$memcap" "$cap" -- "$sluice" split --max-size 300M "$work/big.gguf" "$work/capped/big" > /dev/null 2> "$work/err"
  rc=$?
  [[ $rc == 125 ]] && skip "memcap cannot set up a cgroup here: $(tail -1 "$work/err")"
  [[ $rc == 0 ]] || fail "split under a cap of 64 MiB + the binary's own $((base >> 20)) MiB: exit $rc: $(tail -2 "$work/err")"
  grep "^memcap:" "$work/err"
  tr '\r' '\n' < "$work/err" | grep -q "split: 872.0 MiB of 872.0 MiB (100%)" || fail "no progress on stderr: $(head -c 300 "$work/err")"
  "$sluice" split --max-size 300M "$work/big.gguf" "$work/free/big" > /dev/null 2>&1 || fail "uncapped split"
  for f in "$work"/free/big-*.gguf; do
    cmp -s "$f" "$work/capped/$(basename "$f")" || fail "capped shard $(basename "$f") differs from the uncapped one"
  done
  echo "shards: $(cd "$work/free" && stat -c '%n %s' big-*.gguf | tr '\n' ' ')"
  echo "memcap ok"
  ;;

*) fail "unknown part '$part'" ;;
esac
