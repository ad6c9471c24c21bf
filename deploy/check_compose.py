#!/usr/bin/env python3
"""Checks deploy/compose.yaml without a Docker engine.

1. The Compose specification's own JSON schema (the one `docker compose` validates with;
   shared/compose/compose-spec.json, draft-07), on the file as YAML loads it (anchors and
   `<<` merge keys resolved, as compose-go does before validating).
2. What a schema cannot say:
   - every `${VAR}` the file reads is documented in deploy/nocobridge.env.example;
   - every image is pinned to a version (a tag that is not `latest`, and no tag-less image);
   - NocoDB's image is a release whose behaviour the test double models (TESTED_NOCODB), and
     MongoDB's the major version this README documents (TESTED_MONGO).

Usage: check_compose.py [--compose FILE] [--env-example FILE] [--schema FILE]
Prints one line per problem and exits 1 when there is any, 0 with "compose file OK" otherwise.
"""
import argparse
import json
import os
import re
import sys

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
# The NocoDB releases Tests/Support/nocodb/ models (0.258.3 is the one with a Docker tag of
# that name; the double's "2026" mode follows the current develop branch).
TESTED_NOCODB = {"0.258.3"}
# The tests run against SecantusDB 0.7.0b3, which answers hello/buildInfo as MongoDB 8.2.11
# (wire version 27); no mongod runs on the test machine.
TESTED_MONGO = "8.2"
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def problems(compose_path, env_path, schema_path):
    found = []
    with open(compose_path) as f:
        text = f.read()
    document = yaml.safe_load(text)
    with open(schema_path) as f:
        schema = json.load(f)
    validator = jsonschema.Draft7Validator(schema)
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        where = "/".join(map(str, error.absolute_path)) or "(top level)"
        found.append(f"schema: {where}: {error.message[:200]}")

    with open(env_path) as f:
        documented = {m.group(1) for m in re.finditer(r"^#?\s*([A-Za-z_][A-Za-z0-9_]*)=", f.read(), re.M)}
    for name in sorted(set(VARIABLE.findall(text)) - documented):
        found.append(f"variable ${{{name}}} is not documented in {os.path.basename(env_path)}")

    for name, service in sorted(((document or {}).get("services") or {}).items()):
        image = (service or {}).get("image")
        if image is None:
            continue
        repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        if not tag or tag == "latest":
            found.append(f"service {name}: image {image} is not pinned to a version")
            continue
        if repository == "nocodb/nocodb" and tag not in TESTED_NOCODB:
            found.append(f"service {name}: {image} is not a NocoDB release the tests model ({', '.join(sorted(TESTED_NOCODB))})")
        if repository == "mongo" and tag != TESTED_MONGO and not tag.startswith(TESTED_MONGO + "."):
            found.append(f"service {name}: {image} is not MongoDB {TESTED_MONGO}, the version the tests talk to")
    return found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--compose", default=os.path.join(HERE, "compose.yaml"))
    parser.add_argument("--env-example", default=os.path.join(HERE, "nocobridge.env.example"))
    parser.add_argument("--schema", default=os.path.join(HERE, "..", "..", "shared", "compose", "compose-spec.json"))
    args = parser.parse_args()
    found = problems(args.compose, args.env_example, args.schema)
    for line in found:
        print(f"{args.compose}: {line}")
    if not found:
        print("compose file OK")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
