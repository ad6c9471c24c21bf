-- Creates the `nocobridge` login role with only the grants the bridge needs. Run as the
-- owner of NocoDB's tables after install.sql and attach():
--   psql -v password="'…'" -f sql/role.sql
-- then connect the bridge as nocobridge (PG_URL=postgresql://nocobridge:…@host/db).
-- The same grants: `nocobridge install --grant-to nocobridge` (role created beforehand).
DO $role$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'nocobridge') THEN
        CREATE ROLE nocobridge LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
END
$role$;
\if :{?password}
ALTER ROLE nocobridge PASSWORD :password;
\endif
SELECT nocobridge.grant_bridge_role('nocobridge');
