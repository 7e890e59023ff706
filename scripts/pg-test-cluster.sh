#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: initdb in a temporary directory as an
# unprivileged user, loopback only, a free port, trust authentication for that user.
#
#   eval "$(scripts/pg-test-cluster.sh start)"   # prints exports: TENKEN_TEST_DATABASE_URL, PG_TEST_DIR
#   scripts/pg-test-cluster.sh stop "$PG_TEST_DIR"
#   scripts/pg-test-cluster.sh down "$PG_TEST_DIR"   # stops the server, keeps the data (a
#   scripts/pg-test-cluster.sh up "$PG_TEST_DIR"     # database outage), starts it again
#
# Needs Debian's postgresql package (.ci/run installs it). Nothing is left behind after
# `stop`; a cluster that is never stopped dies with the machine.
set -euo pipefail

bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  echo "error: no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)" >&2
  exit 1
}

# Run as the invoking user, or — as root, which PostgreSQL refuses — as `nobody`.
as_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

case "${1:-}" in
  start)
    bin=$(bindir)
    dir=$(mktemp -d /tmp/tenken-pg.XXXXXX)
    chmod 0777 "$dir"
    as_user mkdir -p "$dir/data" "$dir/run"
    as_user "$bin/initdb" -D "$dir/data" -U tenken -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    port=$(free_port)
    echo "$port" >"$dir/port"
    as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/run -c fsync=on -c synchronous_commit=on -c max_connections=300" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    as_user "$bin/createdb" -h 127.0.0.1 -p "$port" -U tenken tenken_test
    echo "export PG_TEST_DIR=$dir"
    echo "export TENKEN_TEST_DATABASE_URL=postgresql://tenken@127.0.0.1:$port/tenken_test"
    ;;
  down)
    dir=${2:?usage: down PG_TEST_DIR}
    as_user "$(bindir)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  up)
    dir=${2:?usage: up PG_TEST_DIR}
    port=$(cat "$dir/port")
    as_user "$(bindir)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/run -c fsync=on -c synchronous_commit=on -c max_connections=300" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    ;;
  stop)
    dir=${2:?usage: stop PG_TEST_DIR}
    bin=$(bindir)
    as_user "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start | stop PG_TEST_DIR | down PG_TEST_DIR | up PG_TEST_DIR" >&2
    exit 2
    ;;
esac
