#!/usr/bin/env bash
# dkd benchmarks: in-process (criterion) and end to end over mutual TLS, with the ceilings measured
# in the same run. Results: target/bench-results/<timestamp>/ (summary.md, results.jsonl, logs).
#
#   bash benches/run.sh            # everything, ~10 minutes (the first run also builds the 10^6 store)
#   bash benches/run.sh --quick    # short runs, 10^3 store only, no oha cross-check (~3 minutes)
#
# Options: --quick, --no-1e6, --no-oha, --no-inprocess, --secs N, --conns N,
#          --max-busy C, --max-wait S (before each part, wait up to S seconds, 300, until other
#          processes use less than C cores, 0.3; a run they disturbed anyway is repeated once)
# See BENCHMARKS.md for what each figure means.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0 BIG=1 OHA=1 INPROC=1 SECS=10 WARMUP=2 CONNS=32 MAX_BUSY=0.3 MAX_WAIT=300
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 BIG=0 OHA=0 SECS=3 WARMUP=1 ;;
    --no-1e6) BIG=0 ;;
    --no-oha) OHA=0 ;;
    --no-inprocess) INPROC=0 ;;
    --secs) SECS=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --max-busy) MAX_BUSY=$2; shift ;;
    --max-wait) MAX_WAIT=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
HALF_CONNS=$CONNS

OUT=$ROOT/target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
TMP=$(mktemp -d)
DKD_PID="" RESP_PID=""
cleanup() {
  [ -n "$DKD_PID" ] && kill "$DKD_PID" 2>/dev/null || true
  [ -n "$RESP_PID" ] && kill "$RESP_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

log() { echo "== $*" >&2; }
info() { printf '{"label":"%s","value":"%s"}\n' "$1" "$2" >> "$RESULTS"; }

# CPU in use (in cores) over 2 seconds, from /proc/stat. Niced processes count too: with the
# kernel's autogroup scheduling a nice-10 fuzzer in another session still takes a fair share.
busy_cores() {
  local a b
  a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  sleep 2
  b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
  echo "$a $b" | awk -v n="$(nproc)" '{printf "%.2f", ($3-$1)/(($4-$2)>0?($4-$2):1)*n}'
}

# Waits (up to MAX_WAIT seconds) until the machine is idle apart from us: < MAX_BUSY cores in use.
wait_for_quiet() {
  local waited=0 b
  while :; do
    b=$(busy_cores)
    awk -v b="$b" -v m="$MAX_BUSY" 'BEGIN{exit !(b>m)}' || break
    if [ $waited -ge "$MAX_WAIT" ]; then log "still $b cores busy after $MAX_WAIT s; measuring anyway"; break; fi
    [ $waited -eq 0 ] && log "waiting for the machine to be idle ($b cores busy) ..."
    sleep 8; waited=$((waited + 10))
  done
  info "idle-before/$1" "$b cores busy (2 s sample), loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
}

# --- machine ------------------------------------------------------------------------------------
{
  echo "date (UTC): $(date -u '+%Y-%m-%d %H:%M:%S')"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo ' (+ uncommitted changes in src/)')"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "memory: $(free -m | awk '/^Mem:/{print $2}') MiB"
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc --version)"
  echo "mode: quick=$QUICK 1e6=$BIG oha=$OHA secs=$SECS warmup=$WARMUP conns=$CONNS"
} | tee "$OUT/machine.txt" >&2

# --- build --------------------------------------------------------------------------------------
log "building (release)"
. "$ROOT/benches/tools.sh"
build_tools
OHA_BIN=$ROOT/target/bench-tools/bin/oha
if [ "$OHA" = 1 ] && [ ! -x "$OHA_BIN" ]; then
  log "installing oha (cross-check; once) into target/bench-tools"
  cargo install --locked --quiet --root target/bench-tools --target-dir target/bench-tools/build oha >&2 \
    || { log "oha could not be installed; skipping the cross-check"; OHA=0; }
fi
if [ "$BIG" = 1 ]; then
  log "10^6-person store (cached in target/bench-store-1e6)"
  "$LOAD" build-store >&2
fi

# --- in process ---------------------------------------------------------------------------------
if [ "$INPROC" = 1 ]; then
  wait_for_quiet inprocess
  log "in-process benchmarks (criterion)"
  CRIT_ARGS=()
  [ "$QUICK" = 1 ] && CRIT_ARGS=(--warm-up-time 0.5 --measurement-time 1)
  [ "$BIG" = 1 ] || export DKD_BENCH_SKIP_1E6=1
  rm -rf target/criterion
  cargo bench --bench inprocess -- "${CRIT_ARGS[@]}" 2>&1 | tee "$OUT/inprocess.txt" | grep -E '^[a-z_0-9]+/|time:' >&2
