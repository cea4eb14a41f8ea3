#!/usr/bin/env bash
# Issue 19's side-by-side: GSDReintegratieInfo on sled, on PostgreSQL with one instance, and on
# PostgreSQL with two instances serving one public URL (the load spreads its connections over
# both, as HAProxy would), signed (2W-be-S, the production path) and unsigned, in alternation so
# that the comparison survives the VM's drift. Per run: throughput, p50/p99 at full load, CPU per
# answer of dkd + postgres together, then p99 at half of that load; and the start-up time of each.
#
#   bash benches/pg.sh [--rounds 3] [--secs 5] [--only signed|unsigned]
#
# PostgreSQL is a throw-away cluster (.ci/pg-cluster.sh) with fsync ON: unlike the tests' cluster,
# a commit here costs what it costs on a gemeente's server. Results:
# target/bench-results/pg-<timestamp>.jsonl (every run) and a summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=3 SECS=5 WARMUP=1 CONNS=32 ONLY=both
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift ;;
    --secs) SECS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
OUT=$ROOT/target/bench-results
mkdir -p "$OUT"
RESULTS=$OUT/pg-$(date -u +%Y%m%dT%H%M%SZ).jsonl
: > "$RESULTS"

. "$ROOT/benches/tools.sh"
build_tools
TMP=$(mktemp -d)
PIDS=()
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
# Beside TMP, not in it: the cluster runs as an unprivileged user, who cannot enter TMP (0700).
PGDIR=$(mktemp -d /tmp/dkd-bench-pg.XXXXXX)
trap 'stop_all; bash "$ROOT/.ci/pg-cluster.sh" stop "$PGDIR"; rm -rf "$TMP" "$PGDIR"' EXIT
"$DKD" certs --dir "$TMP/certs" > /dev/null
CERTS=$TMP/certs
PG=$(PG_FSYNC=on bash "$ROOT/.ci/pg-cluster.sh" start "$PGDIR")
PG_BASE=${PG%/*}
pool_for() { awk -v r="$1" -v t="$((SECS + WARMUP))" 'BEGIN{printf "%d", r*t*1.1+500}'; }
POOL_FULL=$(pool_for 4000)

# serve <label> <signing> <store: sled|URL> <public URL>: one `dkd serve --demo`; prints its start-up ms.
serve() {
  local label=$1 signing=$2 store=$3 public=$4 port ms
  port=$("$LOAD" free-port)
  (
    cd "$TMP"
    export DKD_OPS__LISTEN="" DKD_ADMIN__LISTEN="" DKD_SERVER__LISTEN=127.0.0.1:$port \
      DKD_SERVER__PUBLIC_URL=$public \
      DKD_TLS__CERT=$CERTS/server.pem DKD_TLS__KEY=$CERTS/server-key.pem \
      DKD_TLS__CLIENT_CA=$CERTS/ca.pem DKD_SECURITY__SIGNING=$signing
    if [ "$store" = sled ]; then export DKD_STORE__PATH=$TMP/store; else export DKD_STORE__URL=$store; fi
    exec "$DKD" serve --demo > "$TMP/$label.out" 2> "$TMP/$label.log"
  ) &
  PIDS+=($!)
  ms=$("$LOAD" wait --url "https://127.0.0.1:$port/GSDDossierReintegratie-v0200" --certs "$CERTS" --timeout 120)
  ADDRS+=("127.0.0.1:$port")
  printf '{"label":"startup/%s","ms":%s}\n' "$label" "$ms" >> "$RESULTS"
}

# measure <label> <mode> <instances>: full load, then half of it, against the servers in ADDRS.
measure() {
  local label=$1 mode=$2 public=$3 connect pids full rate pool=()
  connect=$(IFS=,; echo "${ADDRS[*]}")
  # A short load first, so that every pool connection (and its postgres backend) exists before
  # the pids are read: a backend started during the timed run would not be counted.
  [ "$mode" = signed ] && pool=(--pool 2000)
  "$LOAD" run --url "$public" --connect "$connect" --certs "$CERTS" --mode "$mode" --secs 1 --warmup 0 \
    --conns "$CONNS" "${pool[@]}" --label warm > /dev/null 2>&1 || true
  pids=$(IFS=,; echo "${PIDS[*]}")
  if [ -n "${PGDATA_PIDS:-}" ]; then
    # The postmaster and all its children: the backends, and the WAL writer whose fsyncs a commit waits for.
    local pm
    pm=$(head -n1 "$PGDIR/data/postmaster.pid")
    pids="$pids,$pm,$(pgrep -d, -P "$pm" || true)"
  fi
  [ "$mode" = signed ] && pool=(--pool "$POOL_FULL")
  full=$("$LOAD" run --url "$public" --connect "$connect" --certs "$CERTS" --mode "$mode" --secs "$SECS" \
    --warmup "$WARMUP" --conns "$CONNS" "${pool[@]}" --label "full/$label" --server-pid "$pids" 2> /dev/null | tail -n 1)
  echo "$full" >> "$RESULTS"
  rate=$(echo "$full" | python3 -c 'import json,sys; print(max(1, int(json.load(sys.stdin)["rps"] / 2)))')
  [ "$mode" = signed ] && pool=(--pool "$(pool_for "$rate")")
  "$LOAD" run --url "$public" --connect "$connect" --certs "$CERTS" --mode "$mode" --secs "$SECS" \
    --warmup "$WARMUP" --conns "$CONNS" --rate "$rate" "${pool[@]}" --label "half/$label" \
    --server-pid "$pids" 2> /dev/null | tail -n 1 >> "$RESULTS"
}

for r in $(seq "$ROUNDS"); do
  echo "== round $r/$ROUNDS" >&2
  for mode in signed unsigned; do
    [ "$ONLY" != both ] && [ "$ONLY" != "$mode" ] && continue
    signing=required; [ "$mode" = unsigned ] && signing=off
    for setup in sled pg1 pg2; do
      ADDRS=() PGDATA_PIDS=""
      db=b${r}_${mode}_$setup
      public_port=$("$LOAD" free-port)
      public="https://127.0.0.1:$public_port/GSDDossierReintegratie-v0200"
      case $setup in
        sled)
          rm -rf "$TMP/store"
          serve "$setup-$mode-$r" "$signing" sled "$public" ;;
        pg1|pg2)
          PGDATA_PIDS=1
          psql -q "$PG" -c "CREATE DATABASE $db" > /dev/null
          serve "$setup-$mode-$r" "$signing" "$PG_BASE/$db" "$public"
          # The second instance finds the demo set loaded by the first.
          [ "$setup" = pg2 ] && serve "$setup-b-$mode-$r" "$signing" "$PG_BASE/$db" "$public" ;;
      esac
      # The public URL is the balancer's; with one instance, connect to it directly.
      measure "$setup-$mode/$r" "$mode" "$public"
      stop_all
    done
  done
done

python3 - "$RESULTS" "$ROUNDS" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        d = json.loads(line)
        rows[d["label"]] = d
n = int(sys.argv[2])
med = lambda v: statistics.median([x for x in v if x == x]) if any(x == x for x in v) else float("nan")
def get(kind, label, key):
    d = rows.get(f"{kind}/{label}")
    if not d: return float("nan")
    if key == "us":
        return d["cpu"]["server_cores"] / d["rps"] * 1e6 if d.get("cpu") and d["rps"] else float("nan")
    v = d.get(key)
    return v if isinstance(v, (int, float)) else float("nan")
print("| path | store | req/s | p50 | p99 | CPU per answer (dkd + postgres) | half-load p99 | errors | start-up |")
print("|---|---|---|---|---|---|---|---|---|")
for mode in ("signed", "unsigned"):
    base = None
    for setup, name in (("sled", "sled"), ("pg1", "PostgreSQL, 1 instance"), ("pg2", "PostgreSQL, 2 instances")):
        labels = [f"{setup}-{mode}/{r}" for r in range(1, n + 1)]
        if not any(f"full/{l}" in rows for l in labels):
            continue
        rps = med([get("full", l, "rps") for l in labels])
        us = med([get("full", l, "us") for l in labels])
        errs = sum(int(get(k, l, e) or 0) for k in ("full", "half") for l in labels
                   for e in ("errors_status", "errors_body", "errors_io") if get(k, l, e) == get(k, l, e))
        start = med([rows.get(f"startup/{setup}-{mode}-{r}", {}).get("ms", float("nan")) for r in range(1, n + 1)])
        if setup == "sled": base = us
        rel = f" ({us / base:.2f}× sled)" if base and setup != "sled" else ""
        print(f"| {mode} | {name} | {rps:,.0f} | {med([get('full', l, 'p50_ms') for l in labels]):.2f} ms "
              f"| {med([get('full', l, 'p99_ms') for l in labels]):.2f} ms | {us:.0f} µs{rel} "
              f"| {med([get('half', l, 'p99_ms') for l in labels]):.2f} ms | {errs} | {start:.0f} ms |")
print(f"\n(medians over {n} rounds; targets: PostgreSQL within 2× sled's CPU per answer, half-load p99 <= 5 ms)")
EOF
echo "(every run: ${RESULTS#"$ROOT"/})"
