# Sourced by the benchmark scripts (run.sh, ratio.sh, profile.sh, soak.sh), with ROOT set to the
# repository: builds the release `dkd` and the load tool (benches/load.rs) and sets DKD and LOAD.
# DKD_BIN: another build of dkd to measure (e.g. the previous commit's, for before/after in one
# sitting). LOAD_BIN (with DKD_BIN): measure prebuilt binaries, without building anything (a
# bench run while the tree moves on).
build_tools() {
  if [ -n "${LOAD_BIN:-}" ]; then
    DKD=${DKD_BIN:?LOAD_BIN needs DKD_BIN too}
    LOAD=$LOAD_BIN
    return
  fi
  cargo build --release --bin dkd 2>&1 | tail -n 2 >&2
  DKD=${DKD_BIN:-$ROOT/target/release/dkd}
  LOAD=$(cargo bench --bench load --no-run 2>&1 | sed -n 's/.*Executable benches\/load.rs (\(.*\))/\1/p' | tail -n 1)
  [ -x "$ROOT/$LOAD" ] && LOAD=$ROOT/$LOAD
  [ -x "$LOAD" ] || { echo "cannot find the load bench executable" >&2; exit 1; }
}

# A temporary directory TMP holding a development PKI (TMP/certs), removed on exit, together with
# the server whose pid the script keeps in PID. After build_tools.
setup_tmp() {
  TMP=$(mktemp -d)
  PID=""
  trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"' EXIT
  "$DKD" certs --dir "$TMP/certs" > /dev/null
}
