#!/usr/bin/env python3
"""NocoDB metadata test server for NocoBridge's tests.

NocoDB cannot run on the test machine. This server stands in for the part of its v2 meta
API the bridge uses: bases, tables, columns, views (grid, form, kanban), view columns and
filters, kept in memory. Tables and columns are created in PostgreSQL the way NocoDB does on
its default base (shared/nocodb/fixture-schema.sql): a schema named after the base id, the
system columns first, user fields typed by uidt, the nc_order index.

Every request and every response is validated against NocoDB's own OpenAPI spec
(shared/nocodb/swagger-v2.json): path and method must exist, required parameters and the
xc-token header must be present, request bodies must match the operation's requestBody
schema, and response bodies the schema of the response code (codes the spec does not list
are checked against its generic error body, components/responses/BadRequest). A violation
is answered with HTTP 599 and appended to the log file, so a test fails on it.

Two deliberate leniencies, each where the spec contradicts NocoDB's own behaviour:
- `oneOf` is checked as "at least one alternative matches". The spec's NormalColumnRequest
  is a oneOf of ~35 field types whose schemas each require only `title`, so every column
  request matches many alternatives and no payload at all could pass a strict oneOf.
- an empty array satisfies `minItems`. The list models (TableList, ProjectList, ...) say
  `minItems: 1`, yet NocoDB answers a base without tables with an empty list.

Fault injection for the client's error paths: --fail 'METHOD REGEX STATUS COUNT' answers the
first COUNT matching requests with STATUS; --delay-ms delays every answer.

Usage: nocodb_meta_server.py --spec swagger-v2.json --pg-url URL --token T --base-id ID
       --base-title TITLE --port-file FILE --log FILE [--fail ...] [--delay-ms N]
"""
import argparse
import json
import os
import random
import re
import string
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
from jsonschema import ValidationError
from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:nocodb:swagger-v2"

# uidt -> PostgreSQL type, as NocoDB's PgUi.getDataTypeForUiType maps them (see the fixture).
UIDT_TYPES = {
    "SingleLineText": "text", "LongText": "text", "Number": "bigint", "Decimal": "decimal",
    "DateTime": "timestamp", "Date": "date", "Checkbox": "bool", "SingleSelect": "text",
    "MultiSelect": "text", "JSON": "json", "Email": "text", "URL": "text", "PhoneNumber": "text",
}

SYSTEM_COLUMNS = [  # (column_name, title, uidt, ddl)
    ("id", "Id", "ID", '"id" serial'),
    ("created_at", "CreatedAt", "CreatedTime", '"created_at" timestamp NULL'),
    ("updated_at", "UpdatedAt", "LastModifiedTime", '"updated_at" timestamp NULL'),
    ("created_by", "nc_created_by", "CreatedBy", '"created_by" character varying NULL'),
    ("updated_by", "nc_updated_by", "LastModifiedBy", '"updated_by" character varying NULL'),
    # 2026's uidt Order and Deleted postdate the spec (0.258): reported as SpecificDBType.
    ("nc_order", "nc_order", "SpecificDBType", '"nc_order" numeric NULL'),
    ("__nc_deleted", "__nc_deleted", "SpecificDBType", '"__nc_deleted" bool NULL DEFAULT false'),
]


def new_id(prefix):
    return prefix + "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(14))


def quote(identifier):
    return '"' + identifier.replace('"', '""') + '"'


def column_name_for(title):
    """NocoDB replaces every non-word character of a title with '_' for the column name."""
    return re.sub(r"\W", "_", title)


def lenient_min_items(validator, min_items, instance, schema):
    if isinstance(instance, list) and instance and len(instance) < min_items:
        yield ValidationError(f"{instance!r} has fewer than {min_items} items")


def lenient_one_of(validator, one_of, instance, schema):
    for alternative in one_of:
        if validator.evolve(schema=alternative).is_valid(instance):
            return
    yield ValidationError(f"{instance!r} matches none of the oneOf alternatives")


