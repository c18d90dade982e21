# shellcheck shell=bash
# What scripts/opensearch.sh and scripts/elasticsearch.sh share (sourced by both; they define log
# and die): unpacking a zip, finding a JDK that is new enough, and running the node as an
# unprivileged user when invoked as root.

# Extract a zip into a directory (unzip if present, else Python's zipfile).
unpack() {
  if command -v unzip >/dev/null; then unzip -q -o "$1" -d "$2"; else python3 -m zipfile -e "$1" "$2"; fi
}

# The Java feature release (17, 21, 25, ...) of a JDK home, or nothing.
java_major() {
  local v
  v="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$1/release" 2>/dev/null || true)"
  [[ -n "$v" ]] || v="$("$1/bin/java" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1 || true)"
  echo "$v"
}

# find_java NEED WHAT PINNED_VAR: a JDK home of Java NEED+ for WHAT (e.g. "OpenSearch 3.5.0"). The
# variable named PINNED_VAR (e.g. OPENSEARCH_JAVA_HOME), when set, is taken and must be new enough;
# else the first new enough of JAVA_HOME, `java` on PATH, /usr/lib/jvm/* and /opt/*.
find_java() {
  local need="$1" what="$2" pinned_var="$3" pinned jh j major candidates=()
  pinned="${!pinned_var:-}"
  if [[ -n "$pinned" ]]; then
    major="$(java_major "$pinned")"
    [[ "${major:-0}" -ge "$need" ]] || die "$pinned_var=$pinned is Java ${major:-(unknown)}; $what needs Java $need+"
    echo "$pinned"
    return
  fi
  [[ -z "${JAVA_HOME:-}" ]] || candidates+=("$JAVA_HOME")
  if j="$(command -v java)"; then candidates+=("$(dirname "$(dirname "$(readlink -f "$j")")")"); fi
  for jh in /usr/lib/jvm/* /opt/*; do [[ ! -x "$jh/bin/java" ]] || candidates+=("$jh"); done
  for jh in ${candidates[@]+"${candidates[@]}"}; do
    major="$(java_major "$jh")"
    [[ "${major:-0}" -lt "$need" ]] || { echo "$jh"; return; }
  done
  die "no Java $need+ found for $what (looked at JAVA_HOME, java on PATH, /usr/lib/jvm, /opt); set $pinned_var"
}

# unprivileged_launcher USER RUN_DIR HOME: set LAUNCHER to the command prefix that runs the node as
# USER (created if absent) when this script runs as root, owning RUN_DIR; empty otherwise. The node
# keeps one capability, DAC_OVERRIDE, so it can read the distribution HOME under a root-only $HOME;
# no_setuid_fixup makes access(2) (Java's Files.exists) honour it too.
unprivileged_launcher() {
  local user="$1" run="$2" home="$3" caps
  LAUNCHER=()
  [[ "$(id -u)" == 0 ]] || return 0
  id "$user" >/dev/null 2>&1 || useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$user"
  chown -R "$user:" "$run"
  LAUNCHER=(setpriv --reuid="$user" --regid="$user" --init-groups)
  caps=(--inh-caps=+dac_override --ambient-caps=+dac_override --securebits=+no_setuid_fixup)
  if "${LAUNCHER[@]}" "${caps[@]}" true 2>/dev/null; then
    LAUNCHER+=("${caps[@]}")
  else
    log "warning: cannot grant DAC_OVERRIDE; $home and $run must be readable by user $user"
  fi
}
