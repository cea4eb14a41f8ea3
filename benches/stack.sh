#!/usr/bin/env bash
# Where an unsigned answer's CPU goes beyond the bare responder, measured by taking work away:
# builds dkd with benches/fixed-answer.patch (kept out of the product) and runs ratio.sh's
# unsigned rounds three times against the bare responder:
#
#   DKD_EXP=0  dkd as it is (the patched binary takes the normal path);
#   DKD_EXP=1  every answer after the first is the first answer again: no SOAP work (parse,
#              checks, lookup, writing), but the transport, log line, metrics and audit as usual;
#   DKD_EXP=2  as 1, without the log line, the metrics and the audit record;
#   DKD_EXP=3  as 1, plus the least the fixed crates cost per answer: the request tokenized by
#              quick-xml (no checks) and one sled point get. What no dkd on these crates undercuts.
#
#   bash benches/stack.sh [--rounds 3] [--secs 5]
set -euo pipefail
cd "$(dirname "$0")/.."
git diff --quiet -- src || { echo "src/ has uncommitted changes; commit or stash them first" >&2; exit 1; }
git apply benches/fixed-answer.patch
trap 'git apply -R benches/fixed-answer.patch' EXIT
cargo build --release --bin dkd 2>&1 | tail -n 1 >&2
mkdir -p target/bench-results
cp target/release/dkd target/bench-results/dkd-fixed-answer
git apply -R benches/fixed-answer.patch
trap - EXIT
for e in ${STACK_EXPS:-0 1 3 2}; do
  echo "== DKD_EXP=$e"
  DKD_EXP=$e DKD_BIN=$PWD/target/bench-results/dkd-fixed-answer bash benches/ratio.sh --only unsigned "$@" 2>/dev/null \
    | grep -E '^\| [0-9]|^median|^\(every'
done