class SpecValidator:
    def __init__(self, path):
        with open(path) as f:
            self.spec = json.load(f)
        resource = Resource(contents=self.spec, specification=DRAFT202012)
        self.registry = Registry().with_resource(SPEC_URI, resource)
        self.cls = jsonschema.validators.extend(OAS31Validator, {"oneOf": lenient_one_of, "minItems": lenient_min_items})
        self.routes = []
        for template, item in self.spec["paths"].items():
            pattern = "^" + re.sub(r"\{[^}]+\}", r"([^/]+)", template.rstrip("/")) + "/?$"
            names = re.findall(r"\{([^}]+)\}", template)
            self.routes.append((re.compile(pattern), template, names, item))

    def resolve(self, node):
        while isinstance(node, dict) and "$ref" in node and node["$ref"].startswith("#/"):
            target = self.spec
            for part in node["$ref"][2:].split("/"):
                target = target[part]
            node = target
        return node

    def schema_check(self, schema, instance, what):
        wrapper = {"$ref": SPEC_URI + "#" + schema["$ref"][1:]} if "$ref" in schema else schema
        validator = self.cls(wrapper, registry=self.registry)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            raise ValueError(f"{what}: {e.message[:300]} at {'/'.join(map(str, e.path))}")

    def operation(self, method, path):
        for pattern, template, names, item in self.routes:
            m = pattern.match(path)
            if m and method.lower() in item:
                return template, dict(zip(names, m.groups())), item, item[method.lower()]
        raise ValueError(f"{method} {path} is not in the spec")

    def check_request(self, method, path, query, headers, body):
        template, params, item, op = self.operation(method, path)
        for p in item.get("parameters", []) + op.get("parameters", []):
            p = self.resolve(p)
            if not p.get("required"):
                continue
            where, name = p.get("in"), p.get("name")
            present = (params.get(name) if where == "path" else query.get(name) if where == "query"
                       else headers.get(name) if where == "header" else True)
            if not present:
                raise ValueError(f"{method} {template}: required {where} parameter {name} missing")
        if "requestBody" in op:
            content = self.resolve(op["requestBody"]).get("content", {}).get("application/json")
            if content and "schema" in content:
                self.schema_check(content["schema"], body, f"request body of {method} {template}")
        return template, params, op

    def check_response(self, op, method, template, status, body):
        responses = op.get("responses", {})
        response = responses.get(str(status))
        if response is None:
            response = self.spec["components"]["responses"]["BadRequest"]
            if status < 400:
                raise ValueError(f"{method} {template}: status {status} is not in the spec")
        response = self.resolve(response)
        content = response.get("content", {}).get("application/json")
        if content and "schema" in content:
            self.schema_check(content["schema"], body, f"response {status} of {method} {template}")


# The operations this server implements (all of them in the spec).
IMPLEMENTED = [
    "/api/v2/meta/bases/", "/api/v2/meta/bases/{baseId}", "/api/v2/meta/bases/{baseId}/tables",
    "/api/v2/meta/tables/{tableId}", "/api/v2/meta/tables/{tableId}/columns", "/api/v2/meta/columns/{columnId}",
    "/api/v2/meta/tables/{tableId}/views", "/api/v2/meta/tables/{tableId}/grids", "/api/v2/meta/tables/{tableId}/forms",
    "/api/v2/meta/tables/{tableId}/kanbans", "/api/v2/meta/views/{viewId}/filters", "/api/v2/meta/views/{viewId}/columns",
    "/api/v2/meta/views/{viewId}/columns/{columnId}", "/api/v2/meta/views/{viewId}/hide-all",
    "/api/v2/meta/views/{viewId}/show-all",
]


def route_pattern(template):
    return re.compile("^" + re.sub(r"\{[^}]+\}", r"([^/]+)", template.rstrip("/")) + "/?$"), re.findall(r"\{([^}]+)\}", template)


class NoValidator:
    """Used only when the spec file is absent (shared/ missing): routes, checks nothing."""

    def __init__(self):
        self.routes = [(template,) + route_pattern(template) for template in IMPLEMENTED]

    def check_request(self, method, path, query, headers, body):
        for template, pattern, names in self.routes:
            m = pattern.match(path)
            if m:
                return template, dict(zip(names, m.groups())), {}
        raise ValueError(f"{method} {path} is not implemented")

    def check_response(self, *a):
        pass


