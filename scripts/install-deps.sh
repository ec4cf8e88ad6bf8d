#!/usr/bin/env bash
# Installs the Debian packages daq-engine needs, only those missing. Used by `make demo` and
# `make test`; safe to run again. The README says what each package is for.
#   build:  libhdf5-dev libusb-1.0-0-dev pkg-config python3-dev (the embedded Python of
#           Python workers: Debian's 3.11, see .cargo/config.toml)
#           cmake g++ (the librdkafka that the rdkafka crate builds from its bundled source
#           for export.kafka/source.kafka; Debian's librdkafka 2.0.2 is too old)
#   run:    hdf5-tools (h5repack compresses an older version's killed-run files on recovery; h5dump in tests)
#   tests:  python3-venv (h5py in a venv) tmux (terminal dashboard test)
#           chromium (web page test, headless)
#           prometheus (scrapes a run's /metrics in a test; its promtool checks the format)
#           systemd (systemd-analyze verifies the unit template systemd/daq-engine@.service)
#   tests, not Debian: tansu, the Kafka broker of the Kafka tests, built once by
#           scripts/install-tansu.sh into /var/cache/daq-engine/tansu (9–45 minutes)
set -euo pipefail
what=${1:-build}
pkgs=(libhdf5-dev libusb-1.0-0-dev pkg-config python3-dev hdf5-tools cmake g++)
if [ "$what" = test ]; then
    pkgs+=(python3-venv tmux chromium prometheus systemd)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
    echo "daq-engine needs Rust 1.95 or newer (cargo): install it with rustup (https://rustup.rs)" >&2
    exit 1
fi
if [ "$what" = test ]; then
    "$(dirname "$0")/install-tansu.sh" >/dev/null
fi