fi

# --- end to end ---------------------------------------------------------------------------------
"$DKD" certs --dir "$TMP/certs" > /dev/null
CERTS=$TMP/certs

# start_dkd <signing off|required> <store demo|big> <label>
start_dkd() {
  local signing=$1 store=$2 label=$3 port
  port=$("$LOAD" free-port)
  URL="https://127.0.0.1:$port/GSDDossierReintegratie-v0200"
  local store_path=$TMP/demo-store
  if [ "$store" = big ]; then
    # A copy per server start: dkd writes an audit record per request into its store, and the
    # cached 10^6 store must stay as built.
    store_path=$TMP/store-1e6
    rm -rf "$store_path"
    cp -r "$ROOT/target/bench-store-1e6" "$store_path"
  fi
  (
    cd "$TMP"
    [ -n "${DKD_EXTRA_LOG:-}" ] && export DKD_LOG=$DKD_EXTRA_LOG
    [ -n "${DKD_EXTRA_CRYPTO:-}" ] && export DKD_SERVER__CRYPTO_THREADS=$DKD_EXTRA_CRYPTO
    # The ops and admin listeners are not benchmarked; disabled so fixed ports cannot clash.
    export DKD_OPS__LISTEN="" DKD_ADMIN__LISTEN=""
    export DKD_SERVER__LISTEN=127.0.0.1:$port DKD_TLS__CERT=$CERTS/server.pem \
      DKD_TLS__KEY=$CERTS/server-key.pem DKD_TLS__CLIENT_CA=$CERTS/ca.pem \
      DKD_SECURITY__SIGNING=$signing DKD_STORE__PATH=$store_path
    exec "$DKD" serve --demo > "$OUT/serve-$label.out" 2> "$OUT/serve-$label.log"
  ) &
  DKD_PID=$!
  local ms
  ms=$("$LOAD" wait --url "$URL" --certs "$CERTS" --timeout 180)
  info "startup/$label" "$ms ms to the first WSDL answer (store open + bind + banner)"
}

stop_dkd() {
  local label=$1
  if [ -r "/proc/$DKD_PID/status" ]; then
    info "rss/$label" "$(awk '/VmHWM|VmRSS/{printf "%s %s MiB  ", $1, int($2/1024)}' "/proc/$DKD_PID/status")"
  fi
  kill "$DKD_PID" 2>/dev/null || true
  wait "$DKD_PID" 2>/dev/null || true
  DKD_PID=""
}

# run_load <label> <extra args...>; appends the result line, prints req/s. A run during which
# other processes took more than MAX_BUSY cores is repeated once, after waiting for quiet.
run_load() {
  local label=$1 line other attempt
  shift
  for attempt in 1 2; do
    line=$("$LOAD" run --certs "$CERTS" --secs "$SECS" --warmup "$WARMUP" --label "$label" "$@" 2>> "$OUT/load.log" | tail -n 1)
    other=$(echo "$line" | sed -n 's/.*"other_cores":\([0-9.e-]*\).*/\1/p')
    if [ "$attempt" = 1 ] && awk -v o="${other:-0}" -v m="$MAX_BUSY" 'BEGIN{exit !(o>m)}'; then
      log "  $label: other processes used $other cores; repeating once"
      echo "discarded: $line" >> "$OUT/load.log"
      wait_for_quiet "$label"
      continue
    fi
    break
  done
  echo "$line" >> "$RESULTS"
  echo "$line" | sed -n 's/.*"rps":\([0-9.]*\).*/\1/p'
}

half() { awk -v r="$1" 'BEGIN{printf "%d", r/2}'; }

wait_for_quiet rsa
log "RSA-2048 signing ceiling"
# measure <label> <command...>: like run_load, for the RSA ceiling.
measure() {
  local label=$1 line other attempt
  shift
  for attempt in 1 2; do
    line=$("$@" | tail -n 1)
    other=$(echo "$line" | sed -n 's/.*"other_cores":\([0-9.e-]*\).*/\1/p')
    if [ "$attempt" = 1 ] && awk -v o="${other:-0}" -v m="$MAX_BUSY" 'BEGIN{exit !(o>m)}'; then
      log "  $label: other processes used $other cores; repeating once"
      echo "discarded: $line" >> "$OUT/load.log"
      wait_for_quiet "$label"
      continue
    fi
    break
  done
  echo "$line" >> "$RESULTS"
  echo "$line" | sed -n 's/.*"rps":\([0-9.]*\).*/\1/p'
}
measure rsa/1 "$LOAD" rsa --certs "$CERTS" --threads 1 --secs 3 --label rsa/1 > /dev/null
RSA=$(measure rsa/2 "$LOAD" rsa --certs "$CERTS" --threads 2 --secs 5 --label rsa/2)
log "  $RSA signatures/s on 2 threads"
POOL_FULL=$(awk -v r="$RSA" -v t="$((SECS + WARMUP))" 'BEGIN{printf "%d", r*t*1.05+500}')

