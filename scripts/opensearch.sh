#!/usr/bin/env bash
# Run a real single-node OpenSearch 2.19.x on this machine, without Docker.
#
#   scripts/opensearch.sh start|stop|status
#
# Where it comes from: Maven Central (via `mvn`), as
#   - org.opensearch.distribution.integ-test-zip:opensearch:<v>:zip  a runnable node
#     with no bundled JDK and only the transport-netty4 module (HTTP + transport);
#   - org.opensearch.plugin:mapper-extras-client:<v>  the mapper-extras module
#     (rank_feature/rank_features fields and the rank_feature query), installed
#     into modules/mapper-extras/ with a generated plugin-descriptor.properties.
# It runs on the machine's Java (11+; OPENSEARCH_JAVA_HOME, JAVA_HOME or `java` on PATH).
#
# Environment (all optional):
#   OPENSEARCH_VERSION        pin a version (default: newest cached, else newest 2.19.x that resolves)
#   OPENSEARCH_PORT           HTTP port (default 9250); transport port: OPENSEARCH_TRANSPORT_PORT (9350)
#   SPARSEBRIDGE_CACHE        download/unpack cache (default ~/.cache/sparsebridge)
#   OPENSEARCH_HOME_RUN       per-run config/data/logs/pid dir, wiped on start
#                             (default $SPARSEBRIDGE_CACHE/opensearch-run)
#   OPENSEARCH_KEEP_DATA=1    keep $OPENSEARCH_HOME_RUN/data across a restart (a node killed and
#                             restarted keeps its indices: the fault tests); config/logs still renewed
#   OPENSEARCH_JAVA_OPTS      JVM options (default "-Xms512m -Xmx512m")
#   OPENSEARCH_EXTRA_SETTINGS space-separated -Ekey=value list, e.g. "-Ethread_pool.write.queue_size=1"
#   OPENSEARCH_START_TIMEOUT  seconds to wait for yellow health (default 120)
#   OPENSEARCH_PLUGINS        unsupported; any value fails fast. (neural-search and ml-commons release
#                             zips are not on Maven Central, and k-NN only as 2.19.0.0, which cannot load
#                             into a 2.19.4 node: plugins must match the node's version exactly.)
#
# OpenSearch refuses to run as root. As root (CI), the node runs as the system user
# `opensearch` (created if absent) with the single ambient capability DAC_OVERRIDE,
# so it can still use the cache under /root (mode 700) without changing any permissions.
set -euo pipefail

CACHE="${SPARSEBRIDGE_CACHE:-$HOME/.cache/sparsebridge}"
RUN="${OPENSEARCH_HOME_RUN:-$CACHE/opensearch-run}"
PORT="${OPENSEARCH_PORT:-9250}"
TPORT="${OPENSEARCH_TRANSPORT_PORT:-9350}"
URL="http://127.0.0.1:$PORT"
PIDFILE="$RUN/opensearch.pid"
CANDIDATES="2.19.4 2.19.3 2.19.2 2.19.1 2.19.0" # newest first
RUN_AS=opensearch                                 # only used when invoked as root

