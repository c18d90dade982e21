#!/usr/bin/env bash
# Run a real single-node Elasticsearch (8.x) on this machine, without Docker.
#
#   scripts/elasticsearch.sh start|stop|status
#   scripts/elasticsearch.sh run COMMAND...   start a node unless ours already runs, run COMMAND with
#                                             ELASTICSEARCH_URL set, stop the node if this call started
#                                             it; exits with COMMAND's status
#
# Where it comes from: Maven Central (via `mvn`), as
#   org.elasticsearch.distribution.integ-test-zip:elasticsearch:<v>:zip
# a runnable node with no bundled JDK and a reduced set of modules (transport-netty4, x-pack-core,
# x-pack-security, apm). It serves the sparse_vector field, the weighted_tokens query, dense_vector +
# knn, match (BM25), _bulk and _msearch; it lacks GET / (the root-info module), the rank_features
# field (mapper-extras), the sparse_vector query (the ML plugin) and painless (docs/elasticsearch.md).
# Security is off (xpack.security.enabled: false): plain http, no users.
# Java: 8.x runs on Java 17+, 9.x needs 21+. The first JDK that is new enough is taken, from
# ELASTICSEARCH_JAVA_HOME (which must be), JAVA_HOME, `java` on PATH, then /usr/lib/jvm/* and /opt/*.
#
# Environment (all optional):
#   ELASTICSEARCH_VERSION        the version (default 8.19.3, the major of the test venv's
#                                elasticsearch-py: the client major must equal the server's)
#   ELASTICSEARCH_PORT           HTTP port (default 9280); transport: ELASTICSEARCH_TRANSPORT_PORT (9380)
#   SPARSEBRIDGE_CACHE           download/unpack cache (default ~/.cache/sparsebridge); one distribution
#                                per version: $SPARSEBRIDGE_CACHE/elasticsearch-<v>/home
#   ELASTICSEARCH_HOME_RUN       per-run config/data/logs/pid dir, wiped on start (default
#                                $SPARSEBRIDGE_CACHE/elasticsearch-run-<port>)
#   ELASTICSEARCH_KEEP_DATA=1    keep $ELASTICSEARCH_HOME_RUN/data across a restart (a node killed and
#                                restarted keeps its indices); config/logs still renewed
#   ELASTICSEARCH_JAVA_OPTS      JVM options (default "-Xms512m -Xmx512m")
#   ELASTICSEARCH_EXTRA_SETTINGS space-separated -Ekey=value list, e.g. "-Ethread_pool.write.queue_size=1"
#   ELASTICSEARCH_START_TIMEOUT  seconds to wait for yellow health (default 150)
#
# Elasticsearch refuses to run as root. As root (CI), the node runs as the system user
# `elasticsearch` (created if absent) with the single ambient capability DAC_OVERRIDE, so it can
# still use the cache under /root (mode 700) without changing any permissions.
set -euo pipefail

CACHE="${SPARSEBRIDGE_CACHE:-$HOME/.cache/sparsebridge}"
VERSION="${ELASTICSEARCH_VERSION:-8.19.3}"
PORT="${ELASTICSEARCH_PORT:-9280}"
TPORT="${ELASTICSEARCH_TRANSPORT_PORT:-9380}"
RUN="${ELASTICSEARCH_HOME_RUN:-$CACHE/elasticsearch-run-$PORT}"
URL="http://127.0.0.1:$PORT"
PIDFILE="$RUN/elasticsearch.pid" # the server JVM's pid (written by the node itself, -p)
LAUNCHFILE="$RUN/launcher.pid"   # the launcher's pid (bin/elasticsearch starts the server as a child)
RUN_AS=elasticsearch             # only used when invoked as root

