#!/usr/bin/env bash
# `sluice synth` at real size, end to end (built-in vocabulary: needs nothing from ../shared).
# One part per ctest entry:
#   no-room   synth --shape 100b --vocab-size 128256 into /dev/shm (a tmpfs far smaller than the
#             57.8 GB it needs) prints the exact parameter count and file size, then is refused
#             naming the directory, the bytes needed and the bytes free, and leaves no file (skips
#             when /dev/shm is missing or has more than 60 GB free)
#   split     synth --split-max-size writes the same shards, byte for byte, as synth followed by
#             `sluice split --max-size` with the same size, and no unsplit file
#   progress  a ~300 MB synth prints progress lines with MB/s on stderr, and the predicted size
#             equals the written one
#   mxfp4     synth --type MXFP4 --embedding-type MXFP4 writes 17-byte blocks per 32 weights; the
#             model runs with `sluice run` (greedy), all resident, every block streamed, and
#             converted to a pack, with the same text, and with the scalar kernels forced
# Usage: test_synth_cli.sh SLUICE PART. Exit 77: skipped, with a message.
set -uo pipefail
sluice="$1"; part="$2"
skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

work=$(mktemp -d -p "${SYNTH_TEST_DIR:-$PWD}" synth-cli-XXXXXX) || fail "mktemp"
trap 'rm -rf "$work"' EXIT

case "$part" in
no-room)
  [[ -d /dev/shm ]] || skip "no /dev/shm"
  free_kb=$(df -Pk /dev/shm | awk 'NR == 2 { print $4 }')
  (( free_kb < 60 * 1000 * 1000 )) || skip "/dev/shm has $free_kb KiB free: the 100b model would fit"
  out="/dev/shm/sluice-synth-no-room-$$.gguf"
  "$sluice" synth --shape 100b --vocab-size 128256 "$out" > "$work/out" 2> "$work/err"
  rc=$?
  [[ $rc != 0 ]] || { rm -f "$out"; fail "synth into /dev/shm exited 0"; }
  [[ -e "$out" || -e "$out.tmp" ]] && { rm -f "$out" "$out.tmp"; fail "the refused synth left a file"; }
  grep -q "101,613,905,920 parameters" "$work/out" || fail "no parameter count: $(cat "$work/out")"
  grep -q "57,823,171,232 bytes" "$work/out" || fail "no file size: $(cat "$work/out")"
  grep -q "not enough free space in /dev/shm" "$work/err" || fail "no refusal naming /dev/shm: $(cat "$work/err")"
  grep -q "needs 57823171232 bytes" "$work/err" || fail "the refusal does not say the bytes needed: $(cat "$work/err")"
  grep -Eq "[0-9]+ bytes \([0-9.]+ [KMG]iB\) are free" "$work/err" || fail "the refusal does not say the bytes free: $(cat "$work/err")"
  echo "no-room ok: $(cat "$work/err")"
  ;;
split)
  flags=(--vocab-size 1000 --layers 3 --type Q4_K)
  "$sluice" synth "$work/whole.gguf" "${flags[@]}" > /dev/null || fail "synth whole"
  "$sluice" split --max-size 300KiB "$work/whole.gguf" "$work/cut" > /dev/null || fail "split"
  "$sluice" synth "$work/direct.gguf" "${flags[@]}" --split-max-size 300KiB > "$work/out" || fail "synth --split-max-size"
  [[ -e "$work/direct.gguf" ]] && fail "synth --split-max-size wrote an unsplit file"
  mapfile -t cut < <(cd "$work" && ls cut-*-of-*.gguf)
  mapfile -t direct < <(cd "$work" && ls direct-*-of-*.gguf)
  (( ${#cut[@]} > 2 )) || fail "expected several shards, got ${cut[*]}"
  [[ ${#cut[@]} == "${#direct[@]}" ]] || fail "${#direct[@]} shards from synth, ${#cut[@]} from split"
  for f in "${cut[@]}"; do
    cmp "$work/$f" "$work/direct${f#cut}" || fail "$f and direct${f#cut} differ"
  done
  grep -q "direct-00001-of-0000${#cut[@]}.gguf" "$work/out" || fail "the shards are not listed: $(cat "$work/out")"
  echo "split ok: ${#cut[@]} identical shards"
  ;;
progress)
  # Q8_0, embd 2048, ff 8192, 4 layers, 32000 tokens: ~400 MB, over the 256 MiB progress threshold.
  "$sluice" synth "$work/m.gguf" --vocab-size 32000 --embd 2048 --ff 8192 --heads 16 --kv-heads 4 --layers 4 \
    --type Q8_0 > "$work/out" 2> "$work/err" || fail "synth: $(cat "$work/err")"
  grep -Eq "^synth: .* of .* \(100%\), [0-9]+ MB/s, took " "$work/err" || fail "no final progress line: $(cat "$work/err")"
  lines=$(grep -c "^synth: " "$work/err")
  (( lines >= 5 && lines <= 12 )) || fail "$lines progress lines in a log, expected one per 10%: $(cat "$work/err")"
  size=$(stat -c %s "$work/m.gguf")
  with_commas=$(echo "$size" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta')
  grep -q "parameters, $with_commas bytes" "$work/out" || fail "printed size is not the file's $with_commas: $(cat "$work/out")"
  echo "progress ok: $lines lines, $size bytes as predicted"
  ;;
mxfp4)
  "$sluice" synth "$work/m.gguf" --vocab-size 1000 --layers 2 --type MXFP4 --embedding-type MXFP4 > "$work/out" \
    2> "$work/err" || fail "synth --type MXFP4: $(cat "$work/err")"
  plain=$("$sluice" synth "$work/f32.gguf" --vocab-size 1000 --layers 2 --type F32 --embedding-type F32 --no-data) ||
    fail "synth F32 --no-data"
  # The same model at 32 bits per weight and at 17 bytes per 32 (4.25 bits): the matrices shrink 7.5x.
  bytes=$(stat -c %s "$work/m.gguf")
  f32_bytes=$(echo "$plain" | grep -Eo "[0-9,]+ bytes" | head -1 | tr -d ', bytes')
  (( bytes * 6 < f32_bytes )) || fail "the MXFP4 model is $bytes bytes, the F32 one $f32_bytes: not MXFP4-sized"
  common=(-n 16 --temp 0 -p "Once upon a time")
  resident=$("$sluice" run -m "$work/m.gguf" "${common[@]}" --stream off 2> "$work/err") || fail "run (resident): $(cat "$work/err")"
  (( ${#resident} > 16 )) || fail "no text generated: '$resident'"
  streamed=$("$sluice" run -m "$work/m.gguf" "${common[@]}" --stream on 2> "$work/err") || fail "run (streamed): $(cat "$work/err")"
  [[ "$streamed" == "$resident" ]] || fail "streamed text differs: '$streamed' vs '$resident'"
  "$sluice" convert "$work/m.gguf" "$work/m.sluice" > /dev/null 2> "$work/err" || fail "convert: $(cat "$work/err")"
  packed=$("$sluice" run -m "$work/m.sluice" "${common[@]}" 2> "$work/err") || fail "run (pack): $(cat "$work/err")"
  [[ "$packed" == "$resident" ]] || fail "the pack's text differs: '$packed' vs '$resident'"
  SLUICE_CPU_ISA=scalar "$sluice" run -m "$work/m.gguf" "${common[@]}" > /dev/null 2> "$work/err" ||
    fail "run (scalar kernels): $(cat "$work/err")"
  echo "mxfp4 ok: $bytes bytes (F32: $f32_bytes); '$resident'"
  ;;
*) fail "unknown part $part" ;;
esac
