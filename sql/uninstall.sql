-- NocoBridge uninstall script: removes every object install.sql and nocobridge.attach() added,
-- and nothing else. Idempotent: `psql -f sql/uninstall.sql` or `nocobridge uninstall`.
-- Generated from Sources/Bridge/SQL/InstallSQL.swift by `nocobridge sql --uninstall`.
DO $uninstall$
DECLARE
    r record;
BEGIN
    IF to_regclass('nocobridge.synced_tables') IS NOT NULL THEN
        FOR r IN SELECT schema_name, table_name FROM nocobridge.synced_tables LOOP
            PERFORM nocobridge.detach(r.schema_name, r.table_name);
        END LOOP;
    END IF;
END
$uninstall$;
DO $logical$
DECLARE
    v_name text := 'nocobridge_' || left(regexp_replace(lower(current_database()), '[^a-z0-9_]', '_', 'g'), 40);
BEGIN
    PERFORM pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = v_name;
    PERFORM pg_replication_origin_drop(roname) FROM pg_replication_origin
     WHERE roname IN (v_name || '_to_mongo', v_name || '_to_nocodb');
END
$logical$;
DROP PUBLICATION IF EXISTS nocobridge;
DROP SCHEMA IF EXISTS nocobridge CASCADE;
