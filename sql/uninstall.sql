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
DROP SCHEMA IF EXISTS nocobridge CASCADE;
