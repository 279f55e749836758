#!/usr/bin/env bash
# Installs sluice's build and test dependencies from Debian 12's packages. Idempotent and quiet
# when everything is already there: it only calls apt-get for packages that are missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git python3 python3-venv
  liburing-dev libzstd-dev libhwloc-dev libtbb-dev libxxhash-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev
  libcpp-httplib-dev  # sluice serve
  tmux  # tests: `sluice chat` driven through a terminal
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: run as root (or install these packages yourself): ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