class NocoDB:
    """The in-memory meta: one base with the default (meta) source, its tables and views."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.base = {"id": args.base_id, "title": args.base_title, "prefix": "", "is_meta": True,
                     "sources": [{"id": "ds_" + args.base_id[1:], "base_id": args.base_id, "is_meta": True,
                                  "is_local": True, "type": "pg", "enabled": True, "config": None}]}
        self.tables = {}   # id -> table
        self.views = {}    # id -> view
        self.filters = {}  # view id -> [filter]
        self.view_columns = {}  # view id -> {column id: view column}
        self.sql(f"CREATE SCHEMA IF NOT EXISTS {quote(args.base_id)}")
        self.adopt_existing_tables()

    def sql(self, statement):
        subprocess.run(["psql", self.args.pg_url, "-q", "-v", "ON_ERROR_STOP=1", "-c", statement],
                       check=True, capture_output=True)

    def adopt_existing_tables(self):
        """Tables already in the base's schema (a test may create them as NocoDB would) get meta."""
        out = subprocess.run(["psql", self.args.pg_url, "-At", "-F", "\t", "-c",
                              "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_class c "
                              "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid "
                              f"WHERE n.nspname = '{self.args.base_id}' AND c.relkind = 'r' AND a.attnum > 0 "
                              "AND NOT a.attisdropped ORDER BY c.relname, a.attnum"],
                             check=True, capture_output=True, text=True).stdout
        by_table = {}
        for line in out.splitlines():
            table, column, pgtype = line.split("\t")
            by_table.setdefault(table, []).append((column, pgtype))
        reverse = {"text": "SingleLineText", "bigint": "Number", "numeric": "Decimal", "json": "JSON",
                   "timestamp without time zone": "DateTime", "boolean": "Checkbox", "date": "Date"}
        system = {c[0]: c for c in SYSTEM_COLUMNS}
        for table, columns in by_table.items():
            t = self.make_table(table, table)
            for column, pgtype in columns:
                if column in system:
                    t["columns"].append(self.make_column(t, system[column][1], column, system[column][2], True))
                else:
                    t["columns"].append(self.make_column(t, column, column, reverse.get(pgtype, "SpecificDBType"), False))

    def make_table(self, title, table_name):
        t = {"id": new_id("m"), "base_id": self.base["id"], "source_id": self.base["sources"][0]["id"],
             "title": title, "table_name": table_name, "type": "table", "enabled": True, "meta": None,
             "columns": []}
        self.tables[t["id"]] = t
        grid = self.make_view(t, title, 3)
        grid["is_default"] = True
        return t

    def make_column(self, table, title, column_name, uidt, system, col_options=None):
        c = {"id": new_id("c"), "fk_model_id": table["id"], "base_id": table["base_id"],
             "source_id": table["source_id"], "title": title, "column_name": column_name, "uidt": uidt,
             "dt": UIDT_TYPES.get(uidt, "text"), "system": system, "pk": column_name == "id",
             "ai": column_name == "id", "order": len(table["columns"]) + 1, "meta": None}
        if col_options:
            c["colOptions"] = col_options
        for view in self.views.values():
            if view["fk_model_id"] == table["id"]:
                self.view_columns[view["id"]][c["id"]] = self.make_view_column(view, c)
        return c

    def make_view(self, table, title, kind, group_column=None):
        v = {"id": new_id("v"), "fk_model_id": table["id"], "base_id": table["base_id"],
             "source_id": table["source_id"], "title": title, "type": kind, "show": True,
             "is_default": False, "order": len(self.views) + 1, "lock_type": "collaborative", "meta": {}}
        if group_column:
            v["view"] = {"fk_view_id": v["id"], "fk_grp_col_id": group_column}
        self.views[v["id"]] = v
        self.filters[v["id"]] = []
        self.view_columns[v["id"]] = {c["id"]: self.make_view_column(v, c) for c in table["columns"]}
        return v

    @staticmethod
    def make_view_column(view, column):
        return {"id": new_id("n"), "fk_view_id": view["id"], "fk_column_id": column["id"],
                "show": not column["system"], "order": column["order"]}

    def add_column(self, table, req):
        title = req["title"]
        uidt = req.get("uidt", "SingleLineText")
        if any(c["title"] == title for c in table["columns"]):
            raise ApiError(400, f"Duplicate column alias '{title}'")
        if uidt not in UIDT_TYPES:
            raise ApiError(400, f"uidt {uidt} is not supported by this test server")
        name = req.get("column_name") or column_name_for(title)
        self.sql(f"ALTER TABLE {quote(self.base['id'])}.{quote(table['table_name'])} "
                 f"ADD COLUMN {quote(name)} {UIDT_TYPES[uidt]} NULL")
        column = self.make_column(table, title, name, uidt, False, req.get("colOptions"))
        table["columns"].append(column)
        return column

    def create_table(self, req):
        title = req["title"]
        if any(t["title"] == title for t in self.tables.values()):
            raise ApiError(400, f"Duplicate table name '{title}'")
        name = req.get("table_name") or column_name_for(title)
        schema = quote(self.base["id"])
        self.sql(f"CREATE TABLE {schema}.{quote(name)} ("
                 + ", ".join(c[3] for c in SYSTEM_COLUMNS) + ', PRIMARY KEY ("id"))')
        self.sql(f"CREATE INDEX {quote(name + '_order_idx')} ON {schema}.{quote(name)} (\"nc_order\")")
        table = self.make_table(title, name)
        for column_name, ctitle, uidt, _ in SYSTEM_COLUMNS:
            table["columns"].append(self.make_column(table, ctitle, column_name, uidt, True))
        for view in self.views.values():
            if view["fk_model_id"] == table["id"]:
                self.view_columns[view["id"]] = {c["id"]: self.make_view_column(view, c) for c in table["columns"]}
        for req_column in req.get("columns", []):
            if req_column.get("column_name") in {c[0] for c in SYSTEM_COLUMNS}:
                continue
            self.add_column(table, req_column)
        return table


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def page(items):
    return {"list": items, "pageInfo": {"page": 1, "pageSize": max(len(items), 25), "totalRows": len(items),
                                        "isFirstPage": True, "isLastPage": True}}


