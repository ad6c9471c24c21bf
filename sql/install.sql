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

-- Last state both sides agreed on, per record; deleted = tombstone.
CREATE TABLE IF NOT EXISTS nocobridge.agreed_state (
    collection  text NOT NULL,
    external_id text NOT NULL,
    fields      jsonb,                           -- canonical text per content field; NULL when deleted
    at_ms       bigint,                          -- updatedAt (or deletion time) in ms since the epoch
    deleted     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (collection, external_id)
);

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
CREATE INDEX IF NOT EXISTS write_intents_key_idx ON nocobridge.write_intents (collection, external_id);
CREATE INDEX IF NOT EXISTS write_intents_batch_idx ON nocobridge.write_intents (owner, batch_id);

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

-- Attaches capture to one table: checks the common columns, creates the unique index on
-- "externalId", a BEFORE row trigger that stamps NocoDB-side edits and an AFTER statement
-- trigger per event that writes the changelog. Generated per table so every column name is
-- exact, quoted and checked once here rather than on each write.
CREATE OR REPLACE FUNCTION nocobridge.attach(p_schema text, p_table text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    v_rel regclass;
    v_pk_join text;
    v_has_deleted boolean;
    v_missing text;
    v_stamp text := nocobridge.function_name(p_schema, p_table, 'stamp');
    v_capture text := nocobridge.function_name(p_schema, p_table, 'capture');
    v_live_new text;
    v_live_old text;
    v_index text := left(p_table, 40) || '_externalId_nb_key';
    v_dups text;
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

    EXECUTE format('SELECT string_agg(quote_literal(k), '', '') FROM (SELECT "externalId" AS k FROM %I.%I
                    WHERE "externalId" <> '''' GROUP BY 1 HAVING count(*) > 1 LIMIT 5) d', p_schema, p_table)
        INTO v_dups;
    IF v_dups IS NOT NULL THEN
        RAISE EXCEPTION 'nocobridge: table %.% has duplicate "externalId" values (%); make them unique first',
            p_schema, p_table, v_dups;
    END IF;
    v_first := NOT EXISTS (SELECT 1 FROM nocobridge.synced_tables
                           WHERE schema_name = p_schema AND table_name = p_table);
    -- Rows from before the bridge get a key now, written as the bridge (not stamped, not captured twice).
    PERFORM set_config('nocobridge.origin', 'bridge', true);
    EXECUTE format('UPDATE %I.%I SET "externalId" = gen_random_uuid()::text
                    WHERE "externalId" IS NULL OR "externalId" = ''''', p_schema, p_table);
    PERFORM set_config('nocobridge.origin', '', true);

    EXECUTE format('CREATE UNIQUE INDEX IF NOT EXISTS %I ON %I.%I ("externalId")', v_index, p_schema, p_table);
    EXECUTE format('DROP INDEX IF EXISTS %I.%I', p_schema, left(p_table, 40) || '_externalId_nb_idx');

    EXECUTE format($body$
CREATE OR REPLACE FUNCTION nocobridge.%1$I() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $trg$
BEGIN
    IF current_setting('nocobridge.origin', true) = 'bridge' THEN
        RETURN NEW;
    END IF;
    BEGIN
        IF TG_OP = 'INSERT' THEN
            -- A pasted or duplicated row copies an existing key: it is a new record.
            IF NEW."externalId" IS NULL OR NEW."externalId" = ''
               OR EXISTS (SELECT 1 FROM %2$I.%3$I t WHERE t."externalId" = NEW."externalId") THEN
                NEW."externalId" := gen_random_uuid()::text;
            END IF;
            NEW."version" := coalesce(NEW."version", 0) + 1;
        ELSE
            IF NEW."externalId" IS NULL OR NEW."externalId" = '' THEN
                NEW."externalId" := coalesce(nullif(OLD."externalId", ''), gen_random_uuid()::text);
            END IF;
            NEW."version" := coalesce(OLD."version", 0) + 1;
        END IF;
        NEW."updatedAt" := date_trunc('milliseconds', clock_timestamp() AT TIME ZONE 'UTC');
        NEW."source" := 'nocodb';
    EXCEPTION WHEN OTHERS THEN
        PERFORM nocobridge.record_capture_error(TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, SQLSTATE, SQLERRM);
    END;
    RETURN NEW;
END
$trg$
$body$, v_stamp, p_schema, p_table);

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

    EXECUTE format('DROP TRIGGER IF EXISTS nocobridge_stamp ON %I.%I', p_schema, p_table);
    EXECUTE format('CREATE TRIGGER nocobridge_stamp BEFORE INSERT OR UPDATE ON %I.%I
                    FOR EACH ROW EXECUTE FUNCTION nocobridge.%I()', p_schema, p_table, v_stamp);
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

-- Removes what attach added to one table (triggers, functions, the unique index).
CREATE OR REPLACE FUNCTION nocobridge.detach(p_schema text, p_table text)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    IF to_regclass(format('%I.%I', p_schema, p_table)) IS NOT NULL THEN
        EXECUTE format('DROP TRIGGER IF EXISTS nocobridge_stamp ON %I.%I', p_schema, p_table);
        EXECUTE format('DROP TRIGGER IF EXISTS nocobridge_capture_insert ON %I.%I', p_schema, p_table);
        EXECUTE format('DROP TRIGGER IF EXISTS nocobridge_capture_update ON %I.%I', p_schema, p_table);
        EXECUTE format('DROP TRIGGER IF EXISTS nocobridge_capture_delete ON %I.%I', p_schema, p_table);
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
-- captures): the triggers come off and the table is registered for logical capture.
CREATE OR REPLACE FUNCTION nocobridge.attach_logical(p_schema text, p_table text)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM nocobridge.detach(p_schema, p_table);
    -- A plain index for the bridge's reads by key: not unique, so NocoDB's "duplicate row"
    -- still works; the bridge gives the copy a fresh key when it reads the insert.
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I ("externalId")',
                   left(p_table, 40) || '_externalId_nb_idx', p_schema, p_table);
    INSERT INTO nocobridge.synced_tables (schema_name, table_name, capture) VALUES (p_schema, p_table, 'logical')
    ON CONFLICT (schema_name, table_name) DO UPDATE SET capture = 'logical';
END
$fn$;

-- Grants a login role exactly what `nocobridge run`, `resync` and `dlq` need, so the daemon
-- does not run as a superuser or as the tables' owner: the bridge schema's tables, and
-- SELECT/INSERT/UPDATE/DELETE on the synced tables (plus their sequences; with logical
-- capture, the replication origin function). Installing
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
    -- Logical capture: the bridge marks its own writes with a replication origin, which
    -- PostgreSQL reserves to superusers unless granted. Streaming the slot also needs the
    -- role's REPLICATION attribute, which only a superuser can give (ALTER ROLE … REPLICATION).
    IF EXISTS (SELECT 1 FROM nocobridge.synced_tables WHERE capture = 'logical') THEN
        BEGIN
            EXECUTE format('GRANT EXECUTE ON FUNCTION pg_catalog.pg_replication_origin_session_setup(text) TO %I', p_role);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'nocobridge: only a superuser can grant pg_replication_origin_session_setup(text) to %, which logical capture needs', p_role;
        END;
    END IF;
END
$fn$;
