#!/usr/bin/env bash
# Start or stop the real services the tests use: a PostgreSQL server and an
# S3-compatible server (moto in server mode), both on 127.0.0.1 only.
#   scripts/services.sh start    # installs what is missing (below), starts both; writes .services/env
#   scripts/services.sh stop
#   scripts/services.sh install  # only install with apt what is missing: PostgreSQL, and
#                                # Prometheus for its `promtool` (the tests lint rules and
#                                # scrapes with it; no Prometheus server needs to run)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
state="$here/.services"
venv="${VENV:-$here/.venv}"
pg_port="${CONVEYOR_PG_PORT:-55432}"
s3_port="${CONVEYOR_S3_PORT:-55433}"

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

as_postgres() {
  # PostgreSQL refuses to run as root; use the account Debian's package creates.
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

apt_install() {  # apt_install PACKAGE...
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

install_postgres() {
  [ -n "$(pg_bin)" ] && return
  echo "services: installing PostgreSQL with apt" >&2
  apt_install postgresql
}

install_prometheus() {
  # Only promtool is used; if apt also starts a prometheus daemon, nothing depends on it.
  command -v promtool >/dev/null && return
  echo "services: installing Prometheus (for promtool) with apt" >&2
  apt_install prometheus
}

wait_for() {  # wait_for NAME PYTHON-CHECK
  for _ in $(seq 1 100); do
    if "$venv/bin/python" -c "$2" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "services: $1 did not come up; see $state/*.log" >&2
  return 1
}

start() {
  mkdir -p "$state"
  install_postgres
  install_prometheus
  local bin data
  bin=$(pg_bin)
  data=$(mktemp -d /tmp/conveyor-pg.XXXXXX)
  echo "$data" > "$state/pg.data"
  [ "$(id -u)" = 0 ] && chown postgres: "$data"
  as_postgres "$bin/initdb" -D "$data" -U postgres -A trust --no-sync >"$state/pg-init.log"
  as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w start \
    -o "-p $pg_port -k $data -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
    >"$state/pg.log"

  "$venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$state/moto.log" 2>&1 &
  echo $! > "$state/moto.pid"
  wait_for "moto" "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$s3_port/')"

  cat > "$state/env" <<ENV
export CONVEYOR_TEST_PG_URL=postgresql://postgres@127.0.0.1:$pg_port/postgres
export CONVEYOR_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
ENV
  echo "services: PostgreSQL on 127.0.0.1:$pg_port, S3 (moto) on 127.0.0.1:$s3_port" >&2
}

stop() {
  if [ -f "$state/pg.data" ]; then
    local data
    data=$(cat "$state/pg.data")
    as_postgres "$(pg_bin)/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$data" "$state/pg.data"
  fi
  if [ -f "$state/moto.pid" ]; then
    kill "$(cat "$state/moto.pid")" 2>/dev/null || true
    rm -f "$state/moto.pid"
  fi
  rm -f "$state/env"
}

case "${1:-}" in
  start) stop; start ;;
  stop) stop ;;
  install) install_postgres; install_prometheus ;;
  *) echo "usage: $0 start|stop|install" >&2; exit 2 ;;
esac
