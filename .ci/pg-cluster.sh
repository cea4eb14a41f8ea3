#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the tests: initdb into a fresh temporary folder as an
# unprivileged user (CI runs as root, which PostgreSQL refuses), on a free loopback port, trust
# authentication on 127.0.0.1 only. Prints the URL on stdout; `stop DIR` ends it.
#   url=$(bash .ci/pg-cluster.sh start DIR)    bash .ci/pg-cluster.sh stop DIR
# PG_FSYNC=on: durable commits (benchmarks); the tests run with fsync off.
set -euo pipefail
cmd=${1:?start|stop} dir=${2:?folder}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$bin/initdb" ] || { echo "no PostgreSQL server binaries under /usr/lib/postgresql" >&2; exit 1; }
as=()
if [ "$(id -u)" -eq 0 ]; then
    id dkdpg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin dkdpg
    as=(runuser -u dkdpg --)
fi
case $cmd in
start)
    mkdir -p "$dir"
    [ ${#as[@]} -eq 0 ] || chown dkdpg "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "${as[@]}" "$bin/initdb" -D "$dir/data" -U dkd -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' -c fsync=${PG_FSYNC:-off} -c max_connections=300" \
        start >/dev/null
    echo "postgres://dkd@127.0.0.1:$port/postgres"
    ;;
stop)
    [ -d "$dir/data" ] && "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    ;;
esac
