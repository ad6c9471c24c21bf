-- NocoBridge install script: idempotent; run with `psql -f sql/install.sql` or `nocobridge install`.
-- Generated from Sources/Bridge/SQL/InstallSQL.swift by `nocobridge sql`; a test keeps them equal.
-- Everything lives in the "nocobridge" schema. Attach a table with
--   SELECT nocobridge.attach('<schema>', '<table>');
-- Nothing installed here may make NocoDB's own write fail: trigger bodies catch every error,
-- record it in nocobridge.capture_errors and let the write commit.

CREATE SCHEMA IF NOT EXISTS nocobridge;

-- Durable changelog, written by the capture triggers in the writer's own transaction.
-- The bridge deletes a row only after the change is committed in MongoDB, so a late commit
-- of an early transaction (a lower id appearing after higher ids were consumed) is still read.
CREATE TABLE IF NOT EXISTS nocobridge.changelog (
    id          bigserial PRIMARY KEY,
    relid       oid NOT NULL,
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    op          "char" NOT NULL,                 -- I insert/undelete, U update, D delete/soft delete
    key         text,                            -- "externalId" after the change (before, for D)
    old_key     text,                            -- "externalId" before an update
    row_data    json NOT NULL,                   -- new row; old row for a delete (json keeps
                                                 -- json columns' text and key order exactly)
    txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    changed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    origin      text NOT NULL DEFAULT current_setting('application_name')
);
CREATE INDEX IF NOT EXISTS changelog_table_id_idx ON nocobridge.changelog (schema_name, table_name, id);

-- Tables the bridge has attached triggers to.
CREATE TABLE IF NOT EXISTS nocobridge.synced_tables (
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    key_column  text NOT NULL DEFAULT 'externalId',
    attached_at timestamptz NOT NULL DEFAULT now(),
    needs_reconcile boolean NOT NULL DEFAULT false,
    PRIMARY KEY (schema_name, table_name)
);

-- How each table's NocoDB changes are captured: 'triggers' (changelog) or 'logical'
-- (replication slot, no triggers on the table).
ALTER TABLE nocobridge.synced_tables ADD COLUMN IF NOT EXISTS capture text NOT NULL DEFAULT 'triggers';

-- Errors the triggers swallowed so that NocoDB's write could commit; the table is then
-- flagged for reconciliation (resync) instead of failing the user's edit.
CREATE TABLE IF NOT EXISTS nocobridge.capture_errors (
    id          bigserial PRIMARY KEY,
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    op          text NOT NULL,
    sqlstate    text NOT NULL,
    message     text NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Changes that could not cross, with the reason; the flow continues without them.
CREATE TABLE IF NOT EXISTS nocobridge.dead_letters (
    id          bigserial PRIMARY KEY,
    direction   text NOT NULL,                   -- to-mongo | to-nocodb
    source_name text NOT NULL,                   -- schema.table or db.collection
    key         text,
    field       text,
    error       text NOT NULL,
    op          text NOT NULL,
    payload     jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retries     integer NOT NULL DEFAULT 0,
    last_retry_at timestamptz
);

-- A dead letter's payload as jsonb; jsonb refuses the \u0000 escape that json (and so a
-- NocoDB JSON field) accepts, and a refused payload must not block the dead letter itself.
CREATE OR REPLACE FUNCTION nocobridge.payload(p json) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    RETURN p::jsonb;
EXCEPTION WHEN others THEN
    RETURN to_jsonb(p::text);
END $fn$;

-- Stream positions (MongoDB resume tokens, replication LSNs), committed together with the
-- writes they cover.
CREATE TABLE IF NOT EXISTS nocobridge.positions (
    stream      text PRIMARY KEY,
    position    bytea,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- MongoDB _id (raw BSON of the value) to externalId, so a delete event (which carries only
-- _id) finds its record.
CREATE TABLE IF NOT EXISTS nocobridge.key_map (
    collection  text NOT NULL,
    mongo_id    bytea NOT NULL,
    external_id text NOT NULL,
    PRIMARY KEY (collection, mongo_id)
);
CREATE INDEX IF NOT EXISTS key_map_external_idx ON nocobridge.key_map (collection, external_id);
-- When the pair was last seen: a key whose document was deleted and made again has several
-- _ids, and the latest is its document now.
ALTER TABLE nocobridge.key_map ADD COLUMN IF NOT EXISTS seen_at timestamptz NOT NULL DEFAULT clock_timestamp();

-- Last state both sides agreed on, per record; deleted = tombstone.
CREATE TABLE IF NOT EXISTS nocobridge.agreed_state (
    collection  text NOT NULL,
    external_id text NOT NULL,
    fields      jsonb,                           -- canonical text per content field; NULL when deleted
    at_ms       bigint,                          -- updatedAt (or deletion time) in ms since the epoch
    deleted     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (collection, external_id)
);
-- Each save of an agreed state takes the next number of nocobridge.agreed_seq (NULL: saved
-- before this column existed). The MongoDB → NocoDB flow reads the sequence before asking the
-- change stream for more events: a record saved with a higher number since may have been
-- written to MongoDB by a bridge after the server looked its document up, so that event's
-- document is not taken for MongoDB's state and the record is read again.
CREATE SEQUENCE IF NOT EXISTS nocobridge.agreed_seq;
ALTER TABLE nocobridge.agreed_state ADD COLUMN IF NOT EXISTS seq bigint;

-- MongoDB writes the bridge is about to make, committed before it makes them and deleted in
-- the transaction that records the agreed state. One left behind means its writer died in
-- between: the write may or may not have happened, and the next instance finds out before
-- deciding anything about that record. `owner` names the writer; the writer holds a session
-- advisory lock on it while alive.
CREATE TABLE IF NOT EXISTS nocobridge.write_intents (
    id          bigserial PRIMARY KEY,
    owner       text NOT NULL,
    batch_id    bigint NOT NULL,
    collection  text NOT NULL,
    external_id text NOT NULL,
    fields      jsonb,                           -- the state written, as in agreed_state
    at_ms       bigint,
    deleted     boolean NOT NULL DEFAULT false
);
-- When the intent was journalled: recovery keeps a dead writer's intent that has not landed for
-- a while (IntentRecovery.unlandedGraceSeconds), since a killed client's last command can still
-- be in its socket, read and run by MongoDB after the client is gone and after `currentOp` was asked.
ALTER TABLE nocobridge.write_intents ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS write_intents_key_idx ON nocobridge.write_intents (collection, external_id);
CREATE INDEX IF NOT EXISTS write_intents_batch_idx ON nocobridge.write_intents (owner, batch_id);
-- The writer that journalled the intent, kept when `owner` is handed to a dead writer's name
-- (WriteJournal.abandonAll when a flow restarts): the transaction recording the batch deletes
-- its intents by it, so a batch still in flight on the collection's other flow is not left
-- behind as a dead writer's (seen as a restore test adopting a stale intent as landed).
ALTER TABLE nocobridge.write_intents ADD COLUMN IF NOT EXISTS journalled_by text;
CREATE INDEX IF NOT EXISTS write_intents_journalled_idx ON nocobridge.write_intents (journalled_by, batch_id);

-- Collections held while MongoDB is restored under the running bridge (a synced collection
-- dropped or renamed, its database dropped: how `mongorestore --drop` begins). Their changes
-- wait; once the collection has been quiet for a few seconds the table is reconciled as after
-- a restore of MongoDB (`resync --restored mongo`: NocoDB's newer state wins, deletions stay
-- deleted) and the hold ends. Kept here so a bridge restarted meanwhile still holds.
CREATE TABLE IF NOT EXISTS nocobridge.table_holds (
    collection  text PRIMARY KEY,
    reason      text NOT NULL,
    since       timestamptz NOT NULL DEFAULT now()
);

-- Every resolved conflict: both versions, the winner and the rule that chose it.
CREATE TABLE IF NOT EXISTS nocobridge.conflicts (
    id          bigserial PRIMARY KEY,
    collection  text NOT NULL,
    external_id text NOT NULL,
    nocodb_version jsonb,
    mongo_version  jsonb,
    winner      text NOT NULL,
    rule        text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);

-- Record history (the audit trail NocoDB's community edition lacks): per record, what changed
-- on which side, who changed it where NocoDB knows (its updated_by), and what the bridge
-- decided. Written by the bridge in the transaction that records the agreed state (one
-- INSERT per batch), kept SYNC_HISTORY_DAYS, pruned in small batches by the running bridge.
CREATE TABLE IF NOT EXISTS nocobridge.history (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    collection  text NOT NULL,
    external_id text NOT NULL,
    side        text NOT NULL,                   -- nocodb | mongo | both: who changed it since the agreed state
    op          text NOT NULL,                   -- insert | update | delete | rejected
    changed     jsonb,                           -- {field: [before, after]} as that side changed it
    discarded   jsonb,                           -- conflicts: {side: {field: value}} the decision overwrote
    edited_by   text,                            -- NocoDB's updated_by for a change made in NocoDB
    decision    text NOT NULL,                   -- write-mongo | write-nocodb | write-both | agree | dead-letter
    winner      text,                            -- conflicts: nocodb | mongo | merged
    rule        text,                            -- conflicts: the rule that decided
    via         text NOT NULL,                   -- stream | resync
    note        text                             -- dead letters: the error
);
CREATE INDEX IF NOT EXISTS history_key_idx ON nocobridge.history (collection, external_id, at);
-- Pruning finds old rows by time; a BRIN index is a few pages for an append-only table and
-- costs the writer next to nothing.
CREATE INDEX IF NOT EXISTS history_at_brin ON nocobridge.history USING brin (at);

-- Progress of the last resync per table, updated at most once a second by whichever process
-- runs it (CLI, console, `run --on-history-lost=resync`), so every console shows it. A row
-- without finished_at whose pid is gone was interrupted.
CREATE TABLE IF NOT EXISTS nocobridge.resync_progress (
    table_name  text PRIMARY KEY,                -- schema.table
    collection  text NOT NULL,
    done        bigint NOT NULL DEFAULT 0,       -- keys compared so far
    estimate    bigint NOT NULL DEFAULT 0,       -- the larger side's row count at the start
    rate        double precision NOT NULL DEFAULT 0,
    dry_run     boolean NOT NULL DEFAULT false,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    pid         integer NOT NULL DEFAULT pg_backend_pid()
);

-- Work shared between several `nocobridge run` processes: one lease per unit (a synced table's
-- qualified name, both directions together, or 'logical:<slot>' for logical capture, which one
-- instance runs alone). A lease is held while `expires_at` is ahead; its holder renews it every
-- tick. `token` is taken from `lease_token` at each acquisition and checked, FOR SHARE, right
-- before every commit the holder makes for the unit: a holder that lost the lease (frozen past
-- the expiry, partitioned) cannot commit for it afterwards.
CREATE SEQUENCE IF NOT EXISTS nocobridge.lease_token;
CREATE TABLE IF NOT EXISTS nocobridge.leases (
    unit        text PRIMARY KEY,
    holder      text,                            -- instance id; NULL: free
    token       bigint NOT NULL DEFAULT 0,       -- the fencing token of the current holding
    expires_at  timestamptz NOT NULL DEFAULT '-infinity',
    acquired_at timestamptz
);

-- The running instances, each renewing its row every tick. An instance is alive while its row
-- has not expired and its lease session holds the advisory lock on its id, so a killed one
-- (session gone) is known dead at the next tick rather than after the expiry.
CREATE TABLE IF NOT EXISTS nocobridge.instances (
    id           text PRIMARY KEY,
    host         text,
    pid          integer,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS nocobridge.meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO nocobridge.meta (key, value) VALUES ('schema_version', '1')
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;

-- Records a swallowed trigger error; never raises (a failure here only warns).
CREATE OR REPLACE FUNCTION nocobridge.record_capture_error(
    p_schema text, p_table text, p_op text, p_state text, p_message text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    BEGIN
        INSERT INTO nocobridge.capture_errors (schema_name, table_name, op, sqlstate, message)
        VALUES (p_schema, p_table, p_op, p_state, p_message);
        UPDATE nocobridge.synced_tables SET needs_reconcile = true
        WHERE schema_name = p_schema AND table_name = p_table;
        PERFORM pg_notify('nocobridge', p_schema || '.' || p_table);
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'nocobridge: capture on %.% failed (%): %', p_schema, p_table, p_state, p_message;
    END;
END
$fn$;

-- Name of a per-table function: readable, unique, within PostgreSQL's 63-byte limit.
CREATE OR REPLACE FUNCTION nocobridge.function_name(p_schema text, p_table text, p_kind text)
RETURNS text LANGUAGE sql IMMUTABLE AS $fn$
    SELECT p_kind || '_' || left(p_table, 40) || '_' || left(md5(p_schema || '.' || p_table), 8)
$fn$;

-- Whether a query text holds an ON CONFLICT clause, ignoring string literals ('…', E'…',
-- $tag$…$tag$), quoted identifiers and comments (nested /* */ too). A byte-level scan: in
-- UTF-8 every byte of a multi-byte character is >= 0x80, so ASCII tests on bytes are safe,
-- and get_byte is O(1) where substr on text is O(position). About 0.3 µs per byte; texts
-- without the letters "conflict" return at once. Only the duplicate-key path asks, at most
-- once per statement (nocobridge.rekeys_used_key), never per row: per row it is quadratic.
CREATE OR REPLACE FUNCTION nocobridge.has_on_conflict(q text)
RETURNS boolean LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    b bytea;
    n int;
    i int := 0;
    c int;
    d int;
    j int;
    depth int;
    tag bytea;
    tlen int;
    w text;
    st int := 0;                 -- 0 nothing, 1 after ON, 2 after ON CONFLICT
    plain_backslash boolean := current_setting('standard_conforming_strings') = 'off';
    esc boolean;
    prev_ident boolean := false; -- the previous byte ended a word or number (for $ and E'')
    prev_word text := NULL;      -- the word that ended right before this byte
BEGIN
    IF q IS NULL OR position('conflict' IN lower(q)) = 0 THEN
        RETURN false;
    END IF;
    b := convert_to(q, 'UTF8');
    n := length(b);
    WHILE i < n LOOP
        c := get_byte(b, i);
        IF c IN (32, 9, 10, 13, 12) THEN
            i := i + 1; prev_ident := false; prev_word := NULL;
            CONTINUE;
        END IF;
        IF c = 45 AND i + 1 < n AND get_byte(b, i + 1) = 45 THEN            -- -- comment
            i := i + 2;
            WHILE i < n AND get_byte(b, i) NOT IN (10, 13) LOOP i := i + 1; END LOOP;
            prev_ident := false; prev_word := NULL;
            CONTINUE;
        END IF;
        IF c = 47 AND i + 1 < n AND get_byte(b, i + 1) = 42 THEN            -- /* comment */
            depth := 1; i := i + 2;
            WHILE i < n AND depth > 0 LOOP
                d := get_byte(b, i);
                IF d = 47 AND i + 1 < n AND get_byte(b, i + 1) = 42 THEN depth := depth + 1; i := i + 2;
                ELSIF d = 42 AND i + 1 < n AND get_byte(b, i + 1) = 47 THEN depth := depth - 1; i := i + 2;
                ELSE i := i + 1;
                END IF;
            END LOOP;
            prev_ident := false; prev_word := NULL;
            CONTINUE;
        END IF;
        IF c = 39 THEN                                                      -- '…' or E'…'
            esc := plain_backslash OR prev_word = 'e';
            i := i + 1;
            LOOP
                EXIT WHEN i >= n;
                d := get_byte(b, i);
                IF esc AND d = 92 THEN i := i + 2;
                ELSIF d = 39 THEN
                    IF i + 1 < n AND get_byte(b, i + 1) = 39 THEN i := i + 2;
                    ELSE i := i + 1; EXIT;
                    END IF;
                ELSE i := i + 1;
                END IF;
            END LOOP;
            st := 0; prev_ident := false; prev_word := NULL;
            CONTINUE;
        END IF;
        IF c = 34 THEN                                                      -- "identifier"
            i := i + 1;
            LOOP
                EXIT WHEN i >= n;
                IF get_byte(b, i) = 34 THEN
                    IF i + 1 < n AND get_byte(b, i + 1) = 34 THEN i := i + 2;
                    ELSE i := i + 1; EXIT;
                    END IF;
                ELSE i := i + 1;
                END IF;
            END LOOP;
            st := 0; prev_ident := true; prev_word := NULL;
            CONTINUE;
        END IF;
        IF c = 36 AND NOT prev_ident THEN                                   -- $tag$…$tag$ or $1
            j := i + 1;
            IF j < n AND NOT (get_byte(b, j) BETWEEN 48 AND 57) THEN
                WHILE j < n AND (get_byte(b, j) BETWEEN 65 AND 90 OR get_byte(b, j) BETWEEN 97 AND 122
                                 OR get_byte(b, j) BETWEEN 48 AND 57 OR get_byte(b, j) = 95
                                 OR get_byte(b, j) >= 128) LOOP
                    j := j + 1;
                END LOOP;
                IF j < n AND get_byte(b, j) = 36 THEN
                    tag := substr(b, i + 1, j - i + 1);
                    tlen := j - i + 1;
                    i := j + 1;
                    LOOP
                        EXIT WHEN i >= n;
                        IF get_byte(b, i) = 36 AND substr(b, i + 1, tlen) = tag THEN
                            i := i + tlen; EXIT;
                        END IF;
                        i := i + 1;
                    END LOOP;
                    st := 0; prev_ident := false; prev_word := NULL;
                    CONTINUE;
                END IF;
            END IF;
            i := i + 1;
            WHILE i < n AND get_byte(b, i) BETWEEN 48 AND 57 LOOP i := i + 1; END LOOP;
            st := 0; prev_ident := true; prev_word := NULL;
            CONTINUE;
        END IF;
        IF c BETWEEN 65 AND 90 OR c BETWEEN 97 AND 122 OR c = 95 OR c >= 128 THEN   -- word
            j := i + 1;
            WHILE j < n AND (get_byte(b, j) BETWEEN 65 AND 90 OR get_byte(b, j) BETWEEN 97 AND 122
                             OR get_byte(b, j) BETWEEN 48 AND 57 OR get_byte(b, j) = 95
                             OR get_byte(b, j) = 36 OR get_byte(b, j) >= 128) LOOP
                j := j + 1;
            END LOOP;
            IF j - i BETWEEN 1 AND 8 THEN
                w := lower(convert_from(substr(b, i + 1, j - i), 'UTF8'));
            ELSE
                w := '';
            END IF;
            -- ON CONFLICT counts only before "(", "ON CONSTRAINT" or "DO": "conflict" is an
            -- unreserved word, so "JOIN b ON conflict = 1" is not a clause.
            IF st = 2 AND w IN ('on', 'do') THEN RETURN true; END IF;
            IF w = 'on' THEN st := 1;
            ELSIF st = 1 AND w = 'conflict' THEN st := 2;
            ELSE st := 0;
            END IF;
            i := j; prev_ident := true; prev_word := w;
            CONTINUE;
        END IF;
        IF c BETWEEN 48 AND 57 THEN                                         -- number
            j := i + 1;
            WHILE j < n AND (get_byte(b, j) BETWEEN 48 AND 57 OR get_byte(b, j) BETWEEN 65 AND 90
                             OR get_byte(b, j) BETWEEN 97 AND 122 OR get_byte(b, j) IN (46, 95)) LOOP
                j := j + 1;
            END LOOP;
            i := j; st := 0; prev_ident := true; prev_word := NULL;
            CONTINUE;
        END IF;
        IF st = 2 AND c = 40 THEN RETURN true; END IF;                      -- ON CONFLICT (
        st := 0; prev_ident := false; prev_word := NULL;
        i := i + 1;
    END LOOP;
    RETURN false;
END
$fn$;

-- The text of the statement the client sent: current_query(), or for an SQL-level EXECUTE
-- the prepared statement it runs. (Inside a function current_query() is the caller's text,
-- which is why a client can also say what it wants with nocobridge.duplicate_keys.)
CREATE OR REPLACE FUNCTION nocobridge.client_statement()
RETURNS text LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    q text := current_query();
    m text[] := regexp_match(q, '^\s*execute\s+("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)', 'i');
    v_name text;
BEGIN
    IF m IS NULL THEN
        RETURN q;
    END IF;
    v_name := CASE WHEN left(m[1], 1) = '"' THEN replace(substr(m[1], 2, length(m[1]) - 2), '""', '"') ELSE lower(m[1]) END;
    RETURN coalesce((SELECT statement FROM pg_prepared_statements WHERE name = v_name), q);
END
$fn$;

-- Whether this session is NocoDB's: an entry of nocobridge.meta 'nocodb_sessions'
-- (comma separated) equal to its application_name (NocoDB's node-postgres driver takes it
-- from PGAPPNAME), or "role:NAME" equal to its login role.
CREATE OR REPLACE FUNCTION nocobridge.is_nocodb_session(p_sessions text)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT EXISTS (SELECT 1 FROM unnest(string_to_array(p_sessions, ',')) AS e(x)
                   WHERE CASE WHEN btrim(x) LIKE 'role:%' THEN session_user::text = substr(btrim(x), 6)
                              ELSE current_setting('application_name') = btrim(x) END)
$fn$;

-- Marks each INSERT statement on a synced table, so the row trigger knows what kind it is.
-- PostgreSQL fires BEFORE INSERT FOR EACH STATEMENT first for every INSERT (COPY and MERGE
-- too), and for INSERT … ON CONFLICT DO UPDATE (and a MERGE with an UPDATE action) BEFORE
-- UPDATE FOR EACH STATEMENT right after it, before any row trigger, whether or not a row
-- conflicts: whatever protocol, prepared statement or function the INSERT came through.
-- The mark is "relid:trigger depth:kind", transaction-local; the next INSERT overwrites it.
CREATE OR REPLACE FUNCTION nocobridge.mark_statement() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    PERFORM set_config('nocobridge.stmt', TG_RELID::text || ':' || pg_trigger_depth()::text || ':'
                       || CASE TG_OP WHEN 'UPDATE' THEN 'upsert' ELSE 'insert' END, true);
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$fn$;

-- Does an inserted row whose "externalId" another row already has get a fresh key (a new
-- record), or keep it (ON CONFLICT decides, or the unique index refuses as it would for any
-- unique key)? In order:
--   1. INSERT … ON CONFLICT DO UPDATE (statement mark): keep, whoever sends it.
--   2. The session says so: SET nocobridge.duplicate_keys = 'error' (keep) or 'new-record'.
--   3. One of NocoDB's sessions (meta 'nocodb_sessions'): fresh key. NocoDB's duplicate row,
--      paste and CSV import copy keys, and NocoDB never sends ON CONFLICT (0.258.3:
--      packages/nocodb/src/db/BaseModelSqlv2.ts insert/bulkInsert use plain knex inserts).
--   4. Everyone else by meta 'duplicate_keys': 'error' keeps the key (default once NocoDB's
--      sessions are named); 'new-record' (default otherwise) gives a fresh key unless the
--      client's statement text holds ON CONFLICT (DO NOTHING has no structural mark), read
--      once per statement and only for a top-level statement.
CREATE OR REPLACE FUNCTION nocobridge.rekeys_used_key(p_relid oid)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    v_me text := p_relid::text || ':' || pg_trigger_depth()::text || ':';
    v_mark text := coalesce(current_setting('nocobridge.stmt', true), '');
    v_choice text := coalesce(current_setting('nocobridge.duplicate_keys', true), '');
    v_sessions text;
    v_policy text;
    v_conflict boolean;
BEGIN
    IF v_mark = v_me || 'upsert' THEN
        RETURN false;
    END IF;
    IF v_choice = 'error' THEN
        RETURN false;
    ELSIF v_choice = 'new-record' THEN
        RETURN true;
    END IF;
    SELECT max(value) FILTER (WHERE key = 'nocodb_sessions'), max(value) FILTER (WHERE key = 'duplicate_keys')
    INTO v_sessions, v_policy FROM nocobridge.meta WHERE key IN ('nocodb_sessions', 'duplicate_keys');
    v_sessions := coalesce(v_sessions, '');
    IF v_sessions <> '' AND nocobridge.is_nocodb_session(v_sessions) THEN
        RETURN true;
    END IF;
    IF coalesce(v_policy, CASE WHEN v_sessions <> '' THEN 'error' ELSE 'new-record' END) = 'error' THEN
        RETURN false;
    END IF;
    -- current_query() is the client's top-level text: a statement run by a trigger is not in it.
    IF pg_trigger_depth() > 1 THEN
        RETURN true;
    END IF;
    IF v_mark = v_me || 'insert:oc' THEN RETURN false; END IF;
    IF v_mark = v_me || 'insert:no' THEN RETURN true; END IF;
    v_conflict := nocobridge.has_on_conflict(nocobridge.client_statement());
    IF v_mark = v_me || 'insert' THEN
        PERFORM set_config('nocobridge.stmt', v_me || CASE WHEN v_conflict THEN 'insert:oc' ELSE 'insert:no' END, true);
    END IF;
    RETURN NOT v_conflict;
END
$fn$;

-- Makes "externalId" unique on a table: refuses while duplicates exist (they must be made
-- unique first), gives rows from before the bridge a key (written as the bridge: not
-- stamped, not captured twice), then the unique index.
CREATE OR REPLACE FUNCTION nocobridge.ensure_unique_key(p_schema text, p_table text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    v_dups text;
BEGIN
    EXECUTE format('SELECT string_agg(quote_literal(k), '', '') FROM (SELECT "externalId" AS k FROM %I.%I
                    WHERE "externalId" <> '''' GROUP BY 1 HAVING count(*) > 1 LIMIT 5) d', p_schema, p_table)
        INTO v_dups;
    IF v_dups IS NOT NULL THEN
        RAISE EXCEPTION 'nocobridge: table %.% has duplicate "externalId" values (%); make them unique first',
            p_schema, p_table, v_dups;
    END IF;
    PERFORM set_config('nocobridge.origin', 'bridge', true);
    EXECUTE format('UPDATE %I.%I SET "externalId" = gen_random_uuid()::text
                    WHERE "externalId" IS NULL OR "externalId" = ''''', p_schema, p_table);
    PERFORM set_config('nocobridge.origin', '', true);
    EXECUTE format('CREATE UNIQUE INDEX IF NOT EXISTS %I ON %I.%I ("externalId")',
                   left(p_table, 40) || '_externalId_nb_key', p_schema, p_table);
    EXECUTE format('DROP INDEX IF EXISTS %I.%I', p_schema, left(p_table, 40) || '_externalId_nb_idx');
END
$fn$;

-- The per-table BEFORE row trigger: keys (an empty key gets one; a used key per
-- nocobridge.rekeys_used_key) and, with p_stamp (trigger capture), the stamp of an edit made
-- outside the bridge: "updatedAt" = now (UTC, milliseconds, as NocoDB stores DateTime),
-- "source" = 'nocodb', "version" + 1. Together with the statement marks. Generated per
-- table so column names are exact and checked once here rather than on each write.
CREATE OR REPLACE FUNCTION nocobridge.attach_keys(p_schema text, p_table text, p_stamp boolean)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    v_function text := nocobridge.function_name(p_schema, p_table, 'stamp');
    v_trigger text := CASE WHEN p_stamp THEN 'nocobridge_stamp' ELSE 'nocobridge_keys' END;
BEGIN
    EXECUTE format($body$
CREATE OR REPLACE FUNCTION nocobridge.%1$I() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $trg$
BEGIN
    IF current_setting('nocobridge.origin', true) = 'bridge' THEN
        RETURN NEW;
    END IF;
    BEGIN
        IF TG_OP = 'INSERT' THEN
            IF NEW."externalId" IS NULL OR NEW."externalId" = '' THEN
                NEW."externalId" := gen_random_uuid()::text;
            ELSIF EXISTS (SELECT 1 FROM %2$I.%3$I t WHERE t."externalId" = NEW."externalId")
                  AND nocobridge.rekeys_used_key(TG_RELID) THEN
                NEW."externalId" := gen_random_uuid()::text;
            END IF;%4$s
        ELSE
            IF NEW."externalId" IS NULL OR NEW."externalId" = '' THEN
                NEW."externalId" := coalesce(nullif(OLD."externalId", ''), gen_random_uuid()::text);
            END IF;%5$s
        END IF;%6$s
    EXCEPTION WHEN OTHERS THEN
        PERFORM nocobridge.record_capture_error(TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, SQLSTATE, SQLERRM);
    END;
    RETURN NEW;
END
$trg$
$body$, v_function, p_schema, p_table,
        CASE WHEN p_stamp THEN E'\n            NEW."version" := coalesce(NEW."version", 0) + 1;' ELSE '' END,
        CASE WHEN p_stamp THEN E'\n            NEW."version" := coalesce(OLD."version", 0) + 1;' ELSE '' END,
        CASE WHEN p_stamp THEN E'\n        NEW."updatedAt" := date_trunc(''milliseconds'', clock_timestamp() AT TIME ZONE ''UTC'');'
                               || E'\n        NEW."source" := ''nocodb'';' ELSE '' END);
    EXECUTE format('DROP TRIGGER IF EXISTS nocobridge_stamp ON %I.%I', p_schema, p_table);
    EXECUTE format('DROP TRIGGER IF EXISTS nocobridge_keys ON %I.%I', p_schema, p_table);
    EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %I.%I
                    FOR EACH ROW EXECUTE FUNCTION nocobridge.%I()', v_trigger, p_schema, p_table, v_function);
    EXECUTE format('DROP TRIGGER IF EXISTS nocobridge_mark_insert ON %I.%I', p_schema, p_table);
    EXECUTE format('CREATE TRIGGER nocobridge_mark_insert BEFORE INSERT ON %I.%I
                    FOR EACH STATEMENT EXECUTE FUNCTION nocobridge.mark_statement()', p_schema, p_table);
    EXECUTE format('DROP TRIGGER IF EXISTS nocobridge_mark_upsert ON %I.%I', p_schema, p_table);
    EXECUTE format('CREATE TRIGGER nocobridge_mark_upsert BEFORE UPDATE ON %I.%I
                    FOR EACH STATEMENT EXECUTE FUNCTION nocobridge.mark_statement()', p_schema, p_table);
END
$fn$;

-- Attaches trigger capture to one table: checks the common columns, makes "externalId"
-- unique, the key and stamp trigger (nocobridge.attach_keys), and an AFTER statement
-- trigger per event that writes the changelog.
CREATE OR REPLACE FUNCTION nocobridge.attach(p_schema text, p_table text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    v_rel regclass;
    v_pk_join text;
    v_has_deleted boolean;
    v_missing text;
    v_capture text := nocobridge.function_name(p_schema, p_table, 'capture');
    v_live_new text;
    v_live_old text;
    v_first boolean;
BEGIN
    v_rel := to_regclass(format('%I.%I', p_schema, p_table));
    IF v_rel IS NULL THEN
        RAISE EXCEPTION 'nocobridge: table %.% does not exist', p_schema, p_table;
    END IF;
    SELECT string_agg(c, ', ') INTO v_missing
    FROM unnest(ARRAY['externalId', 'updatedAt', 'source', 'version']) AS c
    WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = v_rel AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'nocobridge: table %.% lacks column(s) %', p_schema, p_table, v_missing;
    END IF;
    SELECT string_agg(format('o.%1$I = n.%1$I', a.attname), ' AND ') INTO v_pk_join
    FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
    WHERE i.indrelid = v_rel AND i.indisprimary;
    IF v_pk_join IS NULL THEN
        RAISE EXCEPTION 'nocobridge: table %.% has no primary key', p_schema, p_table;
    END IF;
    v_has_deleted := EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_rel
                             AND a.attname = '__nc_deleted' AND NOT a.attisdropped);
    v_live_new := CASE WHEN v_has_deleted THEN 'NOT coalesce(n."__nc_deleted", false)' ELSE 'true' END;
    v_live_old := CASE WHEN v_has_deleted THEN 'NOT coalesce(o."__nc_deleted", false)' ELSE 'true' END;
    v_first := NOT EXISTS (SELECT 1 FROM nocobridge.synced_tables
                           WHERE schema_name = p_schema AND table_name = p_table);

    PERFORM nocobridge.ensure_unique_key(p_schema, p_table);
    PERFORM nocobridge.attach_keys(p_schema, p_table, true);

    EXECUTE format($body$
CREATE OR REPLACE FUNCTION nocobridge.%1$I() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $trg$
DECLARE
    v_count bigint;
BEGIN
    IF current_setting('nocobridge.origin', true) = 'bridge' THEN
        RETURN NULL;
    END IF;
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO nocobridge.changelog (relid, schema_name, table_name, op, key, row_data)
            SELECT TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME, 'I', n."externalId", row_to_json(n)
            FROM nb_new n WHERE %2$s;
        ELSIF TG_OP = 'UPDATE' THEN
            INSERT INTO nocobridge.changelog (relid, schema_name, table_name, op, key, old_key, row_data)
            SELECT TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME,
                   CASE WHEN (%4$s) AND NOT (%2$s) THEN 'D'
                        WHEN NOT (%4$s) AND (%2$s) THEN 'I'
                        ELSE 'U' END,
                   n."externalId", o."externalId", row_to_json(n)
            FROM nb_new n JOIN nb_old o ON %3$s
            WHERE (%2$s) OR (%4$s);
        ELSE
            INSERT INTO nocobridge.changelog (relid, schema_name, table_name, op, key, row_data)
            SELECT TG_RELID, TG_TABLE_SCHEMA, TG_TABLE_NAME, 'D', o."externalId", row_to_json(o)
            FROM nb_old o WHERE %4$s;
        END IF;
        GET DIAGNOSTICS v_count = ROW_COUNT;
        IF v_count > 0 THEN
            PERFORM pg_notify('nocobridge', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        PERFORM nocobridge.record_capture_error(TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, SQLSTATE, SQLERRM);
    END;
    RETURN NULL;
END
$trg$
$body$, v_capture, v_live_new, v_pk_join, v_live_old);

    EXECUTE format('DROP TRIGGER IF EXISTS nocobridge_capture_insert ON %I.%I', p_schema, p_table);
    EXECUTE format('CREATE TRIGGER nocobridge_capture_insert AFTER INSERT ON %I.%I
                    REFERENCING NEW TABLE AS nb_new
                    FOR EACH STATEMENT EXECUTE FUNCTION nocobridge.%I()', p_schema, p_table, v_capture);
    EXECUTE format('DROP TRIGGER IF EXISTS nocobridge_capture_update ON %I.%I', p_schema, p_table);
    EXECUTE format('CREATE TRIGGER nocobridge_capture_update AFTER UPDATE ON %I.%I
                    REFERENCING NEW TABLE AS nb_new OLD TABLE AS nb_old
                    FOR EACH STATEMENT EXECUTE FUNCTION nocobridge.%I()', p_schema, p_table, v_capture);
    EXECUTE format('DROP TRIGGER IF EXISTS nocobridge_capture_delete ON %I.%I', p_schema, p_table);
    EXECUTE format('CREATE TRIGGER nocobridge_capture_delete AFTER DELETE ON %I.%I
                    REFERENCING OLD TABLE AS nb_old
                    FOR EACH STATEMENT EXECUTE FUNCTION nocobridge.%I()', p_schema, p_table, v_capture);

    INSERT INTO nocobridge.synced_tables (schema_name, table_name, capture) VALUES (p_schema, p_table, 'triggers')
    ON CONFLICT (schema_name, table_name) DO UPDATE SET attached_at = now(), capture = 'triggers';
    -- First attach: the rows already there are queued once, so MongoDB starts complete.
    IF v_first THEN
        EXECUTE format('INSERT INTO nocobridge.changelog (relid, schema_name, table_name, op, key, row_data)
                        SELECT %s, %L, %L, ''I'', n."externalId", row_to_json(n) FROM %I.%I n WHERE %s',
                       v_rel::oid, p_schema, p_table, p_schema, p_table, v_live_new);
    END IF;
END
$fn$;

-- Removes what attach and attach_logical added to one table (triggers, functions, indexes).
CREATE OR REPLACE FUNCTION nocobridge.detach(p_schema text, p_table text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    v_trigger text;
BEGIN
    IF to_regclass(format('%I.%I', p_schema, p_table)) IS NOT NULL THEN
        FOREACH v_trigger IN ARRAY ARRAY['nocobridge_stamp', 'nocobridge_keys', 'nocobridge_mark_insert', 'nocobridge_mark_upsert',
                                         'nocobridge_capture_insert', 'nocobridge_capture_update', 'nocobridge_capture_delete'] LOOP
            EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I.%I', v_trigger, p_schema, p_table);
        END LOOP;
        EXECUTE format('DROP INDEX IF EXISTS %I.%I', p_schema, left(p_table, 40) || '_externalId_nb_key');
        EXECUTE format('DROP INDEX IF EXISTS %I.%I', p_schema, left(p_table, 40) || '_externalId_nb_idx');
    END IF;
    EXECUTE format('DROP FUNCTION IF EXISTS nocobridge.%I()', nocobridge.function_name(p_schema, p_table, 'stamp'));
    EXECUTE format('DROP FUNCTION IF EXISTS nocobridge.%I()', nocobridge.function_name(p_schema, p_table, 'capture'));
    DELETE FROM nocobridge.synced_tables WHERE schema_name = p_schema AND table_name = p_table;
END
$fn$;

-- Logical capture: the slot and replication origins are cluster-wide, so their names carry
-- the database's; the publication is per database.
CREATE OR REPLACE FUNCTION nocobridge.slot_name() RETURNS text LANGUAGE sql STABLE AS $fn$
    SELECT 'nocobridge_' || left(regexp_replace(lower(current_database()), '[^a-z0-9_]', '_', 'g'), 40)
$fn$;

-- Logical capture, step 1 (before the slot exists: the slot decodes with the catalog as of
-- each change, so the publication must predate it): the table added to the "nocobridge"
-- publication and, with p_full, its REPLICA IDENTITY set to FULL so updates and deletes
-- carry the whole old row (a delete needs its "externalId").
CREATE OR REPLACE FUNCTION nocobridge.publish(p_schema text, p_table text, p_full boolean)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    IF p_full THEN
        EXECUTE format('ALTER TABLE %I.%I REPLICA IDENTITY FULL', p_schema, p_table);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'nocobridge') THEN
        EXECUTE format('CREATE PUBLICATION nocobridge FOR TABLE %I.%I', p_schema, p_table);
    ELSIF NOT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = 'nocobridge'
                      AND schemaname = p_schema AND tablename = p_table) THEN
        EXECUTE format('ALTER PUBLICATION nocobridge ADD TABLE %I.%I', p_schema, p_table);
    END IF;
END
$fn$;

-- Logical capture, step 2 (after the slot exists, so no change falls between the two
-- captures): the capture triggers come off and the table is registered for logical capture.
-- With p_key_trigger (the default) "externalId" stays unique and the key trigger stays, so
-- integrations' INSERT … ON CONFLICT ("externalId") and NocoDB's duplicate row behave as with
-- trigger capture; it writes nothing anywhere, it only decides the inserted row's key.
-- Without it nothing is left on the table but a plain index for the bridge's reads: an
-- ON CONFLICT ("externalId") then has no unique index to arbitrate on (as without the
-- bridge), and the bridge gives a copied row a fresh key after the fact.
CREATE OR REPLACE FUNCTION nocobridge.attach_logical(p_schema text, p_table text, p_key_trigger boolean)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM nocobridge.detach(p_schema, p_table);
    IF p_key_trigger THEN
        PERFORM nocobridge.ensure_unique_key(p_schema, p_table);
        PERFORM nocobridge.attach_keys(p_schema, p_table, false);
    ELSE
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I ("externalId")',
                       left(p_table, 40) || '_externalId_nb_idx', p_schema, p_table);
    END IF;
    INSERT INTO nocobridge.synced_tables (schema_name, table_name, capture) VALUES (p_schema, p_table, 'logical')
    ON CONFLICT (schema_name, table_name) DO UPDATE SET capture = 'logical';
END
$fn$;

CREATE OR REPLACE FUNCTION nocobridge.attach_logical(p_schema text, p_table text)
RETURNS void LANGUAGE sql AS $fn$
    SELECT nocobridge.attach_logical(p_schema, p_table, true)
$fn$;

-- Grants a login role exactly what `nocobridge run`, `resync` and `dlq` need, so the daemon
-- does not run as a superuser or as the tables' owner: the bridge schema's tables, and
-- SELECT/INSERT/UPDATE/DELETE on the synced tables (plus their sequences). Installing
-- (triggers, indexes) stays with the owner; the trigger functions run as their definer.
-- Run again after attaching more tables.
CREATE OR REPLACE FUNCTION nocobridge.grant_bridge_role(p_role text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
    s record;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA nocobridge TO %I', p_role);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA nocobridge TO %I', p_role);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA nocobridge TO %I', p_role);
    FOR r IN SELECT schema_name, table_name FROM nocobridge.synced_tables LOOP
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', r.schema_name, p_role);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO %I', r.schema_name, r.table_name, p_role);
        FOR s IN SELECT q.oid::regclass AS seq FROM pg_depend d JOIN pg_class q ON q.oid = d.objid AND q.relkind = 'S'
                 WHERE d.refobjid = format('%I.%I', r.schema_name, r.table_name)::regclass AND d.deptype IN ('a', 'i') LOOP
            EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO %I', s.seq, p_role);
        END LOOP;
    END LOOP;
    -- Logical capture also needs the role's REPLICATION attribute (to stream the slot), which
    -- only a superuser can give: ALTER ROLE … REPLICATION. The bridge marks its own writes
    -- with a logical decoding message, which needs no grant.
END
$fn$;
