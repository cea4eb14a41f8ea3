#!/usr/bin/env bash
# Import benchmark (issues 4 and 19): ~1,000,000 CSV rows (500,000 synthetic persons from
# `dkd demo-file`) into an empty store, then the same file again (idempotent: nothing changes), a
# copy with about half the persons changed, and a dry run; on sled and on PostgreSQL, one after the
# other in the same run. Prints the summary lines, peak RSS of dkd (not of the PostgreSQL server),
# CPU time and the load average before each run (the machine is shared: compare CPU seconds when
# the load is not ~0).
#   Usage: benches/import.sh [PERSONS]
#   DKD_BENCH_BACKENDS  "sled pg" (default), "sled" or "pg"
#   DKD_BENCH_PG_URL    the PostgreSQL server (a schema of its own is created and dropped);
#                       default: a throw-away cluster from .ci/pg-cluster.sh (fsync off)
#   DKD_BENCH_BIN       a dkd binary to measure instead of building this checkout (a "before")
set -euo pipefail
cd "$(dirname "$0")/.."
persons="${1:-500000}"
backends="${DKD_BENCH_BACKENDS:-sled pg}"
if [ -n "${DKD_BENCH_BIN:-}" ]; then
    bin="$(realpath "$DKD_BENCH_BIN")"
else
    cargo build --release --quiet
    bin="$PWD/target/release/dkd"
fi
ci="$PWD/.ci"
work="$(mktemp -d)"
pg_dir="" pg_url="" schema="dkd_bench_$$"
cleanup() {
    if [ -n "$pg_url" ]; then psql -q "$pg_url" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; fi
    if [ -n "$pg_dir" ]; then (cd / && bash "$ci/pg-cluster.sh" stop "$pg_dir"); rm -rf "$pg_dir"; fi
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
"$bin" demo-file --persons "$persons" --out big.csv >/dev/null
sed 's/Proefplaatsing loonwaardebepaling/Proefplaatsing/' big.csv > changed.csv
echo "file: $(wc -l < big.csv) lines ($(( $(wc -l < big.csv) - 1 )) rows), $(du -h big.csv | cut -f1)"
run() {
    echo "  load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    /usr/bin/time -f "  peak RSS %M KB, wall %e s, CPU %U s user + %S s sys" "$bin" "$@" 2>&1 | grep -v '^$'
}
for backend in $backends; do
    case $backend in
    sled)
        unset DKD_STORE__URL
        export DKD_STORE__PATH="$work/store"
        ;;
    pg)
        unset DKD_STORE__PATH
        if [ -z "$pg_url" ]; then
            if [ -n "${DKD_BENCH_PG_URL:-}" ]; then
                pg_url="$DKD_BENCH_PG_URL"
            else
                # Outside $work: the cluster may run as another user (pg-cluster.sh as root).
                pg_dir="$(mktemp -d /tmp/dkd-bench-pg.XXXXXX)"
                pg_url="$(cd / && bash "$ci/pg-cluster.sh" start "$pg_dir")"
            fi
        fi
        PGOPTIONS=--client-min-messages=warning psql -q "$pg_url" \
            -c "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" >/dev/null
        sep='?'
        case $pg_url in *\?*) sep='&' ;; esac
        export DKD_STORE__URL="$pg_url${sep}options=-csearch_path%3D$schema"
        "$bin" store migrate >/dev/null
        ;;
    *)
        echo "unknown backend $backend (sled, pg)" >&2
        exit 2
        ;;
    esac
    echo "== $backend"
    echo "dry run (read, validate, compare; nothing written):"
    run import big.csv --dry-run
    echo "first import (empty store):"
    run import big.csv
    echo "same file again (nothing changes):"
    run import big.csv
    echo "about half the persons changed (every trial placement renamed):"
    run import changed.csv
done
