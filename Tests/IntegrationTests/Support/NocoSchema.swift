/// The tables NocoDB creates for a base (see shared/nocodb/fixture-schema.sql): system columns
/// first, no triggers, no defaults for created_at/updated_at, plus a `type_zoo` table holding
/// one column of every type the bridge maps.
enum NocoSchema {
    static func ddl(schema: String) -> String {
        let s = "\"\(schema)\""
        let system = """
              "id"           serial,
              "created_at"   timestamp NULL,
              "updated_at"   timestamp NULL,
              "created_by"   character varying NULL,
              "updated_by"   character varying NULL,
              "nc_order"     numeric NULL,
              "__nc_deleted" bool NULL DEFAULT false,
              "externalId"   text NULL,
              "updatedAt"    timestamp NULL,
              "source"       text NULL,
              "version"      bigint NULL,
            """
        return """
            CREATE SCHEMA \(s);
            CREATE TABLE \(s)."waiter_ops" (
            \(system)
              "table_no" bigint NULL, "action" text NULL, "notes" text NULL,
              PRIMARY KEY ("id"));
            CREATE INDEX "waiter_ops_order_idx" ON \(s)."waiter_ops" ("nc_order");
            CREATE TABLE \(s)."chef_orders" (
            \(system)
              "items" json NULL, "status" text NULL,
              PRIMARY KEY ("id"));
            CREATE INDEX "chef_orders_order_idx" ON \(s)."chef_orders" ("nc_order");
            CREATE TABLE \(s)."cashier_txns" (
            \(system)
              "amount" decimal NULL, "currency" text NULL, "method" text NULL,
              PRIMARY KEY ("id"));
            CREATE INDEX "cashier_txns_order_idx" ON \(s)."cashier_txns" ("nc_order");
            CREATE TABLE \(s)."type_zoo" (
            \(system)
              "small" smallint NULL, "int" integer NULL, "big" bigint NULL, "dbl" double precision NULL,
              "amount" numeric NULL, "flag" boolean NULL, "at" timestamp NULL, "at_tz" timestamptz NULL,
              "day" date NULL, "doc" json NULL, "docb" jsonb NULL, "tags" text NULL, "json_text" text NULL,
              "label" character varying NULL,
              PRIMARY KEY ("id"));
            """
    }
}
