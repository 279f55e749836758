#!/usr/bin/env bash
# `sluice run` end to end on stories260K (../shared/models): several prompts give the same text
# whether they run one at a time, three per pass, on one compute thread (-t 1), streamed with a
# spilled KV cache, or with a q8_0 cache that still fits; a budget below the minimum is refused naming it; --trace writes JSON with
# the io, decompress and compute lanes and the run summary.
set -euo pipefail
sluice="$1"; models="$2"; python="${3:-python3}"
stories="$models/stories260K.gguf"
if [[ ! -f "$stories" ]]; then echo "SKIPPED: $stories not found (../shared/models)"; exit 77; fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$sluice" convert "$stories" "$work/s.sluice" > /dev/null
printf 'Once upon a time\nThe cat sat\n\nLily went to the park\nA big red dog\n' > "$work/prompts.txt"
common=(-m "$work/s.sluice" --prompts "$work/prompts.txt" -n 24 --temp 0.7 --seed 7 -c 64)

"$sluice" run "${common[@]}" -np 1 > "$work/one.txt" 2> "$work/one.err"
"$sluice" run "${common[@]}" -np 3 > "$work/three.txt" 2> "$work/three.err"
"$sluice" run "${common[@]}" -np 4 --stream on --kv-spill on --mem-budget 80MiB --trace "$work/trace.json" \
  > "$work/spill.txt" 2> "$work/spill.err"
grep -q "spilled" "$work/spill.err" || { echo "FAIL: the plan does not say the KV cache is spilled"; cat "$work/spill.err"; exit 1; }
grep -q "KV spill:" "$work/spill.err" || { echo "FAIL: no KV spill line"; exit 1; }
[[ $(grep -c '^--- prompt' "$work/one.txt") == 4 ]] || { echo "FAIL: expected 4 answers"; cat "$work/one.txt"; exit 1; }
diff "$work/one.txt" "$work/three.txt" || { echo "FAIL: -np 3 differs from -np 1"; exit 1; }
diff "$work/one.txt" "$work/spill.txt" || { echo "FAIL: streamed + spilled KV differs from resident"; exit 1; }
grep -Eq " (1\.[5-9]|[23]\.[0-9]) sequences per pass" "$work/three.err" || { echo "FAIL: -np 3 did not batch"; cat "$work/three.err"; exit 1; }
# -t 1: one compute thread (the plan counts one thread's attention scratch), the same text.
"$sluice" run "${common[@]}" -np 3 -t 1 --stream on > "$work/t1.txt" 2> "$work/t1.err"
grep -Eq "attention scores .* 1 threads x 64 ctx" "$work/t1.err" || { echo "FAIL: -t 1 did not plan one thread"; cat "$work/t1.err"; exit 1; }
diff "$work/one.txt" "$work/t1.txt" || { echo "FAIL: -t 1 differs from the default threads"; exit 1; }

"$python" - "$work/trace.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
events = d["traceEvents"]
lanes = {e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"}
for want in ("io", "compute", "pass"):
    assert want in lanes, (want, lanes)
assert any(l.startswith("decompress") for l in lanes), lanes
summary = d["otherData"]["summary"]
assert summary and summary["passes"] > 0 and summary["bytes_read"] > 0, summary
print("trace ok:", sorted(lanes), "passes", summary["passes"])
PY

if "$sluice" run -m "$work/s.sluice" -p "Once" -n 4 --mem-budget 1MiB > /dev/null 2> "$work/small.err"; then
  echo "FAIL: a 1 MiB budget was accepted"; exit 1
fi
grep -q "too small" "$work/small.err" && grep -q "the minimum is" "$work/small.err" \
  || { echo "FAIL: refusal does not give the minimum"; cat "$work/small.err"; exit 1; }
echo "run cli ok"