log() { echo "[opensearch.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

healthy() { curl -fsS -o /dev/null --max-time 5 "$URL/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null; }

# Pid of our running node, or nothing (pid file present, process alive and really OpenSearch).
node_pid() {
  local pid
  [[ -f "$PIDFILE" ]] || return 0
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'org.opensearch.bootstrap.OpenSearch'; then echo "$pid"; fi
}

# Extract a zip into a directory (unzip if present, else Python's zipfile).
unpack() {
  if command -v unzip >/dev/null; then unzip -q -o "$1" -d "$2"; else python3 -m zipfile -e "$1" "$2"; fi
}

# mvn download of one artifact into a directory; quiet, returns mvn's status.
mvn_get() { mvn -q -B dependency:copy -Dartifact="$1" -DoutputDirectory="$2" >"$2/mvn.log" 2>&1; }

# Ensure $CACHE/opensearch-<v>/home is a complete distribution (with mapper-extras); echo its path.
install_version() {
  local v="$1" dir="$CACHE/opensearch-$1" home tmp cls
  home="$dir/home"
  [[ -f "$home/.sparsebridge-ready" ]] && { echo "$home"; return 0; }
  mkdir -p "$dir"
  log "downloading OpenSearch $v from Maven Central into $dir ..."
  [[ -f "$dir/opensearch-$v.zip" ]] ||
    mvn_get "org.opensearch.distribution.integ-test-zip:opensearch:$v:zip" "$dir" || return 1
  [[ -f "$dir/mapper-extras-client-$v.jar" ]] ||
    mvn_get "org.opensearch.plugin:mapper-extras-client:$v" "$dir" || return 1
  tmp="$(mktemp -d "$dir/unpack.XXXXXX")"
  # A corrupt download must not stick in the cache: drop it so the next run fetches it again.
  unpack "$dir/opensearch-$v.zip" "$tmp" || { rm -rf "$tmp" "$dir/opensearch-$v.zip"; return 1; }
  chmod +x "$tmp/opensearch-$v"/bin/*
  [[ -d "$tmp/opensearch-$v/modules/transport-netty4" ]] || die "integ-test zip $v lacks transport-netty4"
  # mapper-extras module: jar + descriptor (plugin class name read from the jar: it was renamed across versions).
  mkdir -p "$tmp/opensearch-$v/modules/mapper-extras"
  cp "$dir/mapper-extras-client-$v.jar" "$tmp/opensearch-$v/modules/mapper-extras/mapper-extras-$v.jar"
  cls="$(python3 - "$dir/mapper-extras-client-$v.jar" <<'EOF'
import re, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
print(next(n[:-6].replace("/", ".") for n in names if re.fullmatch(r"org/opensearch/index/mapper/MapperExtras\w*Plugin\.class", n)))
EOF
)"
  cat >"$tmp/opensearch-$v/modules/mapper-extras/plugin-descriptor.properties" <<EOF
description=Adds advanced field mappers (rank_feature, rank_features, ...)
version=$v
name=mapper-extras
classname=$cls
java.version=11
opensearch.version=$v
extended.plugins=
has.native.controller=false
EOF
  rm -rf "$home"
  mv "$tmp/opensearch-$v" "$home"
  rmdir "$tmp"
  touch "$home/.sparsebridge-ready"
  echo "$home"
}

# Pick and install a version: pinned, else newest already cached, else newest that downloads.
resolve_home() {
  local v
  if [[ -n "${OPENSEARCH_VERSION:-}" ]]; then
    install_version "$OPENSEARCH_VERSION" || die "could not fetch OpenSearch $OPENSEARCH_VERSION (see $CACHE/opensearch-$OPENSEARCH_VERSION/mvn.log)"
    return
  fi
  for v in $CANDIDATES; do
    [[ -f "$CACHE/opensearch-$v/home/.sparsebridge-ready" ]] && { echo "$CACHE/opensearch-$v/home"; return; }
  done
  command -v mvn >/dev/null || die "mvn not found (needed once, to download OpenSearch)"
  for v in $CANDIDATES; do
    install_version "$v" && return
    log "OpenSearch $v did not resolve, trying an older one"
  done
  die "no OpenSearch 2.19.x could be downloaded (see $CACHE/opensearch-*/mvn.log)"
}

java_home() {
  local j
  if [[ -n "${OPENSEARCH_JAVA_HOME:-}" ]]; then echo "$OPENSEARCH_JAVA_HOME"; return; fi
  if [[ -n "${JAVA_HOME:-}" ]]; then echo "$JAVA_HOME"; return; fi
  j="$(command -v java)" || die "java not found (need Java 11+, e.g. 17)"
  dirname "$(dirname "$(readlink -f "$j")")"
}

do_stop() {
  local pid i
  pid="$(node_pid)"
  if [[ -z "$pid" ]]; then log "not running"; rm -f "$PIDFILE"; return 0; fi
  log "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 60); do # 30 s grace, then KILL
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "still alive after 30 s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  fi
  rm -f "$PIDFILE"
  log "stopped"
}

do_start() {
  local pid home jh deadline launcher=() caps=() extra=()
  pid="$(node_pid)"
  if [[ -n "$pid" ]]; then
    if healthy; then log "already running (pid $pid)"; echo "$URL"; return 0; fi
    log "pid $pid is running but not healthy: restarting it"
    do_stop
  elif healthy; then
    die "something not started by this script already answers on $URL (set OPENSEARCH_PORT)"
  fi

  home="$(resolve_home)"
  jh="$(java_home)"

  # Clean per-run directory: private copy of the config (so the distribution stays read-only), data, logs, tmp.
  if [[ "${OPENSEARCH_KEEP_DATA:-}" == 1 && -d "$RUN/data" ]]; then
    log "keeping the data in $RUN/data (OPENSEARCH_KEEP_DATA=1)"
    rm -rf "$RUN/config" "$RUN/tmp"
  else
    rm -rf "$RUN"
  fi
  mkdir -p "$RUN/data" "$RUN/logs" "$RUN/tmp"
  cp -r "$home/config" "$RUN/config"
  # jvm.options writes heap dumps / crash logs / gc.log relative to the cwd: send them to the run dir.
  sed -i -e "s#HeapDumpPath=data#HeapDumpPath=$RUN/data#" -e "s#=logs/#=$RUN/logs/#g" "$RUN/config/jvm.options"
  cat >"$RUN/config/opensearch.yml" <<EOF
cluster.name: sparsebridge
node.name: sparsebridge-node
network.host: 127.0.0.1
http.port: $PORT
transport.port: $TPORT
discovery.type: single-node
path.data: $RUN/data
path.logs: $RUN/logs
cluster.routing.allocation.disk.threshold_enabled: false
action.auto_create_index: true
EOF
  read -r -a extra <<<"${OPENSEARCH_EXTRA_SETTINGS:-}"

  if [[ "$(id -u)" == 0 ]]; then
    id "$RUN_AS" >/dev/null 2>&1 || useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$RUN_AS"
    chown -R "$RUN_AS:" "$RUN"
    launcher=(setpriv --reuid="$RUN_AS" --regid="$RUN_AS" --init-groups)
    # Keep one capability, DAC_OVERRIDE, so the unprivileged node can read the distribution under a
    # root-only $HOME; no_setuid_fixup makes access(2) (Java's Files.exists) honour it too.
    caps=(--inh-caps=+dac_override --ambient-caps=+dac_override --securebits=+no_setuid_fixup)
    if "${launcher[@]}" "${caps[@]}" true 2>/dev/null; then
      launcher+=("${caps[@]}")
    else
      log "warning: cannot grant DAC_OVERRIDE; $home and $RUN must be readable by user $RUN_AS"
    fi
  fi

  log "starting OpenSearch from $home (java: $jh) on $URL"
  # setsid: own session, so the node outlives this script and its terminal. The inner sh writes its
  # own pid, then execs (setpriv ->) bin/opensearch, which execs java: that pid is the node's.
  # (Not -d: that forks, and we want the pid at once to notice an early death.)
  rm -f "$PIDFILE"
  (cd "$home" && export OPENSEARCH_JAVA_HOME="$jh" OPENSEARCH_PATH_CONF="$RUN/config" OPENSEARCH_TMPDIR="$RUN/tmp" \
    OPENSEARCH_JAVA_OPTS="${OPENSEARCH_JAVA_OPTS:--Xms512m -Xmx512m}" &&
    exec setsid sh -c 'echo $$ >"$0"; exec "$@"' "$PIDFILE" ${launcher[@]+"${launcher[@]}"} \
      ./bin/opensearch -p "$PIDFILE" ${extra[@]+"${extra[@]}"}) </dev/null >"$RUN/logs/console.log" 2>&1 &
  for _ in $(seq 100); do [[ -s "$PIDFILE" ]] && break; sleep 0.1; done
  pid="$(cat "$PIDFILE" 2>/dev/null)" || { cat "$RUN/logs/console.log" >&2; die "launch failed"; }

  deadline=$((SECONDS + ${OPENSEARCH_START_TIMEOUT:-120}))
  until healthy; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS > deadline)); then
      log "node did not become healthy; last log lines:"
      tail -n 40 "$RUN/logs/console.log" >&2 || true
      kill -KILL "$pid" 2>/dev/null || true
      die "start failed"
    fi
    sleep 1
  done
  log "healthy (pid $(node_pid), $(basename "$(dirname "$home")"))"
  echo "$URL"
}

do_status() {
  if healthy; then
    log "running, healthy (pid $(node_pid))"
    echo "$URL"
  else
    log "not running or not healthy at $URL"
    return 1
  fi
}

[[ -z "${OPENSEARCH_PLUGINS:-}" ]] || die "OPENSEARCH_PLUGINS=$OPENSEARCH_PLUGINS: extra plugins (e.g. neural) are not available from Maven Central"

case "${1:-}" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
