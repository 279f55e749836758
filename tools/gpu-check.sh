#!/usr/bin/env bash
# tools/gpu-check.sh: the one prepared check a session with a GPU runs. Configures and builds the
# CUDA test binaries (SLUICE_CUDA=ON), runs test_cuda_host (the CPU side of the same code) and
# test_cuda_device (every CUDA kernel against compute/cpu), and prints a summary: the GPU as
# nvidia-smi reports it, and pass/fail/skip counts.
#
# Exit status: 0 only when every device test ran and passed. A skipped device test fails the
# check too: on a machine lent for GPU work, "SKIPPED: no CUDA device" means the tests never
# reached the GPU (driver/runtime mismatch, wrong device visibility), which is a failure to look at.
#
# Usage: tools/gpu-check.sh [--build-dir DIR] [--jobs N] [--prebuilt] [--sanitize]
#   --build-dir DIR  build directory (default: build-gpu in the repository root)
#   --jobs N         parallel build jobs (default: nproc)
#   --prebuilt       skip configure/build; run the binaries already in the build directory
#   --sanitize       also run test_cuda_device under compute-sanitizer (memcheck), when installed
# Logs and gtest XML go to $OUT when set (the device machine returns that folder), else the build
# directory.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$repo/build-gpu"
jobs="$(nproc)"
prebuilt=0
sanitize=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --prebuilt) prebuilt=1; shift ;;
    --sanitize) sanitize=1; shift ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
logs="${OUT:-$build}"
mkdir -p "$logs"
started=$SECONDS

echo "== gpu-check: device"
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu-check: nvidia-smi not found: this machine has no NVIDIA driver" >&2
  exit 2
fi
gpu_line="$(nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null \
            || nvidia-smi -L)"
echo "$gpu_line"

if [[ $prebuilt -eq 0 ]]; then
  echo "== gpu-check: configure + build ($build, -j$jobs)"
  # Benchmarks are not needed here (and need Google Benchmark); tests are on by default.
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSLUICE_CUDA=ON -DSLUICE_BUILD_BENCH=OFF \
        > "$logs/gpu-check-configure.log" 2>&1 \
    || { tail -n 40 "$logs/gpu-check-configure.log" >&2; echo "gpu-check: configure failed" >&2; exit 1; }
  cmake --build "$build" -j "$jobs" --target test_cuda_host test_cuda_device > "$logs/gpu-check-build.log" 2>&1 \
    || { tail -n 60 "$logs/gpu-check-build.log" >&2; echo "gpu-check: build failed" >&2; exit 1; }
  echo "built in $((SECONDS - started)) s"
fi

host_bin="$build/tests/compute/test_cuda_host"
device_bin="$build/tests/compute/test_cuda_device"
for bin in "$host_bin" "$device_bin"; do
  [[ -x "$bin" ]] || { echo "gpu-check: $bin is missing (build first, or drop --prebuilt)" >&2; exit 1; }
done

# Runs one gtest binary with its output in $logs/NAME.log and XML next to it; never aborts the
# script (the summary decides). Prints "passed failed skipped" counts from gtest's summary lines.
run_gtest() {
  local name="$1"; shift
  local log="$logs/$name.log"
  local rc=0
  "$@" --gtest_output="xml:$logs/$name.xml" > "$log" 2>&1 || rc=$?
  local passed failed skipped
  passed="$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)"
  failed="$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)"
  skipped="$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)"
  echo "${passed:-0} ${failed:-0} ${skipped:-0} $rc"
}

echo "== gpu-check: test_cuda_host"
read -r host_pass host_fail host_skip host_rc < <(run_gtest test_cuda_host "$host_bin")
echo "test_cuda_host: $host_pass passed, $host_fail failed, $host_skip skipped (exit $host_rc)"

echo "== gpu-check: test_cuda_device"
read -r dev_pass dev_fail dev_skip dev_rc < <(run_gtest test_cuda_device "$device_bin")
echo "test_cuda_device: $dev_pass passed, $dev_fail failed, $dev_skip skipped (exit $dev_rc)"
if [[ $dev_fail -gt 0 || $dev_rc -ne 0 ]]; then
  grep -E '^\[  FAILED  \]|Failure|error' "$logs/test_cuda_device.log" | head -n 40 || true
fi
if [[ $dev_skip -gt 0 ]]; then
  grep -m 1 'SKIPPED: no CUDA device' "$logs/test_cuda_device.log" || true
fi

san_status="not run"
if [[ $sanitize -eq 1 ]]; then
  if command -v compute-sanitizer >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/compute-sanitizer ]]; then
    sanitizer="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
    echo "== gpu-check: compute-sanitizer memcheck"
    if "$sanitizer" --tool memcheck --error-exitcode 3 "$device_bin" > "$logs/test_cuda_device-memcheck.log" 2>&1; then
      san_status="clean"
    else
      san_status="errors (see test_cuda_device-memcheck.log)"
      tail -n 30 "$logs/test_cuda_device-memcheck.log" >&2
    fi
  else
    san_status="compute-sanitizer not installed"
  fi
fi

echo "== gpu-check: summary"
echo "gpu:             $gpu_line"
echo "test_cuda_host:  $host_pass passed, $host_fail failed, $host_skip skipped"
echo "test_cuda_device: $dev_pass passed, $dev_fail failed, $dev_skip skipped"
echo "memcheck:        $san_status"
echo "logs:            $logs ($((SECONDS - started)) s in all)"

status=0
[[ $host_fail -eq 0 && $host_rc -eq 0 ]] || status=1
[[ $dev_fail -eq 0 && $dev_rc -eq 0 && $dev_pass -gt 0 ]] || status=1
[[ $dev_skip -eq 0 ]] || status=1
[[ $sanitize -eq 0 || $san_status == "clean" || $san_status == "compute-sanitizer not installed" ]] || status=1
if [[ $status -eq 0 ]]; then echo "gpu-check: PASS"; else echo "gpu-check: FAIL"; fi
exit $status
