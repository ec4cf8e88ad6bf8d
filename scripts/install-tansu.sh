#!/usr/bin/env bash
# Installs the Kafka-protocol broker the Kafka tests run against: tansu 0.6.0 (Rust, no Java),
# built once into a directory outside the clone and reused by every later run.
#   * `--no-default-features --features dynostore,libsql`: `dynostore` gives the in-memory
#     storage engine (`--storage-engine memory://…`), which most tests use; `libsql` gives the
#     SQLite engine (`sqlite://…`), whose topics, records, committed offsets and idempotent
#     producers' state survive a SIGKILL — the broker-restart test needs it (an in-memory broker
#     comes back empty, so a restart could not be tested honestly). Neither is a default
#     feature; the defaults (PostgreSQL, S3, …) are not needed and only lengthen the build.
#   * The build takes 9–45 minutes on 2 cores, so it only runs when the binary is missing or
#     was built with another version (the VERSION file) or feature set (the FEATURES file; a
#     binary from before the SQLite engine has none, so it is built again once). The version
#     and the features are in two files so that an older copy of this script, which compares
#     VERSION with "0.6.0" alone, keeps using the newer binary instead of rebuilding it.
# Prints the path of the binary. Override the directory with DAQ_TANSU_ROOT.
set -euo pipefail
root=${DAQ_TANSU_ROOT:-/var/cache/daq-engine/tansu}
version=0.6.0
features=dynostore,libsql
bin="$root/bin/tansu"
if [ -x "$bin" ] && [ "$(cat "$root/VERSION" 2>/dev/null)" = "$version" ] &&
    [ "$(cat "$root/FEATURES" 2>/dev/null)" = "$features" ]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$root"
echo "building tansu $version ($features) into $root (once; 9–45 minutes on 2 cores)" >&2
# The build directory lives beside the binary, so an interrupted build resumes where it stopped.
CARGO_TARGET_DIR="$root/build" cargo install tansu --version "$version" --locked --force \
    --no-default-features --features "$features" --root "$root" >&2
rm -rf "$root/build"
echo "$version" >"$root/VERSION"
echo "$features" >"$root/FEATURES"
echo "$bin"
