-- A NocoDB base as NocoDB 2026 creates it on PostgreSQL (see shared/nocodb/fixture-schema.sql):
-- a schema named after the base id, system columns first, no triggers or defaults for
-- created_at/updated_at. Used by Scripts/demo.sh and the benchmark.
CREATE SCHEMA IF NOT EXISTS "pnocobridgedemo";

CREATE TABLE IF NOT EXISTS "pnocobridgedemo"."waiter_ops" (
  "id" serial, "created_at" timestamp NULL, "updated_at" timestamp NULL,
  "created_by" character varying NULL, "updated_by" character varying NULL,
  "nc_order" numeric NULL, "__nc_deleted" bool NULL DEFAULT false,
  "externalId" text NULL, "updatedAt" timestamp NULL, "source" text NULL, "version" bigint NULL,
  "table_no" bigint NULL, "action" text NULL, "notes" text NULL,
  PRIMARY KEY ("id"));
CREATE INDEX IF NOT EXISTS "waiter_ops_order_idx" ON "pnocobridgedemo"."waiter_ops" ("nc_order");

CREATE TABLE IF NOT EXISTS "pnocobridgedemo"."chef_orders" (
  "id" serial, "created_at" timestamp NULL, "updated_at" timestamp NULL,
  "created_by" character varying NULL, "updated_by" character varying NULL,
  "nc_order" numeric NULL, "__nc_deleted" bool NULL DEFAULT false,
  "externalId" text NULL, "updatedAt" timestamp NULL, "source" text NULL, "version" bigint NULL,
  "items" json NULL, "status" text NULL,
  PRIMARY KEY ("id"));
CREATE INDEX IF NOT EXISTS "chef_orders_order_idx" ON "pnocobridgedemo"."chef_orders" ("nc_order");

CREATE TABLE IF NOT EXISTS "pnocobridgedemo"."cashier_txns" (
  "id" serial, "created_at" timestamp NULL, "updated_at" timestamp NULL,
  "created_by" character varying NULL, "updated_by" character varying NULL,
  "nc_order" numeric NULL, "__nc_deleted" bool NULL DEFAULT false,
  "externalId" text NULL, "updatedAt" timestamp NULL, "source" text NULL, "version" bigint NULL,
  "amount" decimal NULL, "currency" text NULL, "method" text NULL,
  PRIMARY KEY ("id"));
CREATE INDEX IF NOT EXISTS "cashier_txns_order_idx" ON "pnocobridgedemo"."cashier_txns" ("nc_order");