STORES=(1e3)
[ "$BIG" = 1 ] && STORES+=(1e6)
RESP_BYTES=""
for s in "${STORES[@]}"; do
  store=demo; [ "$s" = 1e6 ] && store=big
  wait_for_quiet "$s-off"
  log "dkd, $s store, signing off"
  start_dkd off "$store" "$s-off"
  r=$(run_load "$s/unsigned/full" --url "$URL" --mode unsigned --store "$store" --conns "$CONNS" --server-pid "$DKD_PID")
  log "  unsigned full: $r req/s"
  [ -z "$RESP_BYTES" ] && RESP_BYTES=$(grep "\"$s/unsigned/full\"" "$RESULTS" | sed -n 's/.*"resp_bytes":\([0-9]*\).*/\1/p')
  h=$(half "$r")
  r=$(run_load "$s/unsigned/half" --url "$URL" --mode unsigned --store "$store" --conns "$HALF_CONNS" --rate "$h" --server-pid "$DKD_PID")
  log "  unsigned half ($h/s): $r req/s"
  if [ "$OHA" = 1 ] && [ "$s" = 1e3 ]; then
    bsn=$(grep "\"$s/unsigned/full\"" "$RESULTS" | sed -n 's/.*"bsn_sample":"\([0-9]*\)".*/\1/p')
    "$LOAD" body --url "$URL" --bsn "$bsn" > "$TMP/oha-body.xml"
    info "load/oha/$s/unsigned/full" "$(cat /proc/loadavg)"
    "$OHA_BIN" -z "${SECS}s" -c "$CONNS" --no-tui --output-format json -m POST -D "$TMP/oha-body.xml" \
      -T 'text/xml; charset=utf-8' -H 'SOAPAction: ""' --cacert "$CERTS/ca.pem" \
      --cert "$CERTS/client.pem" --key "$CERTS/client-key.pem" "$URL" > "$OUT/oha-$s-unsigned.json" 2>> "$OUT/load.log" \
      && "$LOAD" oha-import --file "$OUT/oha-$s-unsigned.json" --label "oha/$s/unsigned/full" --conns "$CONNS" >> "$RESULTS" \
      || log "  oha run failed (see load.log)"
  fi
  stop_dkd "$s-off"
  if [ "$QUICK" = 0 ] && [ "$s" = 1e3 ]; then
    # What the per-request info log line costs: the same run with DKD_LOG=warn.
    DKD_EXTRA_LOG=warn start_dkd off "$store" "$s-off-logwarn"
    r=$(run_load "$s/unsigned-logwarn/full" --url "$URL" --mode unsigned --store "$store" --conns "$CONNS" --server-pid "$DKD_PID")
    log "  unsigned full, DKD_LOG=warn: $r req/s"
    stop_dkd "$s-off-logwarn"
  fi

  wait_for_quiet "$s-required"
  log "dkd, $s store, signing required"
  start_dkd required "$store" "$s-required"
  r=$(run_load "$s/signed/full" --url "$URL" --mode signed --store "$store" --conns "$CONNS" --pool "$POOL_FULL" --server-pid "$DKD_PID")
  log "  signed full: $r req/s"
  h=$(half "$r")
  pool=$(awk -v r="$h" -v t="$((SECS + WARMUP))" 'BEGIN{printf "%d", r*t*1.1+500}')
  r=$(run_load "$s/signed/half" --url "$URL" --mode signed --store "$store" --conns "$HALF_CONNS" --rate "$h" --pool "$pool" --server-pid "$DKD_PID")
  log "  signed half ($h/s): $r req/s"
  stop_dkd "$s-required"
  if [ "$QUICK" = 0 ] && [ "$s" = 1e3 ]; then
    # server.crypto_threads = 0: verification and signing on the async workers themselves (the
    # default is a set of threads of their own, one per core).
    DKD_EXTRA_CRYPTO=0 start_dkd required "$store" "$s-required-inline"
    r=$(run_load "$s/signed-inline/full" --url "$URL" --mode signed --store "$store" --conns "$CONNS" --pool "$POOL_FULL" --server-pid "$DKD_PID")
    log "  signed full, crypto_threads=0: $r req/s"
    h=$(half "$r")
    pool=$(awk -v r="$h" -v t="$((SECS + WARMUP))" 'BEGIN{printf "%d", r*t*1.1+500}')
    r=$(run_load "$s/signed-inline/half" --url "$URL" --mode signed --store "$store" --conns "$HALF_CONNS" --rate "$h" --pool "$pool" --server-pid "$DKD_PID")
    log "  signed half, crypto_threads=0 ($h/s): $r req/s"
    stop_dkd "$s-required-inline"
  fi
