#!/usr/bin/env bash
# A throw-away PostgreSQL server for the distributed sweep test (nbs/40_sweep.ipynb).
#   .ci/pg.sh start DIR   initdb into DIR (a new or empty folder), start a server on a free localhost port,
#                         create the database hark_test, print its URL (postgresql://USER@localhost:PORT/hark_test)
#   .ci/pg.sh stop DIR    stop that server
# initdb refuses to run as root, so as root the server runs as the user postgres (DIR is handed to it).
set -euo pipefail
cmd=${1:?usage: pg.sh start|stop DIR}; dir=${2:?usage: pg.sh start|stop DIR}
bin=${HARK_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$bin/pg_ctl" ] || bin=$(dirname "$(command -v pg_ctl || echo /nonexistent/pg_ctl)")
[ -x "$bin/pg_ctl" ] || { echo "pg.sh: PostgreSQL is not installed (no pg_ctl)" >&2; exit 3; }
if [ "$(id -u)" = 0 ]; then user=postgres; as() { runuser -u postgres -- "$@"; }; else user=$(id -un); as() { "$@"; }; fi
case "$cmd" in
  start)
    mkdir -p "$dir"; [ "$(id -u)" = 0 ] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as "$bin/initdb" -D "$dir/data" -A trust -U "$user" >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    as "$bin/pg_ctl" -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=localhost" -l "$dir/log" -w start >/dev/null \
      || { cat "$dir/log" >&2; exit 1; }
    as "$bin/createdb" -h localhost -p "$port" -U "$user" hark_test
    echo "postgresql://$user@localhost:$port/hark_test" ;;
  stop) as "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null ;;
  *) echo "pg.sh: unknown command $cmd (start | stop)" >&2; exit 2 ;;
esac
