#!/usr/bin/env bash
# Run a real single-node OpenSearch (2.19.x or 3.x) on this machine, without Docker.
#
#   scripts/opensearch.sh start|stop|status
#   scripts/opensearch.sh run COMMAND...   start a node unless ours already runs, run COMMAND with
#                                          OPENSEARCH_URL set, stop the node if this call started it;
#                                          exits with COMMAND's status
#
# Where it comes from: Maven Central (via `mvn`), as
#   - org.opensearch.distribution.integ-test-zip:opensearch:<v>:zip  a runnable node with no bundled
#     JDK. The 2.19.x zips hold only the transport-netty4 module; the 3.x zips hold all the modules.
#   - org.opensearch.plugin:mapper-extras-client:<v>  the mapper-extras module (rank_feature/rank_features
#     fields and the rank_feature query), installed into modules/mapper-extras/ with a generated
#     plugin-descriptor.properties when the zip lacks it (2.19.x).
#   - with OPENSEARCH_PLUGINS=knn: org.opensearch.plugin:opensearch-knn:<v>.0:zip, installed with
#     bin/opensearch-plugin, plus the modules it extends when the zip lacks them (lang-painless:
#     org.opensearch.plugin:lang-painless:<v> and its jar dependencies). Maven Central has k-NN 2.19.1.0
#     and 3.5.0.0 only (a plugin must match its node's version exactly), and without the native
#     libraries: the Lucene engine serves knn_vector, faiss and nmslib cannot.
# Java: 2.19.x runs on Java 11+, 3.x needs Java 21+. The first JDK that is new enough is taken, from
# OPENSEARCH_JAVA_HOME (which must be), JAVA_HOME, `java` on PATH, then /usr/lib/jvm/* and /opt/*.
#
# Environment (all optional):
#   OPENSEARCH_VERSION        pin a version, e.g. 3.5.0 (default: newest cached, else newest 2.19.x
#                             that resolves)
#   OPENSEARCH_PLUGINS        extra plugins, comma-separated; supported: knn
#   OPENSEARCH_PORT           HTTP port (default 9250); transport port: OPENSEARCH_TRANSPORT_PORT (9350)
#   SPARSEBRIDGE_CACHE        download/unpack cache (default ~/.cache/sparsebridge); one distribution
#                             per version and plugin set: $SPARSEBRIDGE_CACHE/opensearch-<v>/home[-<plugins>]
#   OPENSEARCH_HOME_RUN       per-run config/data/logs/pid dir, wiped on start (default
#                             $SPARSEBRIDGE_CACHE/opensearch-run, or opensearch-run-<port> off port 9250)
#   OPENSEARCH_KEEP_DATA=1    keep $OPENSEARCH_HOME_RUN/data across a restart (a node killed and
#                             restarted keeps its indices: the fault tests); config/logs still renewed
#   OPENSEARCH_JAVA_OPTS      JVM options (default "-Xms512m -Xmx512m")
#   OPENSEARCH_EXTRA_SETTINGS space-separated -Ekey=value list, e.g. "-Ethread_pool.write.queue_size=1"
#   OPENSEARCH_START_TIMEOUT  seconds to wait for yellow health (default 120)
#
# OpenSearch refuses to run as root. As root (CI), the node runs as the system user
# `opensearch` (created if absent) with the single ambient capability DAC_OVERRIDE,
# so it can still use the cache under /root (mode 700) without changing any permissions.
set -euo pipefail

CACHE="${SPARSEBRIDGE_CACHE:-$HOME/.cache/sparsebridge}"
PORT="${OPENSEARCH_PORT:-9250}"
RUN="${OPENSEARCH_HOME_RUN:-$CACHE/opensearch-run$([[ "$PORT" == 9250 ]] || echo "-$PORT")}"
TPORT="${OPENSEARCH_TRANSPORT_PORT:-9350}"
URL="http://127.0.0.1:$PORT"
PIDFILE="$RUN/opensearch.pid"
CANDIDATES="2.19.4 2.19.3 2.19.2 2.19.1 2.19.0" # newest first
RUN_AS=opensearch                                 # only used when invoked as root
# The plugins asked for, sorted and deduplicated; PLUGINS_TAG names their distribution directory.
PLUGINS="$(tr ', ' '\n\n' <<<"${OPENSEARCH_PLUGINS:-}" | sed '/^$/d' | sort -u | xargs)"
PLUGINS_TAG="${PLUGINS// /-}"

