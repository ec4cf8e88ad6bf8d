#!/usr/bin/env bash
# Builds the Debian package with cargo-deb, installs it with dpkg -i, checks the installed
# files (daq-engine --version, udev check, the man page, the unit, a simulated run of the
# installed demo setup) and removes the package again. Needs root (or sudo) for dpkg.
#
# `scripts/deb.sh` packages a release build (what to ship). `scripts/deb.sh --test-build`
# packages the debug build `make test` has just made instead, so CI checks the packaging
# without a second, release, build of everything (cargo-deb strips the binary either way and
# warns that a dev-profile package is not for release: it is not released).
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
profile=release
dir=release
if [ "${1:-}" = "--test-build" ]; then
    profile=dev
    dir=debug
fi
# Installed once into ~/.cargo/bin and reused; pinned so a newer cargo-deb cannot change
# what CI checks (3.8 still packages a dev build, with a warning).
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version 3.8.0
if [ "$profile" = release ]; then
    cargo build --release --locked --bin daq-engine
fi
# The man page comes from the command line's own help.
mkdir -p target/man
"target/$dir/daq-engine" man | gzip -9n > target/man/daq-engine.1.gz
deb=$(cargo deb --no-build --profile "$profile" -o target/debian/ 2>/dev/null | tail -n 1)
[ -f "$deb" ] || { echo "cargo deb made no package ($deb)" >&2; exit 1; }
echo "package: $deb"
if dpkg-query -W -f='${Status}' daq-engine 2>/dev/null | grep -q "install ok installed"; then
    echo "daq-engine is already installed from a package: not touching it" >&2
    exit 1
fi
cleanup() {
    if dpkg-query -W daq-engine >/dev/null 2>&1; then $sudo dpkg --purge daq-engine >/dev/null || true; fi
    rm -rf "$work"
}
work=$(mktemp -d)
trap cleanup EXIT
$sudo dpkg -i "$deb"
/usr/bin/daq-engine --version | grep -qx "daq-engine $(cargo pkgid | sed 's/.*[#@]//')"
/usr/bin/daq-engine udev check | tee "$work/udev.txt"
grep -q "usr/lib/udev/rules.d/70-daq-engine.rules installed by the package and current" "$work/udev.txt"
test -f /usr/lib/systemd/system/daq-engine@.service
zcat /usr/share/man/man1/daq-engine.1.gz | grep -q '^.TH daq-engine 1'
# The service's user, in the device groups.
id -nG daq-engine | tr ' ' '\n' | grep -qx plugdev
id -nG daq-engine | tr ' ' '\n' | grep -qx dialout
# A short simulated run of the installed demo setup as the service's user (not root, as the
# unit runs it), written into a scratch directory that user owns.
mkdir "$work/runs"
$sudo chown daq-engine:daq-engine "$work/runs"
chmod 755 "$work"
$sudo runuser -u daq-engine -- /usr/bin/daq-engine /usr/share/daq-engine/setups/demo.yaml \
    --simulate --no-tui --quiet --max-seconds 2 --target-directory "$work/runs"
test -f "$work"/runs/run_*/summary.json
$sudo dpkg --purge daq-engine >/dev/null
if test -e /usr/bin/daq-engine || test -e /usr/lib/udev/rules.d/70-daq-engine.rules; then
    echo "dpkg --purge left files behind" >&2
    exit 1
fi
echo "deb: built, installed, checked and removed $deb"
