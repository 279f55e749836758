#!/usr/bin/env bash
# The README's second command: install dependencies, build, and run the whole test suite twice:
# the Release build, then an AddressSanitizer + UndefinedBehaviorSanitizer build (tests only, all
# but the longest generations against llama.cpp and the load test).
# Exits non-zero on any failure. SLUICE_SKIP_ASAN=1 skips the sanitizer pass (local iteration).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
# Each phase's seconds, so a slow CI run says where its time went.
phase_start=$SECONDS
took() { echo "== $1 took $((SECONDS - phase_start)) s" >&2; phase_start=$SECONDS; }
bash tools/install-deps.sh
took "installing dependencies"

# References the parity and tokenizer tests compare with (cached under ~/.cache/sluice; a test
# whose reference is missing skips with a message). Failing to reach PyPI is not fatal here.
if ! bash tools/setup-venv.sh >/dev/null; then
  echo "test.sh: WARNING: could not prepare the llama.cpp reference venv (PyPI unreachable?); parity tests will skip" >&2
fi
if ! bash tools/fetch_tokenizer_vocabs.sh >/dev/null; then
  echo "test.sh: WARNING: could not fetch llama.cpp's tokenizer test vocabularies; those tokenizer tests will skip" >&2
fi
took "preparing the references"

echo "== Release build + tests" >&2
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
took "the Release build"
ctest --test-dir build --output-on-failure -j"$jobs"
took "the Release tests"

if [[ "${SLUICE_SKIP_ASAN:-0}" != "1" ]]; then
  echo "== ASan+UBSan build + tests" >&2
  # Without CUDA: its kernels cannot run without a GPU, the Release pass builds them, and nvcc's
  # minutes are better spent on tests.
  # -O1 -g1 rather than RelWithDebInfo's -O2 -g: the sanitizer build was the longest phase of CI
  # (1645 s of 58 min on a 2-core Zen 3). With the sanitizer flags, eight files from five modules
  # compiled in 70 s instead of 142 (a 2-core Zen 4), their objects 2-4x smaller; the whole phase
  # then took 738 s there. ASan's own advice is -O1; -g1 keeps the file:line of every frame in its
  # reports and drops only the variables' debug info.
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DSLUICE_SANITIZE=ON -DSLUICE_BUILD_BENCH=OFF -DSLUICE_CUDA=OFF >/dev/null
  cmake --build build-asan -j"$jobs"
  took "the sanitizer build"
  # Every test but the long generations against llama.cpp (parity_greedy_*, parity_perplexity_*:
  # two thirds of the Release pass's test time, and 2-3x that under the sanitizers) and the load
  # test: they run the same code as the parity_logits_* tests on the same models, which stay.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j"$jobs" -E '^parity_(greedy|perplexity)_' -LE load
  took "the sanitizer tests"
fi
echo "== all tests passed in $SECONDS s" >&2
