#!/usr/bin/env bash
# `sluice demo` on a small pack: it streams and reports overlap, and leaves nothing in its
# directory unless --keep (then the next run reuses the pack, and removes it without --keep).
set -u
sluice=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; cat "$work/err" 2>/dev/null; exit 1; }
demo() { "$sluice" demo --size 64MiB --extent 8MiB --dir "$work/cache" "$@" >"$work/out" 2>"$work/err"; }
demo || fail "demo exited $?"
grep -q "overlap" "$work/out" || fail "no overlap line: $(cat "$work/out")"
grep -q "removed the demo pack" "$work/err" || fail "did not say it removed the pack"
[ -z "$(ls -A "$work/cache")" ] || fail "left behind: $(ls -A "$work/cache")"
demo --keep || fail "demo --keep exited $?"
ls "$work/cache"/*.sluice >/dev/null 2>&1 || fail "--keep removed the pack"
grep -q "stays at" "$work/err" || fail "--keep did not say where the pack stays"
demo || fail "second demo exited $?"
grep -q "reusing demo pack" "$work/err" || fail "the kept pack was not reused"
[ -z "$(ls -A "$work/cache")" ] || fail "left behind after the second run: $(ls -A "$work/cache")"
echo "demo: streams, removes its pack, --keep keeps it for the next run: OK"
