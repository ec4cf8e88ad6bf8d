#!/usr/bin/env bash
# Prints each top-level module of src/ with the top-level modules it uses (`crate::X` on
# lines of code, comments left out) and exits non-zero when they form a circle (tsort finds
# it). Issue 18: the layers of ARCHITECTURE.md, from the bottom: procfs, shm, dtype, clock, fsio,
# ring, worker, run_dir, runtime, ring_bench, setup, the functions (analysis, devices,
# export, python), registry, engine, monitor, cli.
set -euo pipefail
cd "$(dirname "$0")/../src"

modules=()
for f in *.rs */; do
    m=${f%.rs}
    m=${m%/}
    case $m in lib | main) continue ;; esac
    modules+=("$m")
done
is_module() {
    local x
    for x in "${modules[@]}"; do [ "$x" = "$1" ] && return 0; done
    return 1
}

edges=""
for m in "${modules[@]}"; do
    if [ -d "$m" ]; then files=$(find "$m" -name '*.rs'); else files="$m.rs"; fi
    # Code only: drop everything from `//` on, then take every `crate::NAME` not preceded by
    # `$` (the `$crate::` of a macro) or a word character.
    deps=$(sed -E 's#//.*$##' $files |
        grep -oE '(^|[^$[:alnum:]_])crate::[a-z_0-9]+' |
        sed -E 's/.*crate:://' | sort -u || true)
    used=()
    for d in $deps; do
        if [ "$d" != "$m" ] && is_module "$d"; then
            used+=("$d")
            edges+="$d $m"$'\n'
        fi
    done
    printf '%-11s -> %s\n' "$m" "${used[*]:-}"
done

# tsort orders "used user" pairs and reports a loop on stderr, exiting 1.
if ! out=$(printf '%s' "$edges" | tsort 2>&1 >/dev/null) || [ -n "$out" ]; then
    echo "import circle between top-level modules:" >&2
    echo "$out" >&2
    exit 1
fi
echo "no import circles between top-level modules"
