#!/usr/bin/env bash
# Issue 19's routed-IB side-by-side: signed GSDReintegratieInfo questions to an IB whose
# verwijsindex holds ENTRIES BSN × cluster entries over GEMEENTEN gemeenten, on sled and on
# PostgreSQL in alternation, each question routed to the emulated gemeente holding the BSN and
# answered with its ClientSuwi. Per run: throughput, p50/p99 at full load, CPU per answer of the
# IB + postgres, then p99 at half of that load; the IB's start-up time on each store.
#
#   bash benches/ib.sh [--rounds 3] [--secs 5] [--entries 2000000] [--gemeenten 340]
#
# Processes: the IB is `dkd serve` (role ib) alone in its process, so its CPU is the IB's only;
# the gemeenten are `dkd demo --gemeenten`'s code (chain::demo::bind_many) in one other process
# (load ib-gemeenten), started once and shared by both stores; their CPU is reported beside, not
# in the target's figure (in `dkd demo` they share the IB's process, which would add their
# verification and signing of every routed question to the IB's cost).
# The store: built once on sled through Store::ib_apply (load build-ib-store, cached in
# target/bench-ib-store-ENTRIES-GEMEENTEN), copied for the run (the cache stays as built), and
# into PostgreSQL with `dkd store copy` (timed: the copy is a result too). PostgreSQL is a
# throw-away cluster with fsync ON. Results: target/bench-results/ib-<timestamp>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=3 SECS=5 WARMUP=1 CONNS=32 ENTRIES=2000000 GEMEENTEN=340
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    --secs) SECS=$2; shift ;;
    --entries) ENTRIES=$2; shift ;;
    --gemeenten) GEMEENTEN=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
OUT=$ROOT/target/bench-results
mkdir -p "$OUT"
RESULTS=$OUT/ib-$(date -u +%Y%m%dT%H%M%SZ).jsonl
: > "$RESULTS"

. "$ROOT/benches/tools.sh"
build_tools
TMP=$(mktemp -d)
PIDS=() GPID=""
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
PGDIR=$(mktemp -d /tmp/dkd-bench-pg.XXXXXX)
stop_gemeenten() {
  [ -z "$GPID" ] && return 0
  kill "$GPID" 2>/dev/null || true
  wait "$GPID" 2>/dev/null || true
  GPID=""
}
# Every step `|| true`: under set -e a killed child's status would end the trap before the
# cluster is stopped.
trap 'stop_all; stop_gemeenten; bash "$ROOT/.ci/pg-cluster.sh" stop "$PGDIR" || true; rm -rf "$TMP" "$PGDIR"' EXIT
"$DKD" certs --dir "$TMP/certs" > /dev/null
CERTS=$TMP/certs
now_ms() { date +%s%3N; }

