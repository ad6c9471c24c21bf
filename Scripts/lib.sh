# Shared helpers for NocoBridge scripts: dependency install and throwaway servers.
# Sourced, not run. Every server started here is stopped by PID by `nb_stop_services`.

NB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NB_VENV="${NOCOBRIDGE_VENV:-$HOME/.cache/nocobridge/venv}"
NB_SECANTUS_VERSION="0.7.0b3"
NB_JSONSCHEMA_VERSION="4.26.0"
NB_REFERENCING_VERSION="0.37.0"
NB_PYYAML_VERSION="6.0.2"
NB_PG_BIN="${NB_PG_BIN:-/usr/lib/postgresql/15/bin}"

# libmongoc keeps statistics counters in shared memory; every process killed mid-run (the
# SIGKILL tests, the chaos run) leaks a /dev/shm segment, and once shared memory runs short
# libmongoc prints a warning at load time, before any code of ours runs. Nothing here reads
# those counters.
export MONGOC_DISABLE_SHM=1

nb_log() { printf '[nocobridge] %s\n' "$*" >&2; }

# Installs what a fresh Debian machine lacks: libpq, libmongoc, Postgres 15, SecantusDB.
nb_install_deps() {
  local need=()
  for pkg in libpq-dev libmongoc-dev libbson-dev postgresql-15 pkg-config python3-venv; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
  done
  if [ "${#need[@]}" -gt 0 ]; then
    nb_log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  # The console's browser test drives Debian's chromium headless; the alerting rules are
  # checked with promtool (Debian's prometheus package, without its recommended exporters).
  local extra=()
  command -v chromium >/dev/null 2>&1 || extra+=(chromium fonts-liberation)
  command -v promtool >/dev/null 2>&1 || extra+=(prometheus)
  if [ "${#extra[@]}" -gt 0 ]; then
    nb_log "installing ${extra[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${extra[@]}" >/dev/null
  fi
  if ! "$NB_VENV/bin/python" -c "import importlib.metadata as m; assert m.version('SecantusDB') == '$NB_SECANTUS_VERSION'" 2>/dev/null; then
    nb_log "installing SecantusDB $NB_SECANTUS_VERSION into $NB_VENV"
    python3 -m venv "$NB_VENV"
    "$NB_VENV/bin/pip" install -q "SecantusDB==$NB_SECANTUS_VERSION"
  fi
  # JSON Schema validation, imported directly by the NocoDB test double
  # (Tests/Support/nocodb/validation.py: request bodies against NocoDB's swagger.json) and by
  # deploy/check_compose.py (the Compose specification's schema).
  local pkg version
  for pkg in "jsonschema==$NB_JSONSCHEMA_VERSION" "referencing==$NB_REFERENCING_VERSION"; do
    version="${pkg#*==}"
    if ! "$NB_VENV/bin/python" -c "import importlib.metadata as m; assert m.version('${pkg%%==*}') == '$version'" 2>/dev/null; then
      nb_log "installing $pkg into $NB_VENV"
      "$NB_VENV/bin/pip" install -q "$pkg"
    fi
  done
  # deploy/check_compose.py (the compose file against the Compose specification) reads YAML.
  if ! "$NB_VENV/bin/python" -c "import importlib.metadata as m; assert m.version('PyYAML') == '$NB_PYYAML_VERSION'" 2>/dev/null; then
    nb_log "installing PyYAML $NB_PYYAML_VERSION into $NB_VENV"
    "$NB_VENV/bin/pip" install -q "PyYAML==$NB_PYYAML_VERSION"
  fi
}

nb_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

nb_wait_port() { # host port seconds
  local i
  for i in $(seq 1 $(( $3 * 10 ))); do
    python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('$1',$2)))" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# nb_start_postgres DIR: a Postgres 15 cluster on a free port (wal_level=logical).
# Writes DIR/pg.env (PGPORT, PG_URL) and DIR/postgres.pid.
nb_start_postgres() {
  local dir="$1"
  mkdir -p "$dir"
  chmod 755 "$dir"
  local pgport
  pgport=$(nb_free_port)
  local pgdata="$dir/pgdata" sock
  sock=$(mktemp -d /tmp/nbpg.XXXXXX)
  chown postgres "$sock" "$dir"
  if [ ! -d "$pgdata" ]; then
    runuser -u postgres -- "$NB_PG_BIN/initdb" -D "$pgdata" -U postgres -A trust >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; return 1; }
  fi
  runuser -u postgres -- "$NB_PG_BIN/pg_ctl" -D "$pgdata" -l "$dir/postgres.log" -w -t 60 \
    -o "-p $pgport -k $sock -c listen_addresses=127.0.0.1 -c wal_level=logical -c fsync=off -c max_connections=200 -c max_replication_slots=64 -c max_wal_senders=64" \
    start >/dev/null || { cat "$dir/postgres.log" >&2; return 1; }
  head -1 "$pgdata/postmaster.pid" > "$dir/postgres.pid"
  echo "$sock" > "$dir/pgsock"
  printf 'export PGPORT=%s\nexport PG_URL="postgresql://postgres@127.0.0.1:%s/postgres"\n' "$pgport" "$pgport" > "$dir/pg.env"
}

