#!/usr/bin/env bash
# Every check and test of daq-engine, as CI runs it (`make test`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
step() { echo; echo "=== $* ($(date -u +%T))"; }

step "format"
cargo fmt --all -- --check

step "lint"
scripts/layers.sh
cargo clippy --workspace --all-targets --locked -- -D warnings
# Broken or private intra-doc links: the reference is read with `cargo doc`.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
# The Python package's crate, checked in the main target directory: without maturin's
# PYO3_BUILD_EXTENSION_MODULE its pyo3 is the main workspace's, so nothing is built twice.
cargo fmt --manifest-path python/daq_engine/Cargo.toml -- --check
CARGO_TARGET_DIR="$PWD/target" \
    cargo clippy --manifest-path python/daq_engine/Cargo.toml --locked -- -D warnings

step "python with h5py for the HDF5 reader tests, scipy for the peak finder's comparison, confluent-kafka and ess-streaming-data-types for the Kafka tests"
if [ ! -x target/venv/bin/python ] || ! target/venv/bin/python -c 'import h5py, numpy, scipy, confluent_kafka, streaming_data_types' 2>/dev/null; then
    python3 -m venv target/venv
    target/venv/bin/pip install -q h5py numpy scipy confluent-kafka ess-streaming-data-types
fi
export DAQ_PYTHON="$PWD/target/venv/bin/python"
# The Kafka broker of the Kafka tests (installed by install-deps.sh above).
DAQ_TANSU="$(scripts/install-tansu.sh)"
export DAQ_TANSU

step "venv with numpy for the Python worker tests (from the Python daq-engine embeds)"
if [ ! -x target/pyvenv/bin/python ] || ! target/pyvenv/bin/python -c 'import numpy' 2>/dev/null; then
    rm -rf target/pyvenv
    /usr/bin/python3 -m venv target/pyvenv
    target/pyvenv/bin/pip install -q numpy
fi
export DAQ_PYVENV="$PWD/target/pyvenv"

step "the daq_engine Python package (maturin wheel into target/pyattach; incremental)"
scripts/python_package.sh target/pyattach
export DAQ_PYATTACH_VENV="$PWD/target/pyattach"

step "build (the example plugin and binary are run by the tests)"
cargo build --workspace --lib --bins --examples --locked

step "tests"
cargo test --workspace --locked --no-fail-fast

step "Debian package: built from this build, installed with dpkg, run, removed"
scripts/deb.sh --test-build

step "loom model checks of the ring protocol"
# The library's tests once more with the ring's atomics and futex switched to loom's:
# `--cfg daq_loom` goes to daq-engine alone (cargo rustc), so its dependencies are the test
# step's, not built again; the ring at opt-level 1 and loom's scheduler optimized, as the
# models run them millions of times. Only the models run.
models=$(cargo rustc --lib --profile test --locked --features loom-models \
    --config 'profile.dev.package.daq-engine.opt-level=1' \
    --config 'profile.dev.package.loom.opt-level=3' \
    --config 'profile.dev.package.generator.opt-level=3' \
    --config 'profile.dev.package.scoped-tls.opt-level=3' \
    --message-format=json-render-diagnostics -- --cfg daq_loom |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])')
"$models" ring::loom_tests

echo
echo "all checks passed"
