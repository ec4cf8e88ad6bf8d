#!/usr/bin/env bash
# The same Python worker file (benches/python/noop_filter.py) under mimoCoRB2 0.0.4 and under
# daq-engine, in one go: the reference copy and its venv as for scripts/bench_pipeline.sh,
# plus the venv daq-engine's Python workers import numpy from (target/pyvenv, made from the
# /usr/bin/python3 the binary embeds, as scripts/test.sh makes it). Then
#   daq-engine bench python --reference target/reference
set -euo pipefail
cd "$(dirname "$0")/.."
if ! target/pyvenv/bin/python -c 'import numpy' 2>/dev/null; then
    rm -rf target/pyvenv
    /usr/bin/python3 -m venv target/pyvenv
    target/pyvenv/bin/pip install -q numpy
fi
export VIRTUAL_ENV="$PWD/target/pyvenv"
DAQ_BENCH=python exec scripts/bench_pipeline.sh "$@"
