#!/usr/bin/env bash
# Checks what deploy/ gives Prometheus and Grafana users: the alerting rules parse
# (`promtool check rules`) and fire as deploy/alerts.test.yml expects (`promtool test rules`),
# the dashboard is valid JSON whose panels all query Prometheus, and, given a scrape of a
# running bridge's /metrics, every nocobridge_* metric the rules and the dashboard name
# exists in it. Run by the integration tests (MonitoringTests) with a live scrape.
# Usage: Scripts/check-monitoring.sh [METRICS_SCRAPE_FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v promtool >/dev/null 2>&1 || { echo "check-monitoring: promtool is missing (apt-get install prometheus)" >&2; exit 2; }
promtool check rules deploy/alerts.yml
promtool test rules deploy/alerts.test.yml
python3 - deploy/grafana-dashboard.json <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
problems = []
for panel in dashboard["panels"]:
    if panel.get("datasource", {}).get("uid") != "${datasource}":
        problems.append(f"panel {panel['title']!r} does not use the dashboard's datasource variable")
    targets = panel.get("targets") or []
    if not targets or not all(t.get("expr", "").strip() for t in targets):
        problems.append(f"panel {panel['title']!r} has a target without a query")
ids = [p["id"] for p in dashboard["panels"]]
if len(ids) != len(set(ids)):
    problems.append("panel ids are not unique")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"dashboard: {len(dashboard['panels'])} panels")
PY
if [ "$#" -ge 1 ]; then
  scrape="$1"
  missing=0
  names=$(grep -hoE 'nocobridge_[a-z0-9_]+' deploy/alerts.yml deploy/alerts.test.yml deploy/grafana-dashboard.json | sort -u)
  for name in $names; do
    if ! grep -qE "^${name}(\{| )" "$scrape"; then
      echo "check-monitoring: $name is named in deploy/ but not exported at /metrics" >&2
      missing=1
    fi
  done
  [ "$missing" -eq 0 ] || exit 1
  echo "metrics: all $(echo "$names" | wc -w) named metrics exported"
fi
