#!/usr/bin/env bash
# dkd soak: the release `dkd serve` under a steady 80 % of its measured full-load capacity for a
# long time (10 minutes by default), sampling the server's RSS (VmRSS from /proc), open file
# descriptors and threads every 10 s, and counting errors (non-200, no ClientSuwi in the body,
# connection errors, no answer within 30 s). Results: target/bench-results/soak-<UTC time>/
# (soak-<signing>.csv, one row per sample; capacity-<signing>.json and soak-<signing>.json, the
# summaries; summary.md; the server's log).
#
#   bash benches/soak.sh                          # signing required and off, 10 minutes each
#   bash benches/soak.sh --signing required       # one of them
#   bash benches/soak.sh --minutes 2 --rate 500   # a fixed rate instead of 80 % of capacity
#
# Options: --minutes M (10), --signing required|off|both (both), --rate R (skip the capacity run),
#          --fraction F (0.8), --capacity-secs S (20), --conns N (32), --signers N (2, client
#          threads signing requests during the run), --sample S (10)
# See BENCHMARKS.md, "Soak", for what the figures mean.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MINUTES=10 SIGNING=both RATE="" FRACTION=0.8 CAP_SECS=20 CONNS=32 SIGNERS=2 SAMPLE=10
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES=$2; shift ;;
    --signing) SIGNING=$2; shift ;;
    --rate) RATE=$2; shift ;;
    --fraction) FRACTION=$2; shift ;;
    --capacity-secs) CAP_SECS=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --signers) SIGNERS=$2; shift ;;
    --sample) SAMPLE=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case "$SIGNING" in
  both) MODES=(required off) ;;
  required|off) MODES=("$SIGNING") ;;
  *) echo "--signing must be required, off or both" >&2; exit 2 ;;
esac
SECS=$(awk -v m="$MINUTES" 'BEGIN{printf "%d", m*60}')

OUT=$ROOT/target/bench-results/soak-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
TMP=$(mktemp -d)
DKD_PID=""
cleanup() {
  [ -n "$DKD_PID" ] && kill "$DKD_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

log() { echo "== $*" >&2; }

{
  echo "date (UTC): $(date -u '+%Y-%m-%d %H:%M:%S')"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo ' (+ uncommitted changes in src/)')"
  echo "nproc: $(nproc), memory: $(free -m | awk '/^Mem:/{print $2}') MiB, kernel $(uname -r)"
  echo "command: benches/soak.sh --minutes $MINUTES --signing $SIGNING${RATE:+ --rate $RATE} --fraction $FRACTION --conns $CONNS --signers $SIGNERS"
  echo "uptime before: $(uptime)"
} | tee "$OUT/machine.txt" >&2

log "building (release)"
. "$ROOT/benches/tools.sh"
build_tools
"$DKD" certs --dir "$TMP/certs" > /dev/null
CERTS=$TMP/certs

# As in run.sh: `dkd serve --demo` (1,200 persons) in a temporary directory, one fresh store per
# start, ops and admin listeners off.
# start_dkd <signing> <label>
start_dkd() {
  local signing=$1 label=$2 port
  port=$("$LOAD" free-port)
  URL="https://127.0.0.1:$port/GSDDossierReintegratie-v0200"
  rm -rf "$TMP/store"
  (
    cd "$TMP"
    export DKD_OPS__LISTEN="" DKD_ADMIN__LISTEN="" DKD_LOG__FORMAT=json
    export DKD_SERVER__LISTEN=127.0.0.1:$port DKD_TLS__CERT=$CERTS/server.pem \
      DKD_TLS__KEY=$CERTS/server-key.pem DKD_TLS__CLIENT_CA=$CERTS/ca.pem \
      DKD_SECURITY__SIGNING=$signing DKD_STORE__PATH=$TMP/store
    exec "$DKD" serve --demo > "$OUT/serve-$label.out" 2> "$OUT/serve-$label.log.full"
  ) &
  DKD_PID=$!
  "$LOAD" wait --url "$URL" --certs "$CERTS" --timeout 180 > /dev/null
}

