#!/usr/bin/env bash
# `sluice index` end to end on a synth model: writes MODEL.gguf.sluice-index atomically,
# `--verify` passes on the intact model, names shard, tensor and offset for a byte flipped with
# the mtime kept (bit rot), and refuses a stale sidecar (touched, resized, another model's).
# Usage: test_index_cli.sh SLUICE PYTHON
set -uo pipefail
sluice="$1"; python="$2"
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$work"' EXIT
m="$work/m.gguf"
# The built-in vocabulary: no dependency on ../shared. ~3 MiB: three 1 MiB chunks, the last short.
"$sluice" synth "$m" --vocab-size 4000 --embd 256 --layers 4 --ff 512 > /dev/null || fail "synth"

out=$("$sluice" index "$m" 2>&1) || fail "index exited $?: $out"
[[ -f "$m.sluice-index" ]] || fail "no sidecar $m.sluice-index"
[[ ! -e "$m.sluice-index.tmp" ]] || fail "temporary sidecar left behind"
[[ "$out" == *"1 shard(s)"*"3 chunks"* ]] || fail "index output: $out"

out=$("$sluice" index --verify "$m" 2>&1) || fail "verify of the intact model exited $?: $out"
[[ "$out" == *OK* ]] || fail "verify output: $out"

# Flip one byte 5000 bytes before the end (the head's data) and put the mtime back.
"$python" - "$m" <<'PY' || fail "flipping a byte"
import os, sys
p = sys.argv[1]
st = os.stat(p)
with open(p, "r+b") as f:
    f.seek(st.st_size - 5000)
    b = f.read(1)
    f.seek(st.st_size - 5000)
    f.write(bytes([b[0] ^ 0x40]))
os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
PY
out=$("$sluice" index --verify "$m" 2>&1); rc=$?
[[ $rc == 1 ]] || fail "verify of a flipped byte exited $rc: $out"
for word in MISMATCH "$m" "shard 1 of 1" "bytes [2097152, +" "(chunk 2)" "damaged data in" "tensor"; do
  [[ "$out" == *"$word"* ]] || fail "'$word' not in: $out"
done

# Re-indexing accepts the file as it is now; touching it makes the sidecar stale.
"$sluice" index "$m" > /dev/null 2>&1 || fail "re-index"
"$sluice" index --verify "$m" > /dev/null 2>&1 || fail "verify after re-index"
touch -d "+1 second" "$m"
out=$("$sluice" index --verify "$m" 2>&1); rc=$?
[[ $rc == 1 && "$out" == *"modification time"*"sluice index"* ]] || fail "touched model: rc $rc: $out"

"$sluice" index "$m" > /dev/null 2>&1 || fail "re-index"
truncate -s +4096 "$m"
out=$("$sluice" index --verify "$m" 2>&1); rc=$?
[[ $rc == 1 && "$out" == *"size"* ]] || fail "resized model: rc $rc: $out"

# Another model's sidecar under this model's sidecar name.
"$sluice" synth "$work/other.gguf" --vocab-size 4000 --embd 256 --layers 4 --ff 512 --seed 2 > /dev/null || fail "synth other"
cp "$m.sluice-index" "$work/other.gguf.sluice-index"
out=$("$sluice" index --verify "$work/other.gguf" 2>&1); rc=$?
[[ $rc == 1 && "$out" == *"made for the file 'm.gguf'"* ]] || fail "foreign sidecar: rc $rc: $out"

# A damaged sidecar, a missing sidecar, a missing model: errors, exit 1, no crash.
printf 'garbage' > "$work/other.gguf.sluice-index"
out=$("$sluice" index --verify "$work/other.gguf" 2>&1); rc=$?
[[ $rc == 1 && "$out" == *"other.gguf.sluice-index"* ]] || fail "damaged sidecar: rc $rc: $out"
rm "$work/other.gguf.sluice-index"
out=$("$sluice" index --verify "$work/other.gguf" 2>&1); rc=$?
[[ $rc == 1 && "$out" == *"cannot open"* ]] || fail "missing sidecar: rc $rc: $out"
out=$("$sluice" index "$work/none.gguf" 2>&1); rc=$?
[[ $rc == 1 && "$out" == *"none.gguf"* ]] || fail "missing model: rc $rc: $out"
# A shard name whose siblings are missing.
cp "$work/other.gguf" "$work/s-00001-of-00002.gguf"
out=$("$sluice" index "$work/s-00001-of-00002.gguf" 2>&1); rc=$?
[[ $rc == 1 && "$out" == *"s-00002-of-00002.gguf"*"missing"* ]] || fail "missing shard: rc $rc: $out"
# -o naming the model itself: refused before anything is written; the model is unchanged.
sha=$(sha256sum < "$work/other.gguf")
out=$("$sluice" index "$work/other.gguf" -o "$work/other.gguf" 2>&1); rc=$?
[[ $rc == 1 && "$out" == *"refusing to replace the input"* ]] || fail "-o MODEL: rc $rc: $out"
[[ "$(sha256sum < "$work/other.gguf")" == "$sha" ]] || fail "-o MODEL changed the model"
echo "PASS"
