"""Request checks as NocoDB makes them.

Two layers, kept apart on purpose:
- the route must be one of NocoDB's v2 meta API (shared/nocodb/swagger-v2.json) with its
  required parameters: a call the spec does not describe is a defect of the client, answered
  599 and logged as a violation so the test fails;
- bodies are validated the way NocoDB validates them, by `validatePayload` against the v1
  spec (shared/nocodb/swagger.json) and only in the services that call it. A body NocoDB
  refuses gets NocoDB's answer (400 {msg: 'Invalid request body', errors}), not a 599.

Cited source: nocodb/nocodb at 8b78e7b8 (0.258.3, the salim-b/nocodb snapshot), paths under
packages/nocodb/src/.
"""
import json
import re

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

V1_URI = "swagger.json"


class SpecViolation(ValueError):
    """A call outside NocoDB's API: the client is wrong, not the request's content."""


class PayloadInvalid(Exception):
    def __init__(self, errors):
        super().__init__("Invalid request body")
        self.errors = errors


class Validators:
    def __init__(self, v2_path, v1_path):
        with open(v2_path) as f:
            self.v2 = json.load(f)
        with open(v1_path) as f:
            self.v1 = json.load(f)
        # helpers/apiHelpers.ts:13-16: one Ajv instance, `strict: false` (unknown keywords such
        # as `x-stoplight` ignored), the v1 spec added under the name 'swagger.json',
        # ajv-formats added. Ajv applies the siblings of a `$ref`, as draft 2020-12 does.
        self.registry = Registry().with_resource(V1_URI, Resource(contents=self.v1, specification=DRAFT202012))
        self.routes = []
        for template, item in self.v2["paths"].items():
            pattern = "^" + re.sub(r"\{[^}]+\}", r"([^/]+)", template.rstrip("/")) + "/?$"
            self.routes.append((re.compile(pattern), template, re.findall(r"\{([^}]+)\}", template), item))

    def operation(self, method, path, query, headers):
        for pattern, template, names, item in self.routes:
            m = pattern.match(path)
            if m and method.lower() in item:
                params = dict(zip(names, m.groups()))
                op = item[method.lower()]
                for p in item.get("parameters", []) + op.get("parameters", []):
                    p = self._resolve(p)
                    if not p.get("required"):
                        continue
                    where, name = p.get("in"), p.get("name")
                    present = (params.get(name) if where == "path" else query.get(name) if where == "query"
                               else headers.get(name) if where == "header" else True)
                    if not present:
                        raise SpecViolation(f"{method} {template}: required {where} parameter {name} missing")
                return template, params
        raise SpecViolation(f"{method} {path} is not in NocoDB's v2 meta API")

    def _resolve(self, node):
        while isinstance(node, dict) and node.get("$ref", "").startswith("#/"):
            target = self.v2
            for part in node["$ref"][2:].split("/"):
                target = target[part]
            node = target
        return node

    def validate_payload(self, schema_name, payload):
        """helpers/apiHelpers.ts:41-56 validatePayload('swagger.json#/components/schemas/X')."""
        schema = {"$ref": f"{V1_URI}#/components/schemas/{schema_name}"}
        validator = jsonschema.Draft202012Validator(schema, registry=self.registry,
                                                    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(payload), key=lambda e: list(e.path))
        if errors:
            raise PayloadInvalid([{"instancePath": "/" + "/".join(map(str, e.path)), "message": e.message[:200]}
                                  for e in errors[:5]])


# validator.js isEmail with its defaults (require_tld, no display name, no IP domain,
# allow_utf8_local_part: emailUserUtf8Part), validator 13.11 (packages/nocodb/package.json:160):
# NocoDB calls it in services/base-users/base-users.service.ts:86-93. Quoted local parts are
# not modelled.
_ATOM = "[a-z\\d!#$%&'*+\\-/=?^_`{|}~\u00a1-\ud7ff\uf900-\ufdcf\ufdf0-\uffef]+"
_LOCAL = re.compile(rf"^{_ATOM}(\.{_ATOM})*$", re.I)
_LABEL = re.compile(r"^[a-z\u00a1-\uffff0-9-]+$", re.I)
_TLD = re.compile(r"^([a-z\u00a1-\uff00]{2,}|xn[a-z0-9-]{2,})$", re.I)


def is_email(value):
    if not value or len(value) > 254 or value.count("@") < 1:
        return False
    local, _, domain = value.rpartition("@")
    if not local or len(local.encode()) > 64 or not _LOCAL.match(local):
        return False
    labels = domain.split(".")
    if len(labels) < 2 or not _TLD.match(labels[-1]):
        return False
    return all(label and len(label) <= 63 and _LABEL.match(label) and not label.startswith("-")
               and not label.endswith("-") for label in labels)