# stop_dkd <label>
stop_dkd() {
  kill "$DKD_PID" 2>/dev/null || true
  wait "$DKD_PID" 2>/dev/null || true
  DKD_PID=""
  # One info line per request is hundreds of MB over 10 minutes: keep the start, the end and
  # everything that is not an ordinary answer.
  local full=$OUT/serve-$1.log.full
  {
    head -n 20 "$full"
    echo "... ($(wc -l < "$full") lines; lines other than outcome found/not_found follow) ..."
    tail -n +21 "$full" | grep -v -E '"outcome":"(found|not_found)"' | head -n 2000
    echo "... last lines ..."
    tail -n 20 "$full"
  } > "$OUT/serve-$1.log"
  rm -f "$full"
}

json() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<< "$1" | tr -d '"'; }

{
  echo '```'
  cat "$OUT/machine.txt"
  echo '```'
  echo
  echo "| signing | rate (target) | answered | req/s | errors (status/body/io) | late >2 ms | RSS start → max → end (MiB) | RSS slope, 2nd half (MiB/min) | fds max | p99 of intervals (ms) | other cores |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
} > "$OUT/summary.md"

for mode in "${MODES[@]}"; do
  lmode=signed; [ "$mode" = off ] && lmode=unsigned
  rate=$RATE
  if [ -z "$rate" ]; then
    start_dkd "$mode" "$mode-capacity"
    log "capacity, signing $mode: closed loop, $CONNS connections, ${CAP_SECS} s"
    cap=$("$LOAD" soak --url "$URL" --certs "$CERTS" --mode "$lmode" --secs "$CAP_SECS" --warmup 3 \
      --rate 0 --conns "$CONNS" --signers "$SIGNERS" --sample 5 --server-pid "$DKD_PID" \
      --csv "$OUT/capacity-$mode.csv" --label "capacity-$mode" 2>> "$OUT/load.log" | tail -n 1)
    echo "$cap" > "$OUT/capacity-$mode.json"
    rate=$(awk -v r="$(json "$cap" rps)" -v f="$FRACTION" 'BEGIN{printf "%d", r*f}')
    log "  capacity $(json "$cap" rps) req/s -> soak at $rate req/s"
    stop_dkd "$mode-capacity"
  fi
  # A fresh server for the soak, so its memory curve starts from a clean start.
  start_dkd "$mode" "$mode"
  log "soak, signing $mode: $rate req/s for $MINUTES min (uptime: $(uptime | sed 's/.*load/load/'))"
  echo "load before soak-$mode: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
  res=$("$LOAD" soak --url "$URL" --certs "$CERTS" --mode "$lmode" --secs "$SECS" --warmup 5 \
    --rate "$rate" --conns "$CONNS" --signers "$SIGNERS" --sample "$SAMPLE" --server-pid "$DKD_PID" \
    --csv "$OUT/soak-$mode.csv" --label "soak-$mode" 2>> "$OUT/load.log" | tail -n 1)
  echo "$res" > "$OUT/soak-$mode.json"
  echo "load after soak-$mode: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
  alive=yes; kill -0 "$DKD_PID" 2>/dev/null || alive="NO (server gone)"
  stop_dkd "$mode"
  p99=$(awk -F, 'NR>1{print $13}' "$OUT/soak-$mode.csv" | sort -n | awk '{a[NR]=$1} END{if (NR) printf "%s-%s", a[1], a[NR]}')
  other=$(awk -F, 'NR>1{s+=$17; n++} END{if (n) printf "%.2f", s/n}' "$OUT/soak-$mode.csv")
  printf '| %s | %s | %s | %.0f | %s/%s/%s | %s | %.0f → %.0f → %.0f | %.2f | %s | %s | %s |\n' \
    "$mode" "$rate" "$(json "$res" ok)" "$(json "$res" rps)" \
    "$(json "$res" errors_status)" "$(json "$res" errors_body)" "$(json "$res" errors_io)" \
    "$(json "$res" late_2ms)" "$(json "$res" rss_start_mib)" "$(json "$res" rss_max_mib)" \
    "$(json "$res" rss_end_mib)" "$(json "$res" rss_slope_second_half_mib_per_min)" \
    "$(json "$res" fds_max)" "$p99" "$other" >> "$OUT/summary.md"
  echo "server alive at the end of soak-$mode: $alive" >> "$OUT/machine.txt"
  log "  $(tail -n 1 "$OUT/summary.md")"
done

echo "uptime after: $(uptime)" >> "$OUT/machine.txt"
{ echo; echo '```'; tail -n +6 "$OUT/machine.txt"; echo '```'; } >> "$OUT/summary.md"
cat "$OUT/summary.md"
echo
echo "(results in ${OUT#"$ROOT"/})"
