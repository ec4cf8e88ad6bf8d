#!/usr/bin/env bash
# daq-engine and mimoCoRB2 side by side on the reference pipelines, in one go.
# Copies ../shared/reference/mimocorb2 (read-only) to target/reference, creates its venv with
# Python 3.12 and mimocorb2 0.0.4 from PyPI once, builds daq-engine in release and runs
#   daq-engine bench pipeline --reference target/reference
# which alternates the two per case and run, and prints events/s, MB/s and the ratio.
# (scripts/bench_python.sh runs `bench python` the same way, DAQ_BENCH=python.)
set -euo pipefail
cd "$(dirname "$0")/.."
ref=target/reference
if [ ! -d "$ref" ]; then
    mkdir -p target
    cp -r ../shared/reference/mimocorb2 "$ref"
    chmod -R u+w "$ref"
fi
if [ ! -x "$ref/.venv/bin/python" ]; then
    # The first that runs: a pyenv shim is on PATH even where its version is not selected.
    py=""
    for c in "$(command -v python3.12 || true)" $(ls "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3 2>/dev/null); do
        if [ -n "$c" ] && "$c" -c '' 2>/dev/null; then py=$c; break; fi
    done
    if [ -z "$py" ]; then
        echo "mimoCoRB2 needs Python >= 3.12; none found (pyenv install 3.12, or apt-get install python3.12)" >&2
        exit 1
    fi
    "$py" -m venv "$ref/.venv"
    "$ref/.venv/bin/pip" install -q mimocorb2==0.0.4
fi
cargo build --release --locked
target/release/daq-engine bench "${DAQ_BENCH:-pipeline}" --reference "$ref" "$@"
