#!/usr/bin/env bash
# Runs every test on a fresh or prepared machine: installs what is missing (apt, pip),
# starts a throwaway PostgreSQL 15 and SecantusDB on free ports, builds, runs `swift test`,
# and stops only what it started, also on failure or SIGTERM. Extra arguments go to
# `swift test` (e.g. --filter ToMongoTests); without them the short chaos runs follow the
# tests (Scripts/chaos.sh, 20 faults each: trigger capture, then logical capture).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
nb_ensure_swift
nb_install_deps
dir=$(mktemp -d /tmp/nbtest.XXXXXX)
cleanup() { nb_stop_services "$dir"; rm -rf "$dir"; }
trap cleanup EXIT
trap 'exit 143' TERM INT
nb_start_services "$dir"
# shellcheck disable=SC1091
source "$dir/env"
export NB_VENV
cd "$NB_ROOT"
swift build --build-tests
swift test --skip-build "$@"
if [ "$#" -eq 0 ]; then
  bash "$NB_ROOT/Scripts/chaos.sh" --faults 20 --seed 1 --capture triggers
  bash "$NB_ROOT/Scripts/chaos.sh" --faults 20 --seed 5 --capture logical
  # Three bridges sharing the tables (about 1.5 min here).
  bash "$NB_ROOT/Scripts/chaos.sh" --faults 20 --seed 3 --instances 3
  # Two bridges passing the logical slot's lease between them (about 2 min here).
  bash "$NB_ROOT/Scripts/chaos.sh" --faults 20 --seed 7 --capture logical --instances 2
fi