log() { echo "[opensearch.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shellcheck source=lib/jvm_node.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/jvm_node.sh"

healthy() { curl -fsS -o /dev/null --max-time 5 "$URL/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null; }

# "<version> <plugin> ..." of the node answering on $URL.
node_describe() {
  local v plugins
  v="$(curl -fsS --max-time 5 "$URL/" | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"]["number"])')" || return 1
  plugins="$(curl -fsS --max-time 5 "$URL/_cat/plugins?h=component" | sort -u | xargs)" || return 1
  echo "$v${plugins:+ $plugins}"
}

# Does the node on $URL run the pinned version (if any) and the plugins asked for? Says why not.
node_matches() {
  local d p
  d="$(node_describe)" || { log "cannot read the version and plugins of the node on $URL"; return 1; }
  if [[ -n "${OPENSEARCH_VERSION:-}" && "${d%% *}" != "$OPENSEARCH_VERSION" ]]; then
    log "the node on $URL runs OpenSearch ${d%% *}, not $OPENSEARCH_VERSION"
    return 1
  fi
  for p in $PLUGINS; do
    [[ " $d " == *" opensearch-$p "* ]] || { log "the node on $URL runs without the $p plugin (it has: ${d#* })"; return 1; }
  done
}

# Pid of our running node, or nothing (pid file present, process alive and really OpenSearch).
node_pid() {
  local pid
  [[ -f "$PIDFILE" ]] || return 0
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q 'org.opensearch.bootstrap.OpenSearch'; then echo "$pid"; fi
}

# mvn download of one artifact into a directory; quiet, returns mvn's status.
mvn_get() { mvn -q -B dependency:copy -Dartifact="$1" -DoutputDirectory="$2" >>"$2/mvn.log" 2>&1; }

# One property of the plugin-descriptor.properties inside a plugin zip.
zip_descriptor() {
  python3 - "$1" "$2" <<'EOF'
import sys, zipfile
lines = zipfile.ZipFile(sys.argv[1]).read("plugin-descriptor.properties").decode().splitlines()
print(next((l.split("=", 1)[1].strip() for l in lines if l.startswith(sys.argv[2] + "=")), ""))
EOF
}

# A JDK home new enough for OpenSearch $1: Java 11+ for 2.x, 21+ for 3.x (order: see the header).
java_home() {
  local need=11
  [[ "${1%%.*}" -lt 3 ]] || need=21
  find_java "$need" "OpenSearch $1" OPENSEARCH_JAVA_HOME
}

# Install module $2 of OpenSearch $1 into the distribution $3 from Maven Central: its jar and the jars
# it depends on outside OpenSearch itself, with a generated plugin-descriptor.properties (the plugin
# class is read from the jar: it was renamed across versions) and the module's security policy.
install_module() {
  local v="$1" name="$2" mod="$3/modules/$2" jars="$CACHE/opensearch-$1/$2-jars" artifact pattern desc cls policy=""
  case "$name" in
    mapper-extras)
      artifact=mapper-extras-client pattern='org/opensearch/index/mapper/MapperExtras\w*Plugin\.class'
      desc="Adds advanced field mappers (rank_feature, rank_features, ...)" ;;
    lang-painless)
      artifact=lang-painless pattern='org/opensearch/painless/Painless\w*Plugin\.class'
      desc="An easy, safe and fast scripting language for OpenSearch"
      policy='grant { permission java.lang.RuntimePermission "createClassLoader"; permission java.lang.RuntimePermission "getClassLoader"; };' ;;
    *) return 1 ;;
  esac
  if [[ ! -f "$jars/.complete" ]]; then
    rm -rf "$jars"
    mkdir -p "$jars"
    # A throwaway pom that depends on the module without OpenSearch's own jars (the node has those).
    cat >"$jars/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
  <groupId>sparsebridge.local</groupId><artifactId>$name-jars</artifactId><version>0</version><packaging>pom</packaging>
  <dependencies><dependency><groupId>org.opensearch.plugin</groupId><artifactId>$artifact</artifactId><version>$v</version>
    <exclusions><exclusion><groupId>org.opensearch</groupId><artifactId>*</artifactId></exclusion></exclusions>
  </dependency></dependencies>
