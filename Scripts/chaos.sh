#!/usr/bin/env bash
# Fault run: starts its own PostgreSQL and SecantusDB (it restarts them), then a seeded load
# on both sides while the bridge is SIGKILLed, both servers are restarted and resyncs run.
# Prints operations issued, faults injected, records compared and mismatches; exits 1 on any
# mismatch.
#   Scripts/chaos.sh [--long] [--faults N] [--seed N] [--capture triggers|logical] [--instances N]
#   (default 20 faults, --long 100; trigger capture; one bridge instance. With --instances N,
#   N bridges share the tables through leases: a SIGKILL fault picks one at random, and a
#   SIGSTOP fault freezes one past its lease.)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
nb_ensure_swift
nb_install_deps
faults=20 seed=1 capture=triggers instances=1
while [ $# -gt 0 ]; do
  case "$1" in
    --long) faults=100 ;;
    --faults) faults="$2"; shift ;;
    --seed) seed="$2"; shift ;;
    --capture) capture="$2"; shift ;;
    --instances) instances="$2"; shift ;;
    *) nb_log "unknown argument $1"; exit 2 ;;
  esac
  shift
done
cd "$NB_ROOT"
swift build --product nocobridge >&2
swift build --product nocobridge-chaos >&2
bin="$(swift build --show-bin-path)"
dir=$(mktemp -d /tmp/nbchaos.XXXXXX)
cleanup() {
  if [ -f "$dir/bridge.pid" ]; then
    while read -r pid; do kill -CONT "$pid" 2>/dev/null || true; kill -9 "$pid" 2>/dev/null || true; done < "$dir/bridge.pid"
  fi
  nb_stop_services "$dir"
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
nb_start_services "$dir" durable   # it kills MongoDB: see nb_start_services
# shellcheck disable=SC1091
source "$dir/env"
export NB_VENV
status=0
NOCOBRIDGE_BIN="$bin/nocobridge" NB_SCRIPTS_DIR="$NB_ROOT/Scripts" \
  "$bin/nocobridge-chaos" --faults "$faults" --seed "$seed" --capture "$capture" --instances "$instances" || status=$?
if [ "$status" -ne 0 ]; then
  cp "$dir/chaos-bridge.log" "${TMPDIR:-/tmp}/nocobridge-chaos-failed.log" 2>/dev/null || true
  nb_log "chaos run failed; the bridge log is kept in ${TMPDIR:-/tmp}/nocobridge-chaos-failed.log; its last lines:"
  tail -40 "$dir/chaos-bridge.log" >&2 || true
fi
exit "$status"
