#!/usr/bin/env python3
"""Checks deploy/compose.yaml without a Docker engine.

1. The Compose specification's own JSON schema (the one `docker compose` validates with;
   shared/compose/compose-spec.json, draft-07), on the file as YAML loads it (anchors and
   `<<` merge keys resolved, as compose-go does before validating).
2. What a schema cannot say:
   - every variable the file's values read (`${VAR}`, `${VAR:-…}`, `$VAR`; not `$$`, which
     Compose leaves as a `$`; not comments, which Compose does not read) is documented in
     deploy/nocobridge.env.example;
   - every image carries a version tag: not `latest`, not tag-less. A tag names a series,
     not a build: `postgres:15` and `mongo:8.2` follow their patch releases, and only
     NocoDB's `0.258.3` is one release;
   - NocoDB's image is a release whose behaviour the test double models (TESTED_NOCODB), and
     MongoDB's the version the tests talk to (TESTED_MONGO), whatever registry prefix the
     image name carries (`docker.io/library/mongo` is `mongo`).

Usage: check_compose.py [--compose FILE] [--env-example FILE] [--schema FILE]
Prints one line per problem and exits 1 when there is any, 0 with "compose file OK" otherwise;
a file it cannot read is one line and exit 2.
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
VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")


class Unreadable(Exception):
    """A file the check needs is missing or not what it should be."""


def read(path, what, load):
    try:
        with open(path) as f:
            return load(f)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise Unreadable(f"{what} {path}: {getattr(e, 'strerror', None) or str(e).splitlines()[0]}")


def strings(node):
    """Every string value (and key) of the loaded file: what Compose interpolates."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, str):
        yield node


def variables(document):
    found = set()
    for text in strings(document):
        for m in VARIABLE.finditer(text.replace("$$", "")):
            found.add(m.group(1) or m.group(2))
    return found


def image_parts(image):
    """(repository without registry or library/ prefix, tag)."""
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    if len(parts) == 2 and parts[0] == "library":
        parts = parts[1:]
    return "/".join(parts), tag


def problems(compose_path, env_path, schema_path):
    found = []
    document = read(compose_path, "compose file", yaml.safe_load)
    schema = read(schema_path, "Compose specification schema", json.load)
    validator = jsonschema.Draft7Validator(schema)
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        where = "/".join(map(str, error.absolute_path)) or "(top level)"
        found.append(f"schema: {where}: {error.message[:200]}")

    env_text = read(env_path, "environment example", lambda f: f.read())
    documented = {m.group(1) for m in re.finditer(r"^#?\s*([A-Za-z_][A-Za-z0-9_]*)=", env_text, re.M)}
    for name in sorted(variables(document) - documented):
        found.append(f"variable ${{{name}}} is not documented in {os.path.basename(env_path)}")

    for name, service in sorted(((document or {}).get("services") or {}).items()):
        image = (service or {}).get("image")
        if image is None:
            continue
        repository, tag = image_parts(image)
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
    try:
        found = problems(args.compose, args.env_example, args.schema)
    except Unreadable as e:
        print(f"check_compose: cannot read {e}")
        return 2
    for line in found:
        print(f"{args.compose}: {line}")
    if not found:
        print("compose file OK")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