def handler_class(nocodb, validator, args, log):
    failures = [[m, re.compile(r), int(s), int(n)] for m, r, s, n in (f.split(" ", 3) for f in args.fail)]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def reply(self, status, body, note=None):
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            log({"method": self.command, "path": self.path, "status": status, "violation": note})

        def handle_any(self):
            path, _, query_string = self.path.partition("?")
            query = dict(p.split("=", 1) if "=" in p else (p, "") for p in query_string.split("&") if p)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return self.reply(400, {"msg": "request body is not JSON"})
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                template, params, op = validator.check_request(self.command, path, query, headers, body)
            except ValueError as e:
                return self.reply(599, {"msg": f"spec violation: {e}"}, note=f"request: {e}")
            for failure in failures:
                if failure[3] > 0 and failure[0] == self.command and failure[1].search(path):
                    failure[3] -= 1
                    return self.respond(op, template, failure[2], {"msg": f"injected failure {failure[2]}"})
            if headers.get("xc-token") != args.token:
                return self.respond(op, template, 401, {"msg": "Unauthorized"})
            try:
                with nocodb.lock:
                    status, result = self.route(template, params, body)
            except ApiError as e:
                status, result = e.status, {"msg": e.message}
            except subprocess.CalledProcessError as e:
                status, result = 400, {"msg": "database error: " + e.stderr.decode()[:200]}
            self.respond(op, template, status, result)

        def respond(self, op, template, status, result):
            try:
                validator.check_response(op, self.command, template, status, result)
            except ValueError as e:
                return self.reply(599, {"msg": f"spec violation: {e}"}, note=f"response: {e}")
            self.reply(status, result)

        def route(self, template, p, body):
            m, n = self.command, nocodb
            t = n.tables.get(p.get("tableId", ""))
            v = n.views.get(p.get("viewId", ""))
            if "baseId" in p and p["baseId"] != n.base["id"]:
                raise ApiError(404, f"Base '{p['baseId']}' not found")
            if "tableId" in p and t is None:
                raise ApiError(404, f"Table '{p['tableId']}' not found")
            if "viewId" in p and v is None:
                raise ApiError(404, f"View '{p['viewId']}' not found")
            if template == "/api/v2/meta/bases/" and m == "GET":
                return 200, page([n.base])
            if template == "/api/v2/meta/bases/{baseId}" and m == "GET":
                return 200, n.base
            if template == "/api/v2/meta/bases/{baseId}/tables" and m == "GET":
                return 200, page([{k: x for k, x in tt.items() if k != "columns"} for tt in n.tables.values()])
            if template == "/api/v2/meta/bases/{baseId}/tables" and m == "POST":
                return 200, n.create_table(body)
            if template == "/api/v2/meta/tables/{tableId}" and m == "GET":
                return 200, t
            if template == "/api/v2/meta/tables/{tableId}/columns" and m == "POST":
                n.add_column(t, body)
                return 200, t
            if template == "/api/v2/meta/columns/{columnId}":
                table, column = next(((tt, c) for tt in n.tables.values() for c in tt["columns"]
                                      if c["id"] == p["columnId"]), (None, None))
                if column is None:
                    raise ApiError(404, f"Column '{p['columnId']}' not found")
                if m == "GET":
                    return 200, column
                qualified = f"{quote(n.base['id'])}.{quote(table['table_name'])}"
                if m == "DELETE":
                    n.sql(f"ALTER TABLE {qualified} DROP COLUMN {quote(column['column_name'])}")
                    table["columns"].remove(column)
                    return 200, None
                if m == "PATCH":
                    if "title" in body and body["title"] != column["title"]:
                        new_name = column_name_for(body["title"])
                        n.sql(f"ALTER TABLE {qualified} RENAME COLUMN {quote(column['column_name'])} TO {quote(new_name)}")
                        column["title"], column["column_name"] = body["title"], new_name
                    return 200, column
            if template == "/api/v2/meta/tables/{tableId}/views" and m == "GET":
                return 200, page([x for x in n.views.values() if x["fk_model_id"] == t["id"]])
            kinds = {"/api/v2/meta/tables/{tableId}/grids": 3, "/api/v2/meta/tables/{tableId}/forms": 1,
                     "/api/v2/meta/tables/{tableId}/kanbans": 4}
            if template in kinds and m == "POST":
                if any(x["title"] == body["title"] and x["fk_model_id"] == t["id"] for x in n.views.values()):
                    raise ApiError(400, f"Duplicate view name '{body['title']}'")
                group = body.get("fk_grp_col_id")
                if kinds[template] == 4:
                    grouping = next((c for c in t["columns"] if c["id"] == group), None)
                    if grouping is None or grouping["uidt"] != "SingleSelect":
                        raise ApiError(400, "A kanban view needs a SingleSelect grouping field")
                return 200, n.make_view(t, body["title"], kinds[template], group)
            if template == "/api/v2/meta/views/{viewId}/filters" and m == "GET":
                return 200, page(n.filters[v["id"]])
            if template == "/api/v2/meta/views/{viewId}/filters" and m == "POST":
                f = dict(body, id=new_id("f"), fk_view_id=v["id"], base_id=v["base_id"], source_id=v["source_id"])
                n.filters[v["id"]].append(f)
                return 200, f
            if template == "/api/v2/meta/views/{viewId}/columns" and m == "GET":
                return 200, page(list(n.view_columns[v["id"]].values()))
            if template == "/api/v2/meta/views/{viewId}/columns/{columnId}" and m == "PATCH":
                vc = next((x for x in n.view_columns[v["id"]].values() if x["id"] == p["columnId"]), None)
                if vc is None:
                    raise ApiError(404, f"View column '{p['columnId']}' not found")
                vc.update({k: body[k] for k in ("show", "order") if k in body})
                return 200, 1
            if template in ("/api/v2/meta/views/{viewId}/hide-all", "/api/v2/meta/views/{viewId}/show-all"):
                for vc in n.view_columns[v["id"]].values():
                    vc["show"] = template.endswith("show-all")
                return 200, True
            raise ApiError(400, f"{m} {template} is in the spec but not implemented by this test server")

        do_GET = do_POST = do_PATCH = do_DELETE = handle_any

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--pg-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--base-id", required=True)
    parser.add_argument("--base-title", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--fail", action="append", default=[])
    parser.add_argument("--delay-ms", type=int, default=0)
    args = parser.parse_args()
    if os.path.exists(args.spec):
        validator = SpecValidator(args.spec)
    else:
        print(f"NOTICE: {args.spec} is absent; requests and responses are NOT validated", file=sys.stderr)
        validator = NoValidator()
    nocodb = NocoDB(args)
    log_lock = threading.Lock()

    def log(entry):
        with log_lock, open(args.log, "a") as f:
            f.write(json.dumps(entry) + "\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class(nocodb, validator, args, log))
    parent = os.getppid()

    def watch_parent():
        # A test process that dies (a crash, SIGKILL) leaves no server behind.
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
