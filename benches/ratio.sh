#!/usr/bin/env bash
# The throughput ratios of issues 3 and 7, measured in alternation so that they survive the
# machine's drift. On this VM the same binary's throughput moves by up to ±25 % between runs
# minutes apart (the bare responder: 79k-109k req/s in three idle full runs), so a ratio of two
# runs taken minutes apart says more about the hypervisor than about dkd. Here each round runs
# the ceiling and dkd back to back (a few seconds apart) and the median of the per-round ratios
# is reported:
#
#   unsigned: dkd (signing off, 10^3 demo store) / the bare hyper + rustls responder
#   signed:   dkd (signing required) / raw RSA-2048 signing on 2 threads, and
#             dkd (signing required) / the signing responder (TLS + one RSA signature + one
#             RSA verification per request: the least any signed answer costs)
#
#   bash benches/ratio.sh [--rounds 5] [--secs 5] [--only unsigned|signed]
#
# Results: target/bench-results/ratio-<timestamp>.jsonl (every run) and a summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=5 SECS=5 CONNS=32 ONLY=both
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
RESULTS=$OUT/ratio-$(date -u +%Y%m%dT%H%M%SZ).jsonl
: > "$RESULTS"

. "$ROOT/benches/tools.sh"
build_tools
setup_tmp
CERTS=$TMP/certs
# Enough pre-signed requests for one signed run at the signing responder's rate.
POOL=$(( (SECS + 1) * 9000 ))

# one <label> <server command...>: starts the server, runs the load given in LOAD_ARGS, stops it.
one() {
  local label=$1 url
  shift
  "$@" > "$TMP/server.out" 2> "$TMP/server.err" &
  PID=$!
  for _ in $(seq 200); do grep -q LISTENING "$TMP/server.out" 2>/dev/null && break; sleep 0.05; done
  url="https://$(sed -n 's/LISTENING //p' "$TMP/server.out")/GSDDossierReintegratie-v0200"
  "$LOAD" wait --url "$url" --certs "$CERTS" > /dev/null 2>&1 || true
  "$LOAD" run --url "$url" --certs "$CERTS" --secs "$SECS" --warmup 1 --conns "$CONNS" \
    --label "$label" --server-pid "$PID" "${LOAD_ARGS[@]}" 2> /dev/null | tail -n 1 >> "$RESULTS"
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
}

# dkd prints no LISTENING line: a wrapper that picks the port and says it.
dkd_serve() {
  local signing=$1 port
  port=$("$LOAD" free-port)
  echo "LISTENING 127.0.0.1:$port"
  cd "$TMP"
  rm -rf "$TMP/store"
  DKD_OPS__LISTEN="" DKD_ADMIN__LISTEN="" DKD_SERVER__LISTEN=127.0.0.1:$port \
    DKD_TLS__CERT=$CERTS/server.pem DKD_TLS__KEY=$CERTS/server-key.pem \
    DKD_TLS__CLIENT_CA=$CERTS/ca.pem DKD_SECURITY__SIGNING=$signing DKD_STORE__PATH=$TMP/store \
    exec "$DKD" serve --demo
}

for r in $(seq "$ROUNDS"); do
  echo "== round $r/$ROUNDS" >&2
  if [ "$ONLY" != signed ]; then
    LOAD_ARGS=(--mode raw)
    one "ceiling/$r" "$LOAD" responder --certs "$CERTS" --size 2437
    LOAD_ARGS=(--mode unsigned)
    one "unsigned/$r" dkd_serve off
  fi
  [ "$ONLY" = unsigned ] && continue
  "$LOAD" rsa --certs "$CERTS" --threads 2 --secs 3 --label "rsa/$r" >> "$RESULTS"
  LOAD_ARGS=(--mode signed-raw --pool "$POOL")
  one "ceiling-signed/$r" "$LOAD" responder --certs "$CERTS" --size 9265 --sign 1
  LOAD_ARGS=(--mode signed --pool "$POOL")
  one "signed/$r" dkd_serve required
done

python3 - "$RESULTS" "$ROUNDS" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        d = json.loads(line)
        rows[d["label"]] = d
n = int(sys.argv[2])
def rps(l): return rows[l]["rps"] if l in rows else float("nan")
def us(l):
    d = rows.get(l)
    return d["cpu"]["server_cores"] / d["rps"] * 1e6 if d and d.get("cpu") else float("nan")
# A missing run (NaN) must not count: statistics.median orders NaN arbitrarily.
med = lambda v: statistics.median([x for x in v if x == x]) if any(x == x for x in v) else float("nan")
u, p99, s, sr, cr = [], [], [], [], []
if any(f"unsigned/{r}" in rows for r in range(1, n + 1)):
    print("| round | bare responder | dkd unsigned | ratio | full-load p99 responder / dkd |")
    print("|---|---|---|---|---|")
    for r in range(1, n + 1):
        a, b = rps(f"ceiling/{r}"), rps(f"unsigned/{r}")
        pa = rows.get(f"ceiling/{r}", {}).get("p99_ms") or float("nan")
        pb = rows.get(f"unsigned/{r}", {}).get("p99_ms") or float("nan")
        u.append(b / a)
        p99.append(pb / pa)
        print(f"| {r} | {a:,.0f} ({us(f'ceiling/{r}'):.1f} µs) | {b:,.0f} ({us(f'unsigned/{r}'):.1f} µs) "
              f"| {b/a:.0%} | {pa:.2f} / {pb:.2f} ms ({pb/pa:.2f}×) |")
    print()
    print(f"median: unsigned {med(u):.0%} of the bare responder (target 75 %); "
          f"full-load p99 {med(p99):.2f}× the responder's (target 1.5×)")
if any(f"signed/{r}" in rows for r in range(1, n + 1)):
    print("| round | RSA 2 threads | signing responder | dkd signed | / RSA | / signing responder |")
    print("|---|---|---|---|---|---|")
    for r in range(1, n + 1):
        c, d, e = rps(f"rsa/{r}"), rps(f"ceiling-signed/{r}"), rps(f"signed/{r}")
        s.append(e / c); sr.append(e / d); cr.append(d / c)
        print(f"| {r} | {c:,.0f} | {d:,.0f} ({d/c:.0%}) | {e:,.0f} ({us(f'signed/{r}'):.0f} µs) | {e/c:.0%} | {e/d:.0%} |")
    print()
    print(f"median: signed {med(s):.0%} of the RSA ceiling (target 80 %), "
          f"{med(sr):.0%} of the signing responder, which reaches {med(cr):.0%} of the RSA ceiling")
print("(µs: the server's CPU per answer)")
EOF
echo "(every run: ${RESULTS#"$ROOT"/})"
