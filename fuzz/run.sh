#!/usr/bin/env bash
# Runs fuzz targets one after another with the settings recorded in FUZZING.md.
#
#   fuzz/run.sh [SECONDS] [TARGET...]   fuzz each target in turn (default: 600 s; all eight targets)
#   fuzz/run.sh check                   run every seed and every fuzz/regressions/<target>/ input
#                                       once; exit 1 if any of them fails
#
# Stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only flags (-Zsanitizer=address).
# Logs go to fuzz/logs/<target>-<UTC time>.log; crashes to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(envelope wssec dsig_diff import_csv import_xml xml_diff verwijsindex)
export RUSTC_BOOTSTRAP=1
if [ "${1:-}" = check ]; then
    cargo fuzz build -O -a
    failed=0
    for t in "${all[@]}"; do
        for f in fuzz/corpus/$t/seed-* fuzz/regressions/$t/*; do
            [ -f "$f" ] || continue
            if ! fuzz/target/x86_64-unknown-linux-gnu/release/$t "$f" >/dev/null 2>&1; then
                echo "FAIL $t $f"
                failed=1
            fi
        done
    done
    exit $failed
fi
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
mkdir -p fuzz/logs
cargo fuzz build -O -a
for t in "${targets[@]}"; do
    case $t in
        import_csv) dict=fuzz/dict/csv.dict ;;
        *) dict=fuzz/dict/xml.dict ;;
    esac
    log=fuzz/logs/$t-$(date -u +%Y%m%dT%H%M%SZ).log
    echo "== $t for ${secs}s -> $log"
    set +e
    nice -n 10 cargo fuzz run -O -a "$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
        -dict="$dict" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    grep -aE '^#[0-9]+\s+DONE|^stat::|SUMMARY|panicked at|Test unit written' "$log" || true
    echo "   exit $rc; corpus: $(ls fuzz/corpus/$t | wc -l) files"
done
