#!/usr/bin/env bash
# Import benchmark (issue 4): ~1,000,000 CSV rows (500,000 synthetic persons from `dkd demo-file`)
# into an empty store, then the same file again (idempotent: nothing changes), and a dry run.
# Prints the summary lines, peak RSS, CPU time and the load average before each run (the machine
# is shared: compare CPU seconds when the load is not ~0). Usage: benches/import.sh [PERSONS]
set -euo pipefail
cd "$(dirname "$0")/.."
persons="${1:-500000}"
cargo build --release --quiet
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
bin="$PWD/target/release/dkd"
cd "$work"
"$bin" demo-file --persons "$persons" --out big.csv >/dev/null
echo "file: $(wc -l < big.csv) lines ($(( $(wc -l < big.csv) - 1 )) rows), $(du -h big.csv | cut -f1)"
run() {
    echo "  load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    /usr/bin/time -f "  peak RSS %M KB, wall %e s, CPU %U s user + %S s sys" "$bin" "$@" 2>&1 | grep -v '^$'
}
export DKD_STORE__PATH="$work/store"
echo "dry run (read, validate, compare; nothing written):"
run import big.csv --dry-run
echo "first import (empty store):"
run import big.csv
echo "same file again (nothing changes):"
run import big.csv
echo "about half the persons changed (every trial placement renamed; the undo journal holds old values):"
sed 's/Proefplaatsing loonwaardebepaling/Proefplaatsing/' big.csv > changed.csv
run import changed.csv