# nb_start_services DIR [durable]: a Postgres 15 cluster and a SecantusDB server on free ports.
# SecantusDB runs with test commands (`configureFailPoint`), as MongoFailureTests need; a
# failpoint there is scoped to one test's own `appName`, so other tests never meet it.
# With `durable` it also runs with --sync-on-commit, for a caller that kills it (the chaos
# tool): mongod journals a majority write before acknowledging it
# (writeConcernMajorityJournalDefault), so a killed mongod keeps every write the bridge was
# told had landed. Without the flag SecantusDB acknowledges from its log buffer and a SIGKILL
# forgets acknowledged writes (`Scripts/durability-probe.py`: 54–80 of 500 majority inserts
# gone), a fault no client can see and production does not have. The flag is not the default:
# the test suite's shared server is never killed, and with an fsync per commit a slow disk
# stalled it past the clients' 10 s socket timeout under the suite's parallel load (CI, stop
# 23: two tests failed reading from it).
# Writes DIR/env (PG_URL, PG_ADMIN_URL, MONGO_URL, PGPORT, MONGO_PORT) and DIR/*.pid.
nb_start_services() {
  local dir="$1" mport pgport durable=()
  [ "${2:-}" = durable ] && durable=(--sync-on-commit)
  nb_start_postgres "$dir" || return 1
  pgport=$(sed -n 's/^export PGPORT=//p' "$dir/pg.env")
  mport=$(nb_free_port)
  "$NB_VENV/bin/secantusd-py" --host 127.0.0.1 --port "$mport" --storage-path "$dir/mongo" \
    --oplog-max-entries 5000000 --enable-test-commands "${durable[@]}" >"$dir/secantus.log" 2>&1 &
  echo $! > "$dir/secantus.pid"
  if [ ${#durable[@]} -gt 0 ]; then printf '%s\n' "${durable[@]}"; fi > "$dir/secantus.flags"
  nb_wait_port 127.0.0.1 "$mport" 60 || { cat "$dir/secantus.log" >&2; return 1; }
  cat > "$dir/env" <<ENV
export PGPORT=$pgport
export MONGO_PORT=$mport
export PG_ADMIN_URL="postgresql://postgres@127.0.0.1:$pgport/postgres"
export PG_URL="postgresql://postgres@127.0.0.1:$pgport/postgres"
export MONGO_URL="mongodb://127.0.0.1:$mport/?replicaSet=secantus"
export NB_SERVICES_DIR="$dir"
export NB_PG_BIN="$NB_PG_BIN"
ENV
}

# Stops what nb_start_services started in DIR, by PID only.
nb_stop_services() {
  local dir="$1"
  [ -d "$dir" ] || return 0
  if [ -f "$dir/secantus.pid" ]; then
    kill "$(cat "$dir/secantus.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$(cat "$dir/secantus.pid")" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$(cat "$dir/secantus.pid")" 2>/dev/null || true
    rm -f "$dir/secantus.pid"
  fi
  if [ -d "$dir/pgdata" ] && [ -f "$dir/pgdata/postmaster.pid" ]; then
    runuser -u postgres -- "$NB_PG_BIN/pg_ctl" -D "$dir/pgdata" -m fast -w stop >/dev/null 2>&1 \
      || kill -9 "$(cat "$dir/postgres.pid" 2>/dev/null)" 2>/dev/null || true
  fi
  if [ -f "$dir/pgsock" ]; then rm -rf "$(cat "$dir/pgsock")"; fi
  return 0
}

# Puts the Swift toolchain on PATH where it is installed but not yet on PATH.
nb_ensure_swift() {
  if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
  fi
  command -v swift >/dev/null 2>&1 || { nb_log "swift is not installed (expected Swift 6.x)"; return 1; }
}

# nb_restart_postgres DIR: a fast restart of the cluster nb_start_services started (same
# port and options; open connections are cut, as in a real restart).
nb_restart_postgres() {
  local dir="$1"
  runuser -u postgres -- "$NB_PG_BIN/pg_ctl" -D "$dir/pgdata" -l "$dir/postgres.log" -m fast -w -t 60 restart >/dev/null \
    || { tail -20 "$dir/postgres.log" >&2; return 1; }
  head -1 "$dir/pgdata/postmaster.pid" > "$dir/postgres.pid"
}

# nb_restart_mongo DIR [crash]: stops the SecantusDB server (SIGTERM, SIGKILL after 5 s; with
# `crash`, SIGKILL at once, as a crashed mongod) and starts it again on the same port and
# storage, with the flags it was started with.
nb_restart_mongo() {
  local dir="$1" mode="${2:-}" port pid flags=()
  [ -s "$dir/secantus.flags" ] && mapfile -t flags < "$dir/secantus.flags"
  port=$(sed -n 's/^export MONGO_PORT=//p' "$dir/env")
  pid=$(cat "$dir/secantus.pid")
  if [ "$mode" = crash ]; then
    kill -9 "$pid" 2>/dev/null || true
  else
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -9 "$pid" 2>/dev/null; then echo "[nocobridge] SecantusDB did not stop within 5 s of SIGTERM: killed" >&2; fi
  fi
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  "$NB_VENV/bin/secantusd-py" --host 127.0.0.1 --port "$port" --storage-path "$dir/mongo" \
    --oplog-max-entries 5000000 --enable-test-commands "${flags[@]}" >>"$dir/secantus.log" 2>&1 &
  echo $! > "$dir/secantus.pid"
  nb_wait_port 127.0.0.1 "$port" 60 || { tail -20 "$dir/secantus.log" >&2; return 1; }
}
