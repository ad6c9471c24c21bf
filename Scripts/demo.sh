#!/usr/bin/env bash
# Runs NocoBridge locally on an embedded default: a throwaway PostgreSQL with a NocoDB-shaped
# base and a SecantusDB replica set, the bridge between them, a little sample traffic on the
# NocoDB side (as managers editing in the grid) and on the MongoDB side (as the restaurant's
# apps), and a live status table. Ctrl-C (or --seconds N) stops everything it started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
seconds=0
[ "${1:-}" = "--seconds" ] && seconds="${2:-30}"
nb_ensure_swift
nb_install_deps
dir=$(mktemp -d /tmp/nbdemo.XXXXXX)
bridge_pid=""
cleanup() {
  [ -n "$bridge_pid" ] && kill "$bridge_pid" 2>/dev/null && wait "$bridge_pid" 2>/dev/null
  nb_stop_services "$dir"; rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
nb_start_services "$dir"
# shellcheck disable=SC1091
source "$dir/env"
cd "$NB_ROOT"
swift build -c release --product nocobridge >/dev/null
bin="$(swift build -c release --show-bin-path)/nocobridge"
export SYNC_PG_SCHEMA=pnocobridgedemo MONGO_DB=restaurant
export STATUS_ADDR="127.0.0.1:$(nb_free_port)"
psql -q "$PG_URL" -v ON_ERROR_STOP=1 -f Scripts/demo-schema.sql
"$bin" install
"$bin" run >"$dir/bridge.log" 2>&1 &
bridge_pid=$!
nb_log "bridge running (log: $dir/bridge.log); PG_URL=$PG_URL MONGO_URL=$MONGO_URL MONGO_DB=$MONGO_DB"
nb_log "live status: curl http://$STATUS_ADDR/status   metrics: curl http://$STATUS_ADDR/metrics"
start=$(date +%s)
i=0
while :; do
  i=$((i + 1))
  psql -q "$PG_URL" -v ON_ERROR_STOP=1 <<SQL
INSERT INTO pnocobridgedemo.waiter_ops (table_no, action, notes) VALUES ($((i % 12 + 1)), 'seat', 'demo $i');
INSERT INTO pnocobridgedemo.chef_orders (items, status)
  VALUES ('[{"dish": "soup", "qty": $((i % 3 + 1))}]', 'new');
UPDATE pnocobridgedemo.chef_orders SET status = 'cooking' WHERE id = $(( (i + 1) / 2 ));
INSERT INTO pnocobridgedemo.cashier_txns (amount, currency, method) VALUES ($i.50, 'EUR', 'card');
SQL
  # The restaurant's apps on MongoDB: a waiter app inserts (without a key: the bridge assigns
  # one), the kitchen app moves an order along.
  "$NB_VENV/bin/python" - "$MONGO_URL" "$i" <<'PY'
import sys, datetime, pymongo
db = pymongo.MongoClient(sys.argv[1])["restaurant"]
i = int(sys.argv[2])
now = datetime.datetime.now(datetime.timezone.utc)
db.waiter_ops.insert_one({"table_no": i % 12 + 1, "action": "order", "notes": "from the app %d" % i, "updatedAt": now})
db.chef_orders.update_one({"status": "new"}, {"$set": {"status": "ready", "updatedAt": now}})
PY
  if [ $((i % 5)) -eq 0 ]; then
    psql -q "$PG_URL" -c "DELETE FROM pnocobridgedemo.waiter_ops WHERE id = $((i - 3))"
  fi
  clear 2>/dev/null || true
  echo "NocoBridge demo — round $i (Ctrl-C to stop); status: http://$STATUS_ADDR/status"
  "$bin" status || true
  echo; echo "last bridge log lines:"; tail -n 3 "$dir/bridge.log" | cut -c1-160
  if [ "$seconds" -gt 0 ] && [ $(( $(date +%s) - start )) -ge "$seconds" ]; then break; fi
  sleep 1
done
