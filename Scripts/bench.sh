#!/usr/bin/env bash
# Benchmark: starts its own PostgreSQL and a fresh SecantusDB (or uses PG_URL/MONGO_URL when
# both are set), builds release, measures raw baselines then the bridge in the same run, and
# prints a table; JSON goes to $BENCH_JSON (default bench-results.json).
#   Scripts/bench.sh [--quick] [--instances-only]
#   (--instances-only: just the phase with 1, 2 and 3 bridges sharing six tables)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
nb_ensure_swift
cd "$NB_ROOT"
json="${BENCH_JSON:-bench-results.json}"
if [ -z "${PG_URL:-}" ] || [ -z "${MONGO_URL:-}" ]; then
  nb_install_deps
  dir=$(mktemp -d /tmp/nbbench.XXXXXX)
  cleanup() { nb_stop_services "$dir"; rm -rf "$dir"; }
  trap cleanup EXIT
  trap 'exit 143' TERM INT
  nb_start_services "$dir"
  # shellcheck disable=SC1091
  source "$dir/env"
fi
config="${BENCH_CONFIG:-release}"
swift build -c "$config" --product nocobridge >&2
swift build -c "$config" --product nocobridge-bench >&2
bin="$(swift build -c "$config" --show-bin-path)"
NOCOBRIDGE_BIN="$bin/nocobridge" "$bin/nocobridge-bench" "$@" --json "$json"
