#!/usr/bin/env bash
# Benchmark: starts its own PostgreSQL and a fresh SecantusDB (or uses PG_URL/MONGO_URL when
# both are set), builds release, then runs nocobridge-bench, which drives the `nocobridge`
# binary as a child process and measures it against raw floors taken in the same run on the
# same servers. Prints a table; JSON goes to $BENCH_JSON (default bench-results.json), the
# bridge's own log to $BENCH_BRIDGE_LOG (default beside the JSON).
#   Scripts/bench.sh [--quick] [--phases steady,logical,bulk,resync,history,instances]
#   NOCOBRIDGE_BIN=/path/to/other/nocobridge Scripts/bench.sh …  (measures that build instead)
#   (instances: 1, 2 and 3 bridges sharing six tables through leases)
# Run it alone on the machine: flock /tmp/nocobridge-heavy.lock bash Scripts/bench.sh --quick
set -euo pipefail
source "$(dirname "$0")/lib.sh"
nb_ensure_swift
cd "$NB_ROOT"
json="${BENCH_JSON:-bench-results.json}"
export BENCH_BRIDGE_LOG="${BENCH_BRIDGE_LOG:-${json%.json}-bridge.log}"
: > "$BENCH_BRIDGE_LOG"
bench_pid=""
dir=""
cleanup() {
  # The benchmark stops the bridges it started when it gets SIGTERM; wait for that first.
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  if [ -n "$dir" ]; then nb_stop_services "$dir"; rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT
if [ -z "${PG_URL:-}" ] || [ -z "${MONGO_URL:-}" ]; then
  nb_install_deps
  dir=$(mktemp -d /tmp/nbbench.XXXXXX)
  nb_start_services "$dir"
  # shellcheck disable=SC1091
  source "$dir/env"
fi
config="${BENCH_CONFIG:-release}"
swift build -c "$config" --product nocobridge >&2
swift build -c "$config" --product nocobridge-bench >&2
bin="$(swift build -c "$config" --show-bin-path)"
# NOCOBRIDGE_BIN measures another build of the bridge with this benchmark (a before/after).
NOCOBRIDGE_BIN="${NOCOBRIDGE_BIN:-$bin/nocobridge}" "$bin/nocobridge-bench" "$@" --json "$json" &
bench_pid=$!
wait "$bench_pid"
