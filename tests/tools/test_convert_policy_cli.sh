#!/usr/bin/env bash
# `sluice convert --compress auto` prints its per-type decision table, and follows given numbers:
# a fast given disk stores every frame raw, an absurdly slow one with no floor keeps zstd where it
# shrinks anything. Timing-free: disk and decode speeds are given, so only sizes decide.
# Usage: test_convert_policy_cli.sh SLUICE. Exit 77: skipped, with a message.
set -uo pipefail
sluice="$1"
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d -p "${CONVERT_TEST_DIR:-$PWD}" convert-policy-XXXXXX) || fail "mktemp"
trap 'rm -rf "$work"' EXIT

"$sluice" synth "$work/m.gguf" > /dev/null || fail "synth"
out=$("$sluice" convert "$work/m.gguf" "$work/fast.sluice" --disk-gbps 1000 --decode-gbps 1 --decode-cores 1 2>/dev/null) \
  || fail "convert (fast disk)"
echo "$out"
grep -q "compression policy (per tensor type): disk 1000 GB/s (given), 1 decode core" <<<"$out" || fail "no policy header"
grep -Eq "^  type +raw MiB +ratio +decode GB/s +saved ms +decode ms +choice" <<<"$out" || fail "no table header"
grep -Eq "^  Q4_0 .* raw$" <<<"$out" || fail "no raw Q4_0 row at 1000 GB/s"
grep -q "(.* raw frames, 0 zstd frames)" <<<"$out" || fail "zstd frames at 1000 GB/s"
"$sluice" inspect "$work/fast.sluice" | grep -q "compression policy" || fail "inspect does not show the policy"

out=$("$sluice" convert "$work/m.gguf" "$work/slow.sluice" --disk-gbps 0.000001 --decode-gbps 1 --min-saving 0 --frame 4KiB 2>/dev/null) \
  || fail "convert (slow disk)"
echo "$out"
grep -Eq "^  F32 .* zstd$" <<<"$out" || fail "F32 (norms, compressible) not zstd at 1 kB/s"
grep -Eq "^  Q4_0 .* raw$" <<<"$out" || fail "Q4_0 (random, incompressible) not raw"
# 4 KiB frames give the norms frames of their own: the F32 choice shows in the file.
grep -Eq "raw frames, [1-9][0-9]* zstd frames\)" <<<"$out" || fail "no zstd frame for the F32 norms"

# --compress zstd and none keep their meaning and print no policy.
out=$("$sluice" convert "$work/m.gguf" "$work/none.sluice" --compress none 2>/dev/null) || fail "convert none"
grep -q "compression policy" <<<"$out" && fail "--compress none printed a policy"
grep -q "(.* raw frames, 0 zstd frames)" <<<"$out" || fail "--compress none wrote zstd frames"
"$sluice" convert "$work/m.gguf" "$work/x.sluice" --disk-gbps nan 2>/dev/null && fail "--disk-gbps nan accepted"
echo "ok"
