#!/usr/bin/env bash
# Profiles `dkd serve` under full load with perf (call graphs via DWARF; release builds carry line
# tables). Writes target/bench-results/profile-<signing>.txt (inclusive and self time per symbol)
# and keeps perf.data beside it for `perf report -i`.
#
#   bash benches/profile.sh [off|required]     (default: required)
#
# Needs `perf` (Debian: linux-perf) and perf_event_paranoid <= 2 for a process you own.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIGNING=${1:-required}
command -v perf > /dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
OUT=$ROOT/target/bench-results
mkdir -p "$OUT"

. "$ROOT/benches/tools.sh"
build_tools
setup_tmp
port=$("$LOAD" free-port)
URL="https://127.0.0.1:$port/GSDDossierReintegratie-v0200"
(
  cd "$TMP"
  export DKD_SERVER__LISTEN=127.0.0.1:$port DKD_TLS__CERT=$TMP/certs/server.pem \
    DKD_TLS__KEY=$TMP/certs/server-key.pem DKD_TLS__CLIENT_CA=$TMP/certs/ca.pem \
    DKD_SECURITY__SIGNING=$SIGNING DKD_STORE__PATH=$TMP/store
  exec "$DKD" serve --demo > "$TMP/serve.out" 2> "$TMP/serve.log"
) &
PID=$!
"$LOAD" wait --url "$URL" --certs "$TMP/certs" > /dev/null
mode=unsigned; [ "$SIGNING" = off ] || mode=signed
"$LOAD" run --url "$URL" --certs "$TMP/certs" --mode "$mode" --secs 10 --warmup 1 --pool 40000 \
  --label "profile/$SIGNING" --server-pid "$PID" > "$TMP/run.json" 2> "$TMP/run.err" &
LPID=$!
# Start recording once the (pre-signed) requests are flowing.
for _ in $(seq 300); do grep -q prepared "$TMP/run.err" 2>/dev/null && break; [ "$mode" = unsigned ] && break; sleep 0.1; done
sleep 2
perf record -F 999 --call-graph dwarf,8192 -p "$PID" -o "$OUT/perf-$SIGNING${PROFILE_TAG:-}.data" -- sleep 5 2> /dev/null
wait "$LPID"
{
  echo "# dkd serve, signing=$SIGNING, full load ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "# run: $(cat "$TMP/run.json")"
  echo "# children% self% symbol"
  perf report -i "$OUT/perf-$SIGNING${PROFILE_TAG:-}.data" --children --sort symbol --stdio -g none 2> /dev/null \
    | grep '%' | awk '{c=$1; s=$2; $1="";$2="";$3=""; sub(/^ +/,""); sub(/ +- +- *$/,""); print c, s, substr($0,1,140)}' \
    | grep -vE 'inlined|call_once|catch_unwind|closure|0xffffffff' | head -n 120
} > "$OUT/profile-$SIGNING${PROFILE_TAG:-}.txt"
echo "profile: ${OUT#"$ROOT"/}/profile-$SIGNING${PROFILE_TAG:-}.txt" >&2
