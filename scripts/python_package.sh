#!/usr/bin/env bash
# Builds the `daq_engine` Python package (python/daq_engine, a pyo3 extension made with
# maturin) and installs it into a venv made from /usr/bin/python3 with numpy and maturin.
# Incremental: the build has its own cargo target directory (target/python-package, apart
# from the binary's: maturin builds with PYO3_BUILD_EXTENSION_MODULE, which would make
# cargo rebuild pyo3 and everything above it each time the two builds took turns), so a
# second run only relinks what changed and reinstalls the wheel.
#
#   scripts/python_package.sh [VENV]        default target/pyattach
# A person installs it with `pip install ./python/daq_engine` instead (README).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-target/pyattach}
if ! "$venv/bin/python" -c 'import numpy' 2>/dev/null || [ ! -x "$venv/bin/maturin" ]; then
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q numpy 'maturin>=1.9.4,<2'
fi
out=target/python-package/wheels
rm -rf "$out"
CARGO_TARGET_DIR="$PWD/target/python-package" "$venv/bin/maturin" build --locked \
    -m python/daq_engine/Cargo.toml -i "$venv/bin/python" --compatibility linux -o "$out"
"$venv/bin/pip" install -q --force-reinstall --no-deps "$out"/daq_engine-*.whl