# The store: built (or found) on sled, then a working copy for sled and a copy into PostgreSQL.
CACHE=$ROOT/target/bench-ib-store-$ENTRIES-$GEMEENTEN
"$LOAD" build-ib-store --to "$CACHE" --entries "$ENTRIES" --gemeenten "$GEMEENTEN" >> "$RESULTS"
cp -a "$CACHE" "$TMP/ib.sled"
PG=$(PG_FSYNC=on bash "$ROOT/.ci/pg-cluster.sh" start "$PGDIR")
PG_BASE=${PG%/*}
psql -q "$PG" -c "CREATE DATABASE ib" > /dev/null
t0=$(now_ms)
"$DKD" store copy --from "$TMP/ib.sled" --to "$PG_BASE/ib" > "$TMP/copy.out" 2>&1 \
  || { cat "$TMP/copy.out" >&2; exit 1; }
printf '{"label":"copy/pg","ms":%s,"entries":%s}\n' "$(($(now_ms) - t0))" "$ENTRIES" >> "$RESULTS"

# The gemeenten, once for all runs; they write the IB's configuration when their pushes are done.
t0=$(now_ms)
"$LOAD" ib-gemeenten --n "$GEMEENTEN" --certs "$CERTS" --dir "$TMP/gemeenten" --config "$TMP/ib.toml" \
  > "$TMP/gemeenten.out" 2> "$TMP/gemeenten.log" &
GPID=$!
for _ in $(seq 1200); do
  grep -q READY "$TMP/gemeenten.out" 2>/dev/null && break
  kill -0 "$GPID" 2>/dev/null || { tail -n 20 "$TMP/gemeenten.log" >&2; exit 1; }
  sleep 0.5
done
grep -q READY "$TMP/gemeenten.out" || { echo "the gemeenten did not start within 600 s" >&2; exit 1; }
printf '{"label":"gemeenten-ready","ms":%s,"gemeenten":%s}\n' "$(($(now_ms) - t0))" "$GEMEENTEN" >> "$RESULTS"

pool_for() { awk -v r="$1" -v t="$((SECS + WARMUP))" 'BEGIN{printf "%d", r*t*1.1+500}'; }
POOL_FULL=$(pool_for 2000)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

# serve <label> <store: sled|URL>: the IB alone (`dkd serve`, role ib); prints nothing, records its start-up.
serve() {
  local label=$1 store=$2 port ms
  port=$("$LOAD" free-port)
  URL="https://127.0.0.1:$port/GSDDossierReintegratie-v0200"
  (
    cd "$TMP"
    export DKD_OPS__LISTEN="" DKD_ADMIN__LISTEN="" DKD_SERVER__LISTEN=127.0.0.1:$port \
      DKD_TLS__CERT=$CERTS/server.pem DKD_TLS__KEY=$CERTS/server-key.pem \
      DKD_TLS__CLIENT_CA=$CERTS/ca.pem DKD_SECURITY__SIGNING=required
    if [ "$store" = sled ]; then export DKD_STORE__PATH=$TMP/ib.sled; else export DKD_STORE__URL=$store; fi
    exec "$DKD" serve --config "$TMP/ib.toml" > "$TMP/$label.out" 2> "$TMP/$label.log"
  ) &
  PIDS+=($!)
  ms=$("$LOAD" wait --url "$URL" --certs "$CERTS" --timeout 600) || { tail -n 20 "$TMP/$label.log" >&2; exit 1; }
  printf '{"label":"startup/%s","ms":%s}\n' "$label" "$ms" >> "$RESULTS"
}

# one <kind> <label> <pids> [--rate R ...]: one load run, with the gemeenten' CPU over the same window.
one() {
  local kind=$1 label=$2 pids=$3 g0 g1 t0 t1 line
  shift 3
  g0=$(ticks "$GPID") t0=$(now_ms)
  line=$("$LOAD" run --url "$URL" --certs "$CERTS" --mode signed --store "ib:$GEMEENTEN" --secs "$SECS" \
    --warmup "$WARMUP" --conns "$CONNS" --label "$kind/$label" --server-pid "$pids" "$@" 2> "$TMP/load.err" | tail -n 1) \
    || { cat "$TMP/load.err" >&2; exit 1; }
  g1=$(ticks "$GPID") t1=$(now_ms)
  echo "$line" >> "$RESULTS"
  # Signing the pool comes before the window: the ratio over the whole call is a lower bound
  # of the gemeenten' share while the clock runs.
  printf '{"label":"gemeenten/%s/%s","cores":%s}\n' "$kind" "$label" \
    "$(awk -v d="$((g1 - g0))" -v hz="$HZ" -v ms="$((t1 - t0))" 'BEGIN{printf "%.4f", d/hz/(ms/1000)}')" >> "$RESULTS"
  LAST=$line
}

measure() {
  local label=$1 pids rate
  # Every pool connection (and its postgres backend) exists before the pids are read.
  "$LOAD" run --url "$URL" --certs "$CERTS" --mode signed --store "ib:$GEMEENTEN" --secs 1 --warmup 0 \
    --conns "$CONNS" --pool 1000 --label warm > /dev/null 2>&1 || true
  pids=$(IFS=,; echo "${PIDS[*]}")
  if [ "$label" != "${label#pg}" ]; then
    local pm
    pm=$(head -n1 "$PGDIR/data/postmaster.pid")
    pids="$pids,$pm,$(pgrep -d, -P "$pm" || true)"
  fi
  one full "$label" "$pids" --pool "$POOL_FULL"
  rate=$(echo "$LAST" | python3 -c 'import json,sys; print(max(1, int(json.load(sys.stdin)["rps"] / 2)))')
  one half "$label" "$pids" --rate "$rate" --pool "$(pool_for "$rate")"
}

for r in $(seq "$ROUNDS"); do
  echo "== round $r/$ROUNDS" >&2
  for setup in sled pg; do
    if [ "$setup" = sled ]; then serve "$setup-$r" sled; else serve "$setup-$r" "$PG_BASE/ib"; fi
    measure "$setup/$r"
    stop_all
  done
done

stop_gemeenten
python3 - "$RESULTS" "$ROUNDS" "$ENTRIES" "$GEMEENTEN" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        d = json.loads(line)
        rows[d["label"]] = d
n, entries, gemeenten = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
nan = float("nan")
med = lambda v: statistics.median([x for x in v if x == x]) if any(x == x for x in v) else nan
def get(kind, label, key):
    d = rows.get(f"{kind}/{label}")
    if not d: return nan
    if key == "us":
        return d["cpu"]["server_cores"] / d["rps"] * 1e6 if d.get("cpu") and d["rps"] else nan
    if key == "gem_us":
        g = rows.get(f"gemeenten/{kind}/{label}")
        return g["cores"] / d["rps"] * 1e6 if g and d["rps"] else nan
    v = d.get(key)
    return v if isinstance(v, (int, float)) else nan
print(f"Routed IB questions: {entries:,} BSN × cluster entries over {gemeenten} gemeenten, signed\n")
print("| store | req/s | p50 | p99 | CPU per answer (IB + postgres) | gemeenten CPU per answer | half-load p99 | errors | IB start-up |")
print("|---|---|---|---|---|---|---|---|---|")
base = None
for setup, name in (("sled", "sled"), ("pg", "PostgreSQL")):
    labels = [f"{setup}/{r}" for r in range(1, n + 1)]
    if not any(f"full/{l}" in rows for l in labels):
        continue
    us = med([get("full", l, "us") for l in labels])
    errs = sum(int(v) for k in ("full", "half") for l in labels
               for e in ("errors_status", "errors_body", "errors_io") for v in [get(k, l, e)] if v == v)
    start = med([rows.get(f"startup/{setup}-{r}", {}).get("ms", nan) for r in range(1, n + 1)])
    if setup == "sled": base = us
    rel = f" ({us / base:.2f}× sled)" if base and setup != "sled" else ""
    print(f"| {name} | {med([get('full', l, 'rps') for l in labels]):,.0f} | {med([get('full', l, 'p50_ms') for l in labels]):.2f} ms "
          f"| {med([get('full', l, 'p99_ms') for l in labels]):.2f} ms | {us:.0f} µs{rel} "
          f"| ≥ {med([get('full', l, 'gem_us') for l in labels]):.0f} µs "
          f"| {med([get('half', l, 'p99_ms') for l in labels]):.2f} ms | {errs} | {start:.0f} ms |")
b = rows.get("build-ib-store", {})
print(f"\nstore: built on sled through Store::ib_apply in {b.get('secs', nan):.1f} s" if not b.get("cached")
      else "\nstore: the cached sled build (target/bench-ib-store-*)", end="")
print(f"; `dkd store copy` to PostgreSQL in {rows.get('copy/pg', {}).get('ms', nan) / 1000:.1f} s; "
      f"gemeenten ready in {rows.get('gemeenten-ready', {}).get('ms', nan) / 1000:.1f} s")
print(f"(medians over {n} rounds; targets: PostgreSQL within 2× sled's CPU per answer, half-load p99 <= 5 ms)")
EOF
echo "(every run: ${RESULTS#"$ROOT"/})"
