#!/usr/bin/env bash
# `sluice index` of a mixture-of-experts GGUF (experts read one by one, each rounded out to whole
# index chunks):
#   - the default chunk is 64 KiB for a MoE model (1 MiB for a dense one); --chunk-size takes a
#     power of two from 4 KiB to 8 MiB and refuses anything else, naming the flag;
#   - a qwen3moe streamed with experts apart under a small budget, its reads verified by the
#     small-chunk sidecar: logits identical to the in-RAM ones, expert reads reported;
#   - a byte flipped (mtime kept) inside every expert's slice of blk.0.ffn_up_exps is caught by the
#     expert read, the error naming the tensor, the expert, its layer and the offset; `index
#     --verify` names the tensor too.
# Usage: test_moe_index_cli.sh SLUICE PYTHON
set -uo pipefail
sluice="$1"; python="$2"
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$work"' EXIT
m="$work/q.gguf"
"$sluice" synth "$m" --arch qwen3moe --vocab-size 4000 --embd 256 --layers 6 --heads 4 --kv-heads 2 \
  --head-dim 64 --experts 16 --experts-used 4 --expert-ff 256 --router-skew 1 --type Q8_0 > /dev/null || fail "synth qwen3moe"
"$sluice" synth "$work/dense.gguf" --vocab-size 4000 --embd 256 --layers 4 --ff 512 > /dev/null || fail "synth dense"

out=$("$sluice" index "$m" 2>&1) || fail "index exited $?: $out"
[[ "$out" == *"chunks of 64.0 KiB"* ]] || fail "MoE default chunk is not 64 KiB: $out"
out=$("$sluice" index "$work/dense.gguf" 2>&1) || fail "index dense exited $?: $out"
[[ "$out" == *"chunks of 1.0 MiB"* ]] || fail "dense default chunk is not 1 MiB: $out"
out=$("$sluice" index "$work/dense.gguf" --chunk-size 16KiB -o "$work/d16.idx" 2>&1) || fail "index --chunk-size 16KiB: $out"
[[ "$out" == *"chunks of 16.0 KiB"* ]] || fail "--chunk-size 16KiB: $out"
for bad in 3000 2KiB 96KiB 16MiB; do
  rc=0; out=$("$sluice" index "$work/dense.gguf" --chunk-size "$bad" -o "$work/bad.idx" 2>&1) || rc=$?
  [[ $rc != 0 && "$out" == *"--chunk-size"*"power of two"* ]] || fail "--chunk-size $bad: rc $rc: $out"
  [[ ! -e "$work/bad.idx" ]] || fail "--chunk-size $bad wrote a sidecar"
done

common=(-p "hello world, once upon a time" --logits-rows 64 --greedy 8 -c 128 -t 1 --disk-gbps 2)
"$sluice" eval -m "$m" "${common[@]}" --logits-out "$work/ram.f32" > "$work/ram.json" 2> "$work/ram.err" || fail "eval in RAM: $(cat "$work/ram.err")"
"$sluice" eval -m "$m" "${common[@]}" --stream on --mem-budget 75MiB --logits-out "$work/s.f32" > "$work/s.json" 2> "$work/s.err" \
  || fail "eval streamed: $(cat "$work/s.err")"
grep -qF "reads verified by $m.sluice-index" "$work/s.err" || fail "reads not verified: $(cat "$work/s.err")"
grep -q "^experts: hit rate .* uses, [1-9][0-9]* read (" "$work/s.err" || fail "no expert reads: $(cat "$work/s.err")"
cmp -s "$work/ram.f32" "$work/s.f32" || fail "verified expert reads: logits differ from the in-RAM ones"
cmp -s "$work/ram.json" "$work/s.json" || fail "verified expert reads: JSON differs: $(cat "$work/s.json")"

# One byte in the middle of each expert's slice of blk.0.ffn_up_exps.weight, mtime put back.
"$python" - "$m" <<'PY' || fail "flipping expert bytes"
import os, struct, sys
p = sys.argv[1]
st = os.stat(p)
with open(p, "r+b") as f:
    data = f.read()
    pos = 0
    def take(fmt):
        global pos
        v = struct.unpack_from("<" + fmt, data, pos); pos += struct.calcsize(fmt); return v[0]
    def string():
        global pos
        n = take("Q"); s = data[pos:pos + n]; pos += n; return s.decode()
    sizes = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    def value(t):
        if t == 8: return string()
        if t == 9:
            et = take("I"); n = take("Q"); return [value(et) for _ in range(n)]
        return take(sizes[t])
    assert data[:4] == b"GGUF"; pos = 4
    take("I"); n_tensors = take("Q"); n_kv = take("Q")
    align = 32
    for _ in range(n_kv):
        k = string(); v = value(take("I"))
        if k == "general.alignment": align = v
    tensors = {}
    for _ in range(n_tensors):
        name = string(); dims = [take("Q") for _ in range(take("I"))]; take("I"); tensors[name] = (dims, take("Q"))
    base = (pos + align - 1) // align * align
    names = sorted(tensors, key=lambda n: tensors[n][1])
    name = "blk.0.ffn_up_exps.weight"
    i = names.index(name)
    begin = base + tensors[name][1]; end = base + tensors[names[i + 1]][1]
    n_expert = tensors[name][0][-1]
    per = (end - begin) // n_expert
    for e in range(n_expert):
        at = begin + e * per + per // 2
        f.seek(at); f.write(bytes([data[at] ^ 0x40]))
os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
PY
rc=0; "$sluice" eval -m "$m" "${common[@]}" --stream on --mem-budget 75MiB > /dev/null 2> "$work/bad.err" || rc=$?
[[ $rc != 0 ]] || fail "a flipped expert byte was not caught"
grep -q "expert [0-9]* of layer 0 (blk.0.ffn_up_exps.weight bytes \[[0-9]*, [0-9]*)) at offset [0-9]*:" "$work/bad.err" \
  || fail "the error does not name the expert, tensor and offset: $(cat "$work/bad.err")"
grep -qF "$m" "$work/bad.err" || fail "the error does not name the file: $(cat "$work/bad.err")"
out=$("$sluice" index --verify "$m" 2>&1); rc=$?
[[ $rc == 1 && "$out" == *MISMATCH*"blk.0.ffn_up_exps.weight"* ]] || fail "verify of flipped expert bytes: rc $rc: $out"
echo "OK"
