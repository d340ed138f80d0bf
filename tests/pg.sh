#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the store's PostgreSQL test pass,
# from Debian's packages, on a Unix socket in a private temporary
# directory (no TCP port), run as an unprivileged user (PostgreSQL refuses
# root: as root the cluster runs as the postgres user).
#
#   tests/pg.sh start DIR   creates and starts a cluster in DIR (which must
#                           not exist) and prints its conninfo, the value
#                           for KT_TEST_PG: host=DIR/sock user=... dbname=postgres
#   tests/pg.sh stop DIR    stops it and removes DIR
#
# The tests (tests/lib/testenv.c, tests/common.sh, tests/cli/cli_env.sh)
# create a database kt_<random> per test from KT_TEST_PG and drop it at
# their end.
set -euo pipefail
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/pg_ctl" ] || { echo "$0: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case $cmd in
start)
  [ ! -e "$dir" ] || { echo "$0: $dir exists" >&2; exit 1; }
  mkdir -p "$dir"
  [ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
  chmod 0700 "$dir"
  user=$( [ "$(id -u)" -eq 0 ] && echo postgres || id -un )
  as_owner "$bin/initdb" -D "$dir/data" -U "$user" -A trust --no-sync \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  as_owner mkdir -m 0700 "$dir/sock"
  # fsync off: a throwaway cluster, nothing to keep across a crash
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-k $dir/sock -c listen_addresses='' -c fsync=off -c max_connections=300 -c synchronous_commit=off" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  # the tests run as root: let them reach the socket
  chmod 0711 "$dir"; as_owner chmod 0777 "$dir/sock"
  echo "host=$dir/sock user=$user dbname=postgres"
  ;;
stop)
  [ -d "$dir/data" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
