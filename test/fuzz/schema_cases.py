#!/usr/bin/env python3
"""Random (schema, document) cases for the event schema validator, with the
verdict of an independent implementation: Debian's python3-jsonschema
(Draft 2020-12, with its format checker for "uuid").  Prints one tab-separated
line per case: case number, schema, document, expected verdict (t or f).

Usage: schema_cases.py SEED COUNT
"""
import json
import random
import sys

import jsonschema

rng = random.Random(int(sys.argv[1]))
COUNT = int(sys.argv[2])
KEYS = ["a", "b", "c", "é"]
CHARS = "abc01-é😀"
PATTERNS = ["^a", "b$", "^[a-c]*$", "a.c", "^(ab)+$", "[0-9]", "é"]
TYPES = ["null", "boolean", "object", "array", "number", "string", "integer"]
UUIDS = ["0190e3a0-7c1d-7000-8000-000000000001", "0190E3A0-7C1D-7000-8000-00000000000F",
         "0190e3a07c1d70008000000000000001", "0190e3a0-7c1d-7000-8000-00000000000g",
         "not-a-uuid"]


def number():
    return rng.choice([0, 1, -1, 2, 3, -3, 0.5, 1.5, -2.5, 1.0, 2.0, 10, 100])


def string():
    if rng.random() < 0.15:
        return rng.choice(UUIDS)
    return "".join(rng.choice(CHARS) for _ in range(rng.randint(0, 6)))


def value(depth):
    kind = rng.randint(0, 6 if depth < 2 else 4)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return number()
    if kind in (3, 4):
        return string()
    if kind == 5:
        return [value(depth + 1) for _ in range(rng.randint(0, 3))]
    return {k: value(depth + 1) for k in rng.sample(KEYS, rng.randint(0, 3))}


def schema(depth):
    if rng.random() < 0.05:
        return rng.choice([True, False])
    s = {}
    if rng.random() < 0.5:
        s["type"] = rng.choice(TYPES) if rng.random() < 0.7 else rng.sample(TYPES, rng.randint(1, 3))
    if rng.random() < 0.1:
        s["enum"] = [value(2) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.05:
        s["const"] = value(2)
    for kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if rng.random() < 0.12:
            s[kw] = number()
    for kw in ("minLength", "maxLength"):
        if rng.random() < 0.15:
            s[kw] = rng.randint(0, 4)
    if rng.random() < 0.12:
        s["pattern"] = rng.choice(PATTERNS)
    if rng.random() < 0.08:
        s["format"] = "uuid"
    if depth < 3 and rng.random() < 0.45:
        s["properties"] = {k: schema(depth + 1) for k in rng.sample(KEYS, rng.randint(1, 3))}
    if rng.random() < 0.3:
        s["required"] = rng.sample(KEYS, rng.randint(1, 2))
    if depth < 3 and rng.random() < 0.25:
        s["additionalProperties"] = rng.choice([True, False]) if rng.random() < 0.6 else schema(depth + 1)
    if depth < 3 and rng.random() < 0.3:
        s["items"] = schema(depth + 1)
    return s


def document(s, depth):
    """A value shaped after s most of the time, so valid ones are common."""
    if not isinstance(s, dict) or rng.random() < 0.15 or depth > 4:
        return value(depth)
    if "enum" in s and rng.random() < 0.7:
        return rng.choice(s["enum"])
    if "const" in s and rng.random() < 0.7:
        return s["const"]
    t = s.get("type")
    if isinstance(t, list):
        t = rng.choice(t)
    if t is None:
        t = "object" if "properties" in s or "required" in s else rng.choice(TYPES)
    if t == "object":
        props = s.get("properties", {})
        d = {k: document(v, depth + 1) for k, v in props.items() if rng.random() < 0.8}
        for k in s.get("required", []):
            if k not in d and rng.random() < 0.8:
                d[k] = value(depth + 1)
        if rng.random() < 0.2:
            d[rng.choice(KEYS)] = value(depth + 1)
        return d
    if t == "array":
        return [document(s.get("items", {}), depth + 1) for _ in range(rng.randint(0, 3))]
    if t in ("number", "integer"):
        return number()
    if t == "string":
        return string()
    if t == "boolean":
        return rng.choice([True, False])
    return None


checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
for i in range(COUNT):
    s = schema(0)
    d = document(s, 0)
    valid = jsonschema.Draft202012Validator(s, format_checker=checker).is_valid(d)
    print("%d\t%s\t%s\t%s" % (i, json.dumps(s, ensure_ascii=False), json.dumps(d, ensure_ascii=False),
                              "t" if valid else "f"))
