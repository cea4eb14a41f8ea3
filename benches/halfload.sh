#!/usr/bin/env bash
# Issue 7's half-load latency target (p99 <= 2 ms), measured in repeated rounds. A single run's
# p99 near 2 ms moves with the VM by more than the target's margin (BENCHMARKS.md, rounds 4-6),
# so each round measures the full-load throughput of a fresh `dkd serve` (10^3 demo store) and
# then 50 % of it as an open-loop load, as run.sh does, and the bare responder (with signing: the
# signing responder) at that same rate as a control; the median over the rounds is reported.
# Latency is counted from each request's send (p99) and from its scheduled start (p99 from
# schedule, which includes the generator's own lateness: tokio's 1 ms timer and a core shared
# with the server; the control shows how much of it is not dkd's).
#
#   bash benches/halfload.sh [--rounds 5] [--secs 10] [--signing required|off]
#
# Results: target/bench-results/halfload-<timestamp>.jsonl (every run) and a summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=5 SECS=10 WARMUP=2 CONNS=32 SIGNING=required
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    --secs) SECS=$2; shift ;;
    --signing) SIGNING=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case "$SIGNING" in required) MODE=signed ;; off) MODE=unsigned ;; *) echo "--signing required|off" >&2; exit 2 ;; esac
OUT=$ROOT/target/bench-results
mkdir -p "$OUT"
RESULTS=$OUT/halfload-$(date -u +%Y%m%dT%H%M%SZ).jsonl
: > "$RESULTS"

. "$ROOT/benches/tools.sh"
build_tools
setup_tmp
CERTS=$TMP/certs

# Pre-signed requests are used once each: enough for a full-load run at the RSA ceiling.
pool_for() { awk -v r="$1" -v t="$((SECS + WARMUP))" 'BEGIN{printf "%d", r*t*1.1+500}'; }
POOL_FULL=$(pool_for 9000)

for r in $(seq "$ROUNDS"); do
  echo "== round $r/$ROUNDS" >&2
  port=$("$LOAD" free-port)
  url="https://127.0.0.1:$port/GSDDossierReintegratie-v0200"
  rm -rf "$TMP/store"
  (
    cd "$TMP"
    export DKD_OPS__LISTEN="" DKD_ADMIN__LISTEN="" DKD_SERVER__LISTEN=127.0.0.1:$port \
      DKD_TLS__CERT=$CERTS/server.pem DKD_TLS__KEY=$CERTS/server-key.pem \
      DKD_TLS__CLIENT_CA=$CERTS/ca.pem DKD_SECURITY__SIGNING=$SIGNING DKD_STORE__PATH=$TMP/store
    exec "$DKD" serve --demo > "$TMP/serve.out" 2> "$TMP/serve.log"
  ) &
  PID=$!
  "$LOAD" wait --url "$url" --certs "$CERTS" --timeout 180 > /dev/null
  pool=(); [ "$MODE" = signed ] && pool=(--pool "$POOL_FULL")
  full=$("$LOAD" run --url "$url" --certs "$CERTS" --mode "$MODE" --secs "$SECS" --warmup "$WARMUP" \
    --conns "$CONNS" "${pool[@]}" --label "full/$r" --server-pid "$PID" 2> /dev/null | tail -n 1)
  echo "$full" >> "$RESULTS"
  # At least 1/s: --rate 0 would be a closed loop.
  rate=$(echo "$full" | python3 -c 'import json,sys; print(max(1, int(json.load(sys.stdin)["rps"] / 2)))')
  [ "$MODE" = signed ] && pool=(--pool "$(pool_for "$rate")")
  "$LOAD" run --url "$url" --certs "$CERTS" --mode "$MODE" --secs "$SECS" --warmup "$WARMUP" \
    --conns "$CONNS" --rate "$rate" "${pool[@]}" --label "half/$r" --server-pid "$PID" 2> /dev/null \
    | tail -n 1 >> "$RESULTS"
  resp_bytes=$(echo "$full" | python3 -c 'import json,sys; print(json.load(sys.stdin)["resp_bytes"])')
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  # The control: the bare responder (signing: the signing responder) at the same rate, answering
  # dkd's answer size. What it shows is the generator's and the machine's share of the figures.
  sign=(); raw=raw; [ "$MODE" = signed ] && sign=(--sign 1) && raw=signed-raw
  "$LOAD" responder --certs "$CERTS" --size "$resp_bytes" "${sign[@]}" > "$TMP/responder.out" 2> /dev/null &
  PID=$!
  for _ in $(seq 200); do grep -q LISTENING "$TMP/responder.out" 2>/dev/null && break; sleep 0.05; done
  rurl="https://$(sed -n 's/LISTENING //p' "$TMP/responder.out")/GSDDossierReintegratie-v0200"
  "$LOAD" wait --url "$rurl" --certs "$CERTS" > /dev/null 2>&1 || true
  "$LOAD" run --url "$rurl" --certs "$CERTS" --mode "$raw" --secs "$SECS" --warmup "$WARMUP" \
    --conns "$CONNS" --rate "$rate" "${pool[@]}" --label "control/$r" --server-pid "$PID" 2> /dev/null \
    | tail -n 1 >> "$RESULTS"
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
done

python3 - "$RESULTS" "$SIGNING" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
full = {r["label"].split("/")[1]: r for r in runs if r["label"].startswith("full/")}
half = {r["label"].split("/")[1]: r for r in runs if r["label"].startswith("half/")}
control = {r["label"].split("/")[1]: r for r in runs if r["label"].startswith("control/")}
num = lambda v: v if isinstance(v, (int, float)) else float("nan")
print(f"| round | full load req/s | half load req/s | p50 | p99 | p99 from schedule | errors | sent > 2 ms late | responder at that rate: p99 / from schedule |  (signing {sys.argv[2]})")
print("|---|---|---|---|---|---|---|---|---|")
p99s = []
for k in sorted(half, key=int):
    h, f = half[k], full.get(k, {})
    errors = sum(h.get(e, 0) for e in ("errors_status", "errors_body", "errors_io"))
    # The p99 is from each request's send. The generator shares the two cores with the server, so
    # a request can also be sent late because the generator's own thread waited for a core: the
    # p99 from the scheduled start (no coordinated omission, but that wait included) is shown
    # beside it. A run with errors, an exhausted pool of pre-signed requests or no answers does
    # not count.
    note = " (pool exhausted)" if h.get("pool_exhausted") else ""
    p99 = num(h.get("p99_ms"))
    if not errors and not note and p99 == p99:
        p99s.append(p99)
    print(f"| {k} | {num(f.get('rps')):,.0f} | {num(h.get('rps')):,.0f} | {num(h.get('p50_ms')):.2f} ms "
          f"| {p99:.2f} ms{note} | {num(h.get('p99_sched_ms')):.2f} ms | {errors} "
          f"| {h.get('late_2ms', 0):,} of {h.get('issued', 0):,} "
          f"| {num(control.get(k, {}).get('p99_ms')):.2f} / {num(control.get(k, {}).get('p99_sched_ms')):.2f} ms |")
if p99s:
    print(f"\nmedian half-load p99: {statistics.median(p99s):.2f} ms (target <= 2 ms); "
          f"{sum(p <= 2.0 for p in p99s)} of {len(p99s)} counted rounds within it")
else:
    print("\nno round counted (errors, an exhausted pool or no answers): see the file below")
print(f"(every run: {sys.argv[1]})")
PY
