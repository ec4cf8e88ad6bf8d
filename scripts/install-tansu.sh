#!/usr/bin/env bash
# Installs the Kafka-protocol broker the Kafka tests run against: tansu 0.6.0 (Rust, no Java),
# built once into a directory outside the clone and reused by every later run.
#   * `--no-default-features --features dynostore`: the in-memory storage engine
#     (`--storage-engine memory://…`) needs `dynostore`, which is not a default feature; the
#     defaults (PostgreSQL, S3, …) are not needed and only lengthen the build.
#   * The build takes 9–45 minutes on 2 cores, so it only runs when the binary is missing.
# Prints the path of the binary. Override the directory with DAQ_TANSU_ROOT.
set -euo pipefail
root=${DAQ_TANSU_ROOT:-/var/cache/daq-engine/tansu}
version=0.6.0
bin="$root/bin/tansu"
if [ -x "$bin" ] && [ "$(cat "$root/VERSION" 2>/dev/null)" = "$version" ]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$root"
echo "building tansu $version into $root (once; 9–45 minutes on 2 cores)" >&2
# The build directory lives beside the binary, so an interrupted build resumes where it stopped.
CARGO_TARGET_DIR="$root/build" cargo install tansu --version "$version" --locked \
    --no-default-features --features dynostore --root "$root" >&2
rm -rf "$root/build"
echo "$version" >"$root/VERSION"
echo "$bin"
