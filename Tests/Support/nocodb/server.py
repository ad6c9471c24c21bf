#!/usr/bin/env python3
"""NocoDB test double for NocoBridge's tests: the part of NocoDB's v2 meta API the bridge
uses, modelled on NocoDB's own server source (see meta.py for the rules and their sources,
validation.py for how requests are checked).

NocoDB cannot run on the test machine. This server keeps bases, tables, fields, views, view
fields, filters, base users, view visibility per role and shared views in memory, and creates
the tables in PostgreSQL as NocoDB does on its default base. --nocodb-version picks the
behaviour of 0.258.3 (the spec in shared/nocodb/) or of the 2026 release where they differ.

- A call outside NocoDB's v2 meta API is answered 599 and logged as a violation (a client
  defect; tests assert there are none).
- A body NocoDB refuses gets NocoDB's answer and envelope: {msg} or {error, message, details}.
- Responses are shaped like NocoDB's, not like the spec: NocoDB omits pageInfo where its
  controllers give no count, which the spec's list models require.

Fault injection: --fail 'METHOD REGEX STATUS COUNT' answers the first COUNT matching
requests with STATUS (--fail-echo: quoting the request body); --delay-ms delays every answer. --extra-bases N and --limit-max M
(NocoDB's DB_QUERY_LIMIT_MAX) reproduce a base list longer than NocoDB's page size.

Usage: server.py --spec-v2 swagger-v2.json --spec-v1 swagger.json --pg-url URL --token T
       --base-id ID --base-title TITLE --port-file FILE --log FILE [--nocodb-version V] ...
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from meta import FORM, GRID, KANBAN, V0258, V2026, Meta, NcError, bad_request, new_id, not_found_v2, paged  # noqa: E402
from validation import PayloadInvalid, SpecViolation, Validators  # noqa: E402


def route(meta, validators, method, template, p, body):
    """One call; returns (status, body). Controllers cited under controllers/."""
    t = meta.tables.get(p.get("tableId", "")) if "tableId" in p else None
    v = meta.views.get(p.get("viewId", "")) if "viewId" in p else None
    if "baseId" in p and p["baseId"] != meta.base["id"]:
        if any(b["id"] == p["baseId"] for b in meta.bases):
            raise bad_request("this test double keeps tables for one base only")
        raise not_found_v2("base", p["baseId"])
    if "tableId" in p and t is None:
        raise not_found_v2("table", p["tableId"])
    if "viewId" in p and v is None:
        raise not_found_v2("view", p["viewId"])
    key = (method, template)
    if key == ("GET", "/api/v2/meta/bases/"):
        # bases.controller.ts:36-50: every base, count = limit = the number of bases.
        return 200, paged(meta.bases, count=len(meta.bases), limit=len(meta.bases), limit_max=meta.limit_max)
    if key == ("GET", "/api/v2/meta/bases/{baseId}"):
        return 200, meta.base
    if key == ("GET", "/api/v2/meta/bases/{baseId}/tables"):
        # tables.controller.ts:42-49: PagedResponseImpl without a count -> no pageInfo.
        return 200, paged([meta.table_summary(x) for x in meta.tables.values()])
    if key == ("POST", "/api/v2/meta/bases/{baseId}/tables"):
        return 200, meta.create_table(validators, body)
    if key == ("GET", "/api/v2/meta/tables/{tableId}"):
        return 200, t
    if key == ("POST", "/api/v2/meta/tables/{tableId}/columns"):
        meta.add_column(validators, t, body)
        return 200, t   # columns.service.ts columnAdd returns the table with its columns
    if template == "/api/v2/meta/columns/{columnId}":
        table, column = meta.find_column(p["columnId"])
        if method == "GET":
            return 200, column
        if method == "DELETE":
            meta.delete_column(table, column)
            return 200, table
        if method == "PATCH":
            meta.update_column(table, column, body)
            return 200, table
    if key == ("GET", "/api/v2/meta/tables/{tableId}/views"):
        return 200, paged([x for x in meta.views.values() if x["fk_model_id"] == t["id"]])   # views.controller.ts:38-43
    kinds = {"/api/v2/meta/tables/{tableId}/grids": GRID, "/api/v2/meta/tables/{tableId}/forms": FORM,
             "/api/v2/meta/tables/{tableId}/kanbans": KANBAN}
    if method == "POST" and template in kinds:
        # grids.service.ts:16-60, forms.service.ts:27-80, kanbans.service.ts:24-73: validatePayload,
        # then View.insertMetaOnly; no check of the title, so views may share one.
        validators.validate_payload("ViewCreateReq", body)
        return 200, meta.make_view(t, body["title"], kinds[template], body.get("fk_grp_col_id"))
    if key == ("GET", "/api/v2/meta/views/{viewId}/filters"):
        return 200, paged(meta.filters[v["id"]])   # filters.controller.ts:38-43
    if key == ("POST", "/api/v2/meta/views/{viewId}/filters"):
        validators.validate_payload("FilterReq", body)   # filters.service.ts:23
        f = dict(body, id=new_id("fi"), fk_view_id=v["id"], base_id=v["base_id"], source_id=v["source_id"])
        meta.filters[v["id"]].append(f)
        return 200, f
    if key == ("GET", "/api/v2/meta/views/{viewId}/columns"):
        return 200, paged(meta.view_columns[v["id"]])   # view-columns.controller.ts:42-46
    if key == ("PATCH", "/api/v2/meta/views/{viewId}/columns/{columnId}"):
        validators.validate_payload("ViewColumnUpdateReq", body)   # view-columns.service.ts:71-74
        return 200, meta.update_view_column(v, p["columnId"], body)
    if key == ("POST", "/api/v2/meta/views/{viewId}/hide-all"):
        meta.hide_all(v)
        return 200, True
    if key == ("POST", "/api/v2/meta/views/{viewId}/show-all"):
        meta.show_all(v)
        return 200, True
    if key == ("GET", "/api/v2/auth/user/me"):
        return 200, meta.me()
    if key == ("GET", "/api/v2/meta/bases/{baseId}/users"):
        return 200, meta.users_page()
    if key == ("POST", "/api/v2/meta/bases/{baseId}/users"):
        return 200, meta.invite(validators, body)
    if key == ("PATCH", "/api/v2/meta/bases/{baseId}/users/{userId}"):
        return 200, meta.update_user(validators, p["userId"], body)
    if key == ("GET", "/api/v2/meta/bases/{baseId}/visibility-rules"):
        return 200, meta.visibility_list()
    if key == ("POST", "/api/v2/meta/bases/{baseId}/visibility-rules"):
        meta.visibility_set(validators, body)
        return 200, True   # model-visibilities.controller.ts returns the service's true
    if key == ("GET", "/api/v2/meta/tables/{tableId}/share"):
        return 200, paged(meta.shared_views(t))
    if key == ("POST", "/api/v2/meta/views/{viewId}/share"):
        return 200, meta.share(v)   # views.service.ts:114-131
    if key == ("PATCH", "/api/v2/meta/views/{viewId}/share"):
        validators.validate_payload("SharedViewReq", body)   # views.service.ts:255-268
        return 200, meta.update_share(v, body)
    raise SpecViolation(f"{method} {template} is in the spec but not modelled by this test double")


def handler_class(meta, validators, args, log):
    failures = [[m, re.compile(r), int(s), int(n)] for m, r, s, n in (f.split(" ", 3) for f in args.fail)]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def reply(self, status, body, violation=None):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            log({"method": self.command, "path": self.path, "status": status, "violation": violation})

        def handle_any(self):
            path, _, query_string = self.path.partition("?")
            query = dict(p.split("=", 1) if "=" in p else (p, "") for p in query_string.split("&") if p)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                template, params = validators.operation(self.command, path, query, headers)
            except SpecViolation as e:
                return self.reply(599, {"msg": f"spec violation: {e}"}, violation=str(e))
            for failure in failures:
                if failure[3] > 0 and failure[0] == self.command and failure[1].search(path):
                    failure[3] -= 1
                    msg = f"injected failure {failure[2]}"
                    if args.fail_echo:
                        # What a database error can answer through NocoDB's catch-all
                        # (global-exception.filter.ts:218-222): the statement with its values.
                        msg += ": " + raw.decode(errors="replace")
                    return self.reply(failure[2], {"msg": msg})
            if headers.get("xc-token") != args.token:
                # guards/global/global.guard.ts: an unknown API token -> 401 {msg}.
                return self.reply(401, {"msg": "Unauthorized"})
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return self.reply(400, {"msg": "Invalid JSON in request body"})
            try:
                with lock:
                    status, result = route(meta, validators, self.command, template, params, body)
            except SpecViolation as e:
                return self.reply(599, {"msg": f"spec violation: {e}"}, violation=str(e))
            except PayloadInvalid as e:
                # global-exception.filter.ts:190-193 AjvError.
                status, result = 400, {"msg": "Invalid request body", "errors": e.errors}
            except NcError as e:
                status, result = e.status, e.body
            except subprocess.CalledProcessError as e:
                status, result = 400, {"msg": e.stderr.decode()[:300]}
            self.reply(status, result)

        do_GET = do_POST = do_PATCH = do_DELETE = handle_any

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec-v2", required=True)
    parser.add_argument("--spec-v1", required=True)
    parser.add_argument("--pg-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--base-id", required=True)
    parser.add_argument("--base-title", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--nocodb-version", choices=[V0258, V2026], default=V0258)
    parser.add_argument("--extra-bases", type=int, default=0)
    parser.add_argument("--limit-max", type=int, default=1000)
    parser.add_argument("--org-user", action="append", default=[], help="a user of the instance who is not in the base")
    parser.add_argument("--fail", action="append", default=[])
    parser.add_argument("--fail-echo", action="store_true", help="injected failures quote the request body")
    parser.add_argument("--delay-ms", type=int, default=0)
    args = parser.parse_args()
    validators = Validators(args.spec_v2, args.spec_v1)
    meta = Meta(args.pg_url, args.base_id, args.base_title, args.nocodb_version,
                extra_bases=args.extra_bases, limit_max=args.limit_max, org_users=args.org_user)
    log_lock = threading.Lock()

    def log(entry):
        with log_lock, open(args.log, "a") as f:
            f.write(json.dumps(entry) + "\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class(meta, validators, args, log))
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
