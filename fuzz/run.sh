#!/usr/bin/env bash
# Runs fuzz targets one after another with the settings recorded in FUZZING.md.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      (default: 600 s; envelope wssec import_csv import_xml)
#
# Stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only flags (-Zsanitizer=address).
# Logs go to fuzz/logs/<target>-<UTC time>.log; crashes to fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(envelope wssec import_csv import_xml)
export RUSTC_BOOTSTRAP=1
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
    grep -E '^#[0-9]+\s+DONE|^stat::|SUMMARY|panicked at|Test unit written' "$log" || true
    echo "   exit $rc; corpus: $(ls fuzz/corpus/$t | wc -l) files"
done