</project>
EOF
    (cd "$jars" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=jars >mvn.log 2>&1) ||
      { log "could not fetch org.opensearch.plugin:$artifact:$v (see $jars/mvn.log)"; return 1; }
    touch "$jars/.complete"
  fi
  mkdir -p "$mod"
  cp "$jars"/jars/*.jar "$mod/"
  cls="$(python3 - "$mod/$artifact-$v.jar" "$pattern" <<'EOF'
import re, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
print(next(n[:-6].replace("/", ".") for n in names if re.fullmatch(sys.argv[2], n)))
EOF
)" || { log "no plugin class in $artifact-$v.jar"; return 1; }
  cat >"$mod/plugin-descriptor.properties" <<EOF
description=$desc
version=$v
name=$name
classname=$cls
java.version=11
opensearch.version=$v
extended.plugins=
has.native.controller=false
EOF
  [[ -z "$policy" ]] || echo "$policy" >"$mod/plugin-security.policy"
}

# Install the k-NN plugin of OpenSearch $1 (plugin version $1.0) into the distribution $2, with the
# modules it extends.
install_knn() {
  local v="$1" os="$2" pv="$1.0" dir="$CACHE/opensearch-$1" zip p
  zip="$dir/opensearch-knn-$pv.zip"
  [[ -f "$zip" ]] || mvn_get "org.opensearch.plugin:opensearch-knn:$pv:zip" "$dir" ||
    die "the k-NN plugin org.opensearch.plugin:opensearch-knn:$pv is not on Maven Central (see $dir/mvn.log);" \
      "a plugin loads only into its own OpenSearch version: pin an OPENSEARCH_VERSION that has one, e.g. 3.5.0 or 2.19.1"
  for p in $(zip_descriptor "$zip" extended.plugins | tr ',' ' '); do
    [[ ! -d "$os/modules/$p" && ! -d "$os/plugins/$p" ]] || continue
    [[ "$p" == lang-painless ]] || die "k-NN $pv extends the plugin $p, which OpenSearch $v lacks and this script cannot install"
    log "installing the lang-painless module that k-NN extends"
    install_module "$v" lang-painless "$os" || die "could not install lang-painless $v (needed by k-NN $pv)"
  done
  OPENSEARCH_JAVA_HOME="$(java_home "$v")" "$os/bin/opensearch-plugin" install --batch "file://$zip" >"$dir/plugin-install.log" 2>&1 ||
    die "bin/opensearch-plugin could not install $zip: $(tail -n 5 "$dir/plugin-install.log")"
}

# Ensure $CACHE/opensearch-<v>/home[-<plugins>] is a complete distribution (mapper-extras, the plugins
# of OPENSEARCH_PLUGINS); echo its path. Returns 1 when OpenSearch <v> itself cannot be fetched.
install_version() {
  local v="$1" dir="$CACHE/opensearch-$1" home tmp p
  home="$dir/home${PLUGINS_TAG:+-$PLUGINS_TAG}"
  [[ -f "$home/.sparsebridge-ready" ]] && { echo "$home"; return 0; }
  mkdir -p "$dir"
  log "downloading OpenSearch $v from Maven Central into $dir ..."
  [[ -f "$dir/opensearch-$v.zip" ]] ||
    mvn_get "org.opensearch.distribution.integ-test-zip:opensearch:$v:zip" "$dir" || return 1
  tmp="$(mktemp -d "$dir/unpack.XXXXXX")"
  UNPACKING="$tmp"
  trap 'rm -rf "${UNPACKING:-}"' EXIT # a failed install (die) leaves no half-made distribution behind
  # A corrupt download must not stick in the cache: drop it so the next run fetches it again.
  unpack "$dir/opensearch-$v.zip" "$tmp" || { rm -rf "$tmp" "$dir/opensearch-$v.zip"; return 1; }
  chmod +x "$tmp/opensearch-$v"/bin/*
  [[ -d "$tmp/opensearch-$v/modules/transport-netty4" ]] || die "integ-test zip $v lacks transport-netty4"
  [[ -d "$tmp/opensearch-$v/modules/mapper-extras" ]] ||
    install_module "$v" mapper-extras "$tmp/opensearch-$v" || { rm -rf "$tmp"; return 1; }
  for p in $PLUGINS; do "install_$p" "$v" "$tmp/opensearch-$v"; done
  rm -rf "$home"
  mv "$tmp/opensearch-$v" "$home"
  rmdir "$tmp"
  UNPACKING=
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
    [[ -f "$CACHE/opensearch-$v/home${PLUGINS_TAG:+-$PLUGINS_TAG}/.sparsebridge-ready" ]] && { echo "$CACHE/opensearch-$v/home${PLUGINS_TAG:+-$PLUGINS_TAG}"; return; }
  done
  command -v mvn >/dev/null || die "mvn not found (needed once, to download OpenSearch)"
  for v in $CANDIDATES; do
    install_version "$v" && return
    log "OpenSearch $v did not resolve, trying an older one"
  done
  die "no OpenSearch 2.19.x could be downloaded (see $CACHE/opensearch-*/mvn.log)"
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
  local pid home v jh deadline launcher=() extra=()
  pid="$(node_pid)"
  if [[ -n "$pid" ]]; then
    if healthy; then
      node_matches || die "stop that node first (scripts/opensearch.sh stop), or set another OPENSEARCH_PORT"
      log "already running (pid $pid, OpenSearch $(node_describe))"
      echo "$URL"
      return 0
    fi
    log "pid $pid is running but not healthy: restarting it"
    do_stop
  elif healthy; then
    die "something not started by this script already answers on $URL (set OPENSEARCH_PORT)"
  fi

  [[ -z "${OPENSEARCH_VERSION:-}" ]] || java_home "$OPENSEARCH_VERSION" >/dev/null # no download without a JDK for it
  home="$(resolve_home)"
  v="$(basename "$(dirname "$home")")"
  jh="$(java_home "${v#opensearch-}")"

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

  unprivileged_launcher "$RUN_AS" "$RUN" "$home"
  launcher=(${LAUNCHER[@]+"${LAUNCHER[@]}"})

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
  node_matches || { kill -KILL "$pid" 2>/dev/null || true; die "start failed"; }
  log "healthy (pid $(node_pid), OpenSearch $(node_describe))"
  echo "$URL"
}

do_run() {
  [[ $# -gt 0 ]] || die "usage: $0 run COMMAND..."
  if healthy; then
    node_matches || die "stop that node first (scripts/opensearch.sh stop), or set another OPENSEARCH_PORT"
    log "using the running node (OpenSearch $(node_describe)) on $URL"
  else
    do_start >/dev/null
    trap 'do_stop' EXIT # also when COMMAND fails or is interrupted
  fi
  OPENSEARCH_URL="$URL" "$@"
}

do_status() {
  if healthy; then
    log "running, healthy (pid $(node_pid), OpenSearch $(node_describe || echo '?'))"
    echo "$URL"
  else
    log "not running or not healthy at $URL"
    return 1
  fi
}

for p in $PLUGINS; do [[ "$p" == knn ]] || die "OPENSEARCH_PLUGINS: unsupported plugin '$p' (supported: knn)"; done

case "${1:-}" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  run) shift; do_run "$@" ;;
  *) echo "usage: $0 start|stop|status|run COMMAND..." >&2; exit 2 ;;
esac
