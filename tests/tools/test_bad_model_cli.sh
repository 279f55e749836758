#!/usr/bin/env bash
# `sluice run` and `sluice convert` on models whose metadata or tensors disagree (the crashes users
# reported: attn_q or output with too many rows, head_count 0, context_length 0, a wrong type):
# each exits 1 with "sluice: FILE: ..." naming the key or tensor, never with a signal. The same
# tiny models unchanged run and convert. Needs nothing outside the build (the models carry their
# own vocabulary).
set -euo pipefail
sluice="$1"; writer="$2"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

for arch in llama qwen2 gemma3; do
  "$writer" "$work/good.gguf" "good_$arch" > /dev/null
  "$sluice" run -m "$work/good.gguf" -p "the" -n 4 --temp 0 > "$work/out.txt" 2> "$work/err.txt" \
    || { cat "$work/err.txt"; fail "good $arch model does not run"; }
  "$sluice" convert "$work/good.gguf" "$work/good.sluice" > /dev/null 2>&1 || fail "good $arch model does not convert"
  "$sluice" run -m "$work/good.sluice" -p "the" -n 4 --temp 0 > /dev/null 2> "$work/err.txt" \
    || { cat "$work/err.txt"; fail "good $arch pack does not run"; }
done

# expect_refused FILE WORDS_FILE CMD...: CMD exits 1 (not a signal) and names every word.
expect_refused() {
  local file="$1" words="$2"; shift 2
  local rc=0
  "$@" > /dev/null 2> "$work/err.txt" || rc=$?
  [[ $rc == 1 ]] || { cat "$work/err.txt"; fail "$* exited $rc (want 1; >128 is a signal)"; }
  grep -qF "sluice: " "$work/err.txt" || fail "$*: no 'sluice:' error line"
  grep -qF "$file" "$work/err.txt" || { cat "$work/err.txt"; fail "$*: error does not name $file"; }
  while IFS= read -r word; do
    grep -qF -- "$word" "$work/err.txt" || { cat "$work/err.txt"; fail "$*: error does not contain '$word'"; }
  done < "$words"
}

cases=(llama_blk_1_attn_q_weight_rows_x2 llama_output_weight_rows_x2 llama_token_embd_weight_cols_half
       llama_attention_head_count_0 llama_context_length_0 llama_attention_head_count_kv_0 llama_attention_head_count_kv_3
       llama_blk_1_ffn_down_weight_type llama_extra_block llama_missing_block llama_rope_freq_base_nan
       qwen2_blk_1_attn_k_bias_cols_x2 gemma3_blk_1_attn_q_norm_weight_cols_half gemma3_blk_1_attn_output_weight_rows_half)
for c in "${cases[@]}"; do
  "$writer" "$work/$c.gguf" "$c" > "$work/$c.words"
  expect_refused "$work/$c.gguf" "$work/$c.words" "$sluice" run -m "$work/$c.gguf" -p "the" -n 4 --temp 0
  expect_refused "$work/$c.gguf" "$work/$c.words" "$sluice" convert "$work/$c.gguf" "$work/$c.sluice"
  [[ ! -e "$work/$c.sluice" ]] || fail "convert of $c left $work/$c.sluice"
  if [[ $c != *_nan ]]; then  # a pack's JSON holds NaN as null: that case's message differs
    "$writer" "$work/$c.sluice" "$c" --pack > /dev/null
    expect_refused "$work/$c.sluice" "$work/$c.words" "$sluice" run -m "$work/$c.sluice" -p "the" -n 4 --temp 0
  fi
done
echo "ok: ${#cases[@]} bad models refused by run and convert, GGUF and pack"