done

# The unsigned ceiling: a bare hyper + rustls responder, same TLS setup, same response size.
wait_for_quiet ceiling
log "bare responder ($RESP_BYTES bytes)"
"$LOAD" responder --certs "$CERTS" --size "$RESP_BYTES" > "$TMP/responder.out" 2>> "$OUT/load.log" &
RESP_PID=$!
for _ in $(seq 100); do grep -q LISTENING "$TMP/responder.out" 2>/dev/null && break; sleep 0.05; done
RADDR=$(sed -n 's/LISTENING //p' "$TMP/responder.out")
RURL="https://$RADDR/GSDDossierReintegratie-v0200"
r=$(run_load ceiling/full --url "$RURL" --mode raw --conns "$CONNS" --server-pid "$RESP_PID")
log "  ceiling full: $r req/s"
h=$(half "$r")
r=$(run_load ceiling/half --url "$RURL" --mode raw --conns "$HALF_CONNS" --rate "$h" --server-pid "$RESP_PID")
log "  ceiling half ($h/s): $r req/s"
if [ "$OHA" = 1 ]; then
  info "load/oha/ceiling/full" "$(cat /proc/loadavg)"
  "$OHA_BIN" -z "${SECS}s" -c "$CONNS" --no-tui --output-format json -m POST -D "$TMP/oha-body.xml" \
    -T 'text/xml; charset=utf-8' -H 'SOAPAction: ""' --cacert "$CERTS/ca.pem" \
    --cert "$CERTS/client.pem" --key "$CERTS/client-key.pem" "$RURL" > "$OUT/oha-ceiling.json" 2>> "$OUT/load.log" \
    && "$LOAD" oha-import --file "$OUT/oha-ceiling.json" --label "oha/ceiling/full" --conns "$CONNS" >> "$RESULTS" \
    || log "  oha run failed (see load.log)"
fi
kill "$RESP_PID" 2>/dev/null || true
wait "$RESP_PID" 2>/dev/null || true
RESP_PID=""

# The signed ceiling: the same responder doing, per request, only what every signed answer must
# (one RSA-2048 signature, one RSA verification), answering with a signed answer's size, under the
# signed load (the generator's own share of the cores included).
SIGNED_BYTES=$(grep '"1e3/signed/full"' "$RESULTS" | sed -n 's/.*"resp_bytes":\([0-9]*\).*/\1/p')
wait_for_quiet ceiling-signed
log "signing responder (${SIGNED_BYTES:-9000} bytes)"
"$LOAD" responder --certs "$CERTS" --size "${SIGNED_BYTES:-9000}" --sign 1 > "$TMP/responder.out" 2>> "$OUT/load.log" &
RESP_PID=$!
for _ in $(seq 100); do grep -q LISTENING "$TMP/responder.out" 2>/dev/null && break; sleep 0.05; done
RADDR=$(sed -n 's/LISTENING //p' "$TMP/responder.out")
RURL="https://$RADDR/GSDDossierReintegratie-v0200"
r=$(run_load ceiling/signed/full --url "$RURL" --mode signed-raw --conns "$CONNS" --pool "$POOL_FULL" --server-pid "$RESP_PID")
log "  signing responder full: $r req/s"
kill "$RESP_PID" 2>/dev/null || true
wait "$RESP_PID" 2>/dev/null || true
RESP_PID=""

# --- summary ------------------------------------------------------------------------------------
{
  echo '```'
  cat "$OUT/machine.txt"
  echo '```'
  echo
  "$LOAD" summary --results "$RESULTS" --criterion "$ROOT/target/criterion"
} > "$OUT/summary.md"
cat "$OUT/summary.md"
echo
echo "(results in ${OUT#"$ROOT"/})"
