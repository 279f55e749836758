#!/usr/bin/env bash
# A forward pass that fails (here: the KV spill file's writes hit a full 8 KiB tmpfs, ENOSPC)
# through the CLI, on a synthetic model: `sluice run -p` exits 1 with one line giving the error's
# kind, file and errno; `sluice run --prompts` answers every prompt ("error: ..." for those of a
# failed pass) and exits 1; `sluice batch` writes status_code 500 lines for them, and a rerun
# resumes them as answered (nothing run again, nothing written twice). Needs root to mount a
# tmpfs (exit 77 otherwise).
set -euo pipefail
sluice="$1"
work=$(mktemp -d)
full="$work/full"
mkdir "$full"
cleanup() { umount "$full" 2> /dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
if ! mount -t tmpfs -o size=8k tmpfs "$full" 2> /dev/null; then echo "SKIPPED: cannot mount a tmpfs (needs root)"; exit 77; fi
fail() { echo "FAIL: $*"; exit 1; }

"$sluice" synth "$work/m.gguf" --layers 2 --vocab-size 512 > /dev/null
spill=(--kv-spill on --kv-spill-dir "$full" -c 256)

rc=0; "$sluice" run -m "$work/m.gguf" -p "Once upon" -n 8 --temp 0 "${spill[@]}" > "$work/one.out" 2> "$work/one.err" || rc=$?
[[ $rc == 1 ]] || { cat "$work/one.err"; fail "run -p exited $rc, want 1"; }
grep -q "^sluice: write of $full/sluice-kv-.* No space left on device (errno 28) \[io error\]$" "$work/one.err" \
  || { cat "$work/one.err"; fail "run -p: no io error line naming the spill file"; }

printf 'Once upon\nThe cat sat\nA big dog\n' > "$work/p.txt"
rc=0; "$sluice" run -m "$work/m.gguf" --prompts "$work/p.txt" -n 8 --temp 0 -np 2 "${spill[@]}" > "$work/many.out" 2> "$work/many.err" || rc=$?
[[ $rc == 1 ]] || { cat "$work/many.err"; fail "run --prompts exited $rc, want 1"; }
[[ $(grep -c '^--- prompt .* error)$' "$work/many.out") == 3 ]] || { cat "$work/many.out"; fail "not every prompt answered with an error"; }
[[ $(grep -c '^error: write of .*No space left on device' "$work/many.out") == 3 ]] || { cat "$work/many.out"; fail "error lines"; }
grep -q "^sluice: 3 of 3 prompts failed with the pass they were in; the first: .*\[io error\]$" "$work/many.err" \
  || { cat "$work/many.err"; fail "run --prompts: no summary error line"; }

batch=(-m "$work/m.gguf" -i "$work/p.txt" -o "$work/out.jsonl" --max-tokens 4 -b 2 --progress log "${spill[@]}")
rc=0; "$sluice" batch "${batch[@]}" 2> "$work/batch.err" || rc=$?
[[ $rc == 4 ]] || { cat "$work/batch.err"; fail "batch exited $rc, want 4 (done, some passes failed)"; }
grep -q "3 requests failed with the pass they were in" "$work/batch.err" || { cat "$work/batch.err"; fail "no failed-pass summary"; }
[[ $(grep -c '"status_code":500' "$work/out.jsonl") == 3 ]] || { cat "$work/out.jsonl"; fail "want three status 500 lines"; }
grep -q '"message":"line 2: write of .*No space left on device' "$work/out.jsonl" || fail "500 line does not name the input line and error"
cp "$work/out.jsonl" "$work/first.jsonl"
"$sluice" batch "${batch[@]}" 2> "$work/resume.err" || { cat "$work/resume.err"; fail "resume exited $?"; }
grep -q "0 ok, 0 failed, 3 answered before" "$work/resume.err" || { cat "$work/resume.err"; fail "resume ran requests again"; }
cmp "$work/first.jsonl" "$work/out.jsonl" || fail "resume changed the output"
echo "pass failure cli ok"