log() { echo "[elasticsearch.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=lib/jvm_node.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/jvm_node.sh"

[[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "ELASTICSEARCH_VERSION must be like 8.19.3, got '$VERSION'"
[[ "$PORT" =~ ^[0-9]+$ && "$TPORT" =~ ^[0-9]+$ ]] || die "ELASTICSEARCH_PORT and ELASTICSEARCH_TRANSPORT_PORT must be numbers"

healthy() { curl -fsS -o /dev/null --max-time 5 "$URL/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null; }

# The version of the node answering on $URL (read from the node info: this distribution refuses GET /).
node_version() {
  curl -fsS --max-time 5 "$URL/_nodes/_local?filter_path=nodes.*.version" |
    python3 -c 'import json, sys; print(next(iter(json.load(sys.stdin)["nodes"].values()))["version"])'
}

node_matches() {
  local v
  v="$(node_version)" || { log "cannot read the version of the node on $URL"; return 1; }
  [[ "$v" == "$VERSION" ]] || { log "the node on $URL runs Elasticsearch $v, not $VERSION"; return 1; }
}

# Pid of our running server, or nothing (pid file present, process alive and really Elasticsearch).
node_pid() {
  local pid
  [[ -f "$PIDFILE" ]] || return 0
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q 'org.elasticsearch.bootstrap.Elasticsearch'; then echo "$pid"; fi
}

launcher_pid() {
  local pid
  [[ -f "$LAUNCHFILE" ]] || return 0
  pid="$(cat "$LAUNCHFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q 'org.elasticsearch'; then echo "$pid"; fi
}

# A JDK home new enough for Elasticsearch $VERSION: Java 17+ for 8.x, 21+ for 9.x (order: the header).
java_home() {
  local need=17
  [[ "${VERSION%%.*}" -lt 9 ]] || need=21
  find_java "$need" "Elasticsearch $VERSION" ELASTICSEARCH_JAVA_HOME
}

# $CACHE/elasticsearch-<v>/home, fetched and unpacked once; echo its path.
install_version() {
  local dir="$CACHE/elasticsearch-$VERSION" home tmp zip
  home="$dir/home"
  [[ -f "$home/.sparsebridge-ready" ]] && { echo "$home"; return 0; }
  mkdir -p "$dir"
  zip="$dir/elasticsearch-$VERSION.zip"
  if [[ ! -f "$zip" ]]; then
    command -v mvn >/dev/null || die "mvn not found (needed once, to download Elasticsearch $VERSION from Maven Central)"
    log "downloading Elasticsearch $VERSION from Maven Central into $dir ..."
    mvn -q -B dependency:copy -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$VERSION:zip" \
      -DoutputDirectory="$dir" >"$dir/mvn.log" 2>&1 ||
      die "could not fetch org.elasticsearch.distribution.integ-test-zip:elasticsearch:$VERSION:zip: $(grep -m 1 ERROR "$dir/mvn.log" || tail -n 3 "$dir/mvn.log")"
  fi
  tmp="$(mktemp -d "$dir/unpack.XXXXXX")"
  UNPACKING="$tmp"
  trap 'rm -rf "${UNPACKING:-}"' EXIT # a failed install leaves no half-made distribution behind
  unpack "$zip" "$tmp" || { rm -f "$zip"; die "$zip is not a readable zip (removed; the next start fetches it again)"; }
  [[ -x "$tmp/elasticsearch-$VERSION/bin/elasticsearch" ]] || chmod +x "$tmp/elasticsearch-$VERSION"/bin/*
  [[ -d "$tmp/elasticsearch-$VERSION/modules/transport-netty4" ]] || die "integ-test zip $VERSION lacks transport-netty4"
  rm -rf "$home"
  mv "$tmp/elasticsearch-$VERSION" "$home"
  rmdir "$tmp"
  UNPACKING=
  touch "$home/.sparsebridge-ready"
  echo "$home"
}

do_stop() {
  local pid launcher i
  pid="$(node_pid)"
  launcher="$(launcher_pid)"
  if [[ -z "$pid" && -z "$launcher" ]]; then log "not running"; rm -f "$PIDFILE" "$LAUNCHFILE"; return 0; fi
  log "stopping pid ${pid:-$launcher}"
  kill -TERM ${pid:-} ${launcher:-} 2>/dev/null || true
  for i in $(seq 1 60); do # 30 s grace, then KILL
    kill -0 ${pid:-} ${launcher:-} 2>/dev/null || break
    sleep 0.5
  done
  for p in ${pid:-} ${launcher:-}; do
    if kill -0 "$p" 2>/dev/null; then
      log "pid $p still alive after 30 s, sending KILL"
      kill -KILL "$p" 2>/dev/null || true
      while kill -0 "$p" 2>/dev/null; do sleep 0.2; done
    fi
  done
  rm -f "$PIDFILE" "$LAUNCHFILE"
  log "stopped"
}

do_start() {
  local pid home jh deadline launcher=() extra=()
  pid="$(node_pid)"
  if [[ -n "$pid" ]]; then
    if healthy; then
      node_matches || die "stop that node first (scripts/elasticsearch.sh stop), or set another ELASTICSEARCH_PORT"
      log "already running (pid $pid, Elasticsearch $(node_version))"
      echo "$URL"
      return 0
    fi
    log "pid $pid is running but not healthy: restarting it"
    do_stop
  elif healthy; then
    die "something not started by this script already answers on $URL (set ELASTICSEARCH_PORT)"
  fi

  jh="$(java_home)" # no download without a JDK for it
  home="$(install_version)"

  if [[ "${ELASTICSEARCH_KEEP_DATA:-}" == 1 && -d "$RUN/data" ]]; then
    log "keeping the data in $RUN/data (ELASTICSEARCH_KEEP_DATA=1)"
    rm -rf "$RUN/config" "$RUN/tmp"
  else
    rm -rf "$RUN"
  fi
  mkdir -p "$RUN/data" "$RUN/logs" "$RUN/tmp"
  cp -r "$home/config" "$RUN/config"
  # jvm.options writes heap dumps / crash logs / gc.log relative to the cwd: send them to the run dir.
  sed -i -e "s#HeapDumpPath=data#HeapDumpPath=$RUN/data#" -e "s#=logs/#=$RUN/logs/#g" "$RUN/config/jvm.options"
  cat >"$RUN/config/elasticsearch.yml" <<EOF
cluster.name: sparsebridge
node.name: sparsebridge-es-node
network.host: 127.0.0.1
http.port: $PORT
transport.port: $TPORT
discovery.type: single-node
path.data: $RUN/data
path.logs: $RUN/logs
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
action.auto_create_index: true
EOF
  read -r -a extra <<<"${ELASTICSEARCH_EXTRA_SETTINGS:-}"

  unprivileged_launcher "$RUN_AS" "$RUN" "$home"
  launcher=(${LAUNCHER[@]+"${LAUNCHER[@]}"})

  log "starting Elasticsearch $VERSION from $home (java: $jh) on $URL"
  # setsid: own session, so the node outlives this script and its terminal. The inner sh writes its
  # own pid (the launcher's, once it execs bin/elasticsearch); the server JVM writes $PIDFILE (-p).
  rm -f "$PIDFILE" "$LAUNCHFILE"
  (cd "$home" && export ES_JAVA_HOME="$jh" ES_PATH_CONF="$RUN/config" ES_TMPDIR="$RUN/tmp" \
    ES_JAVA_OPTS="${ELASTICSEARCH_JAVA_OPTS:--Xms512m -Xmx512m}" &&
    exec setsid sh -c 'echo $$ >"$0"; exec "$@"' "$LAUNCHFILE" ${launcher[@]+"${launcher[@]}"} \
      ./bin/elasticsearch -p "$PIDFILE" ${extra[@]+"${extra[@]}"}) </dev/null >"$RUN/logs/console.log" 2>&1 &
  for _ in $(seq 100); do [[ -s "$LAUNCHFILE" ]] && break; sleep 0.1; done
  pid="$(cat "$LAUNCHFILE" 2>/dev/null)" || { cat "$RUN/logs/console.log" >&2; die "launch failed"; }

  deadline=$((SECONDS + ${ELASTICSEARCH_START_TIMEOUT:-150}))
  until healthy; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS > deadline)); then
      log "node did not become healthy; last log lines:"
      tail -n 40 "$RUN/logs/console.log" >&2 || true
      do_stop >/dev/null 2>&1 || true
      kill -KILL "$pid" 2>/dev/null || true
      die "start failed"
    fi
    sleep 1
  done
  node_matches || { do_stop; die "start failed"; }
  log "healthy (pid $(node_pid), Elasticsearch $(node_version))"
  echo "$URL"
}

do_run() {
  [[ $# -gt 0 ]] || die "usage: $0 run COMMAND..."
  if healthy; then
    node_matches || die "stop that node first (scripts/elasticsearch.sh stop), or set another ELASTICSEARCH_PORT"
    log "using the running node (Elasticsearch $(node_version)) on $URL"
  else
    do_start >/dev/null
    trap 'do_stop' EXIT # also when COMMAND fails or is interrupted
  fi
  ELASTICSEARCH_URL="$URL" "$@"
}

do_status() {
  if healthy; then
    log "running, healthy (pid $(node_pid), Elasticsearch $(node_version || echo '?'))"
    echo "$URL"
  else
    log "not running or not healthy at $URL"
    return 1
  fi
}

case "${1:-}" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  run) shift; do_run "$@" ;;
  *) echo "usage: $0 start|stop|status|run COMMAND..." >&2; exit 2 ;;
esac
