#!/usr/bin/env bash
# daq-engine and mimoCoRB2 side by side on the reference pipelines, in one go.
# Copies the mimoCoRB2 reference benchmark (read-only; $MIMOCORB2_REFERENCE, by default
# ../shared/reference/mimocorb2) to target/reference, creates its venv with a Python >= 3.12
# (mimocorb2 0.0.4 requires it) and mimocorb2 from PyPI once, builds daq-engine in release
# and runs
#   daq-engine bench pipeline --reference "$PWD/target/reference"
# which alternates the two per case and run, and prints events/s, MB/s and the ratio.
# (scripts/bench_python.sh runs `bench python` the same way, DAQ_BENCH=python.)
set -euo pipefail
cd "$(dirname "$0")/.."
src=${MIMOCORB2_REFERENCE:-../shared/reference/mimocorb2}
ref="$PWD/target/reference"
if [ ! -d "$ref" ]; then
    if [ ! -f "$src/run_once.py" ]; then
        echo "no mimoCoRB2 reference benchmark at $src (set MIMOCORB2_REFERENCE=DIR)" >&2
        exit 1
    fi
    mkdir -p target
    cp -r "$src" "$ref"
    chmod -R u+w "$ref"
fi
# The first interpreter that really runs and is >= 3.12. A name on PATH is not enough: a
# pyenv shim for a version pyenv does not have exits with an error.
python_312() {
    local c candidates=(python3.13 python3.12)
    if command -v pyenv >/dev/null; then
        candidates+=("$(pyenv root)"/versions/3.1[2-9]*/bin/python3)
    fi
    candidates+=(/usr/bin/python3 python3)
    for c in "${candidates[@]}"; do
        if "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}
if [ ! -x "$ref/.venv/bin/python" ]; then
    if ! py=$(python_312); then
        echo "mimoCoRB2 needs Python >= 3.12; none found (pyenv install 3.12, or a distribution's python3.12)" >&2
        exit 1
    fi
    echo "mimoCoRB2's venv from $py"
    "$py" -m venv "$ref/.venv"
    "$ref/.venv/bin/pip" install -q mimocorb2==0.0.4
fi
cargo build --release --locked
target/release/daq-engine bench "${DAQ_BENCH:-pipeline}" --reference "$ref" "$@"
