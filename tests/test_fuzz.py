"""Schemathesis against the app's own OpenAPI document: every operation, as every role, with valid and
invalid data. No request may produce a 5xx, and every response must match its declared schema.

Besides what schemathesis generates from the document, every case may be made hostile (`hostile_cases`):
a body nested 2,000 or 100 levels deep, a lone surrogate in a string, a 5,001-digit integer, an instant at
the edge of year 1 or 9999, a period in year 9999 — shapes that once made 500s (tests/test_hostile_input.py) —
and, for a typed presence code (`short_code`), digits that are not ASCII, too few or too many, or spaced oddly.
`test_every_operation_answers_every_hostile_shape_with_a_4xx` sends each shape to each operation once,
deterministically.

`make test` runs a bounded pass (FUZZ_EXAMPLES, default 3 per operation, role and mode); `make fuzz`
runs a long one.
"""

import json
import os
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
ROLES = ("anonymous", "recipient", "provider", "auditor", "admin")

# --- hostile shapes ---------------------------------------------------------------------------------

SURROGATE = "\ud800"
HUGE_INTEGER = "1" * 5001  # past Python's 4,300-digit limit for int(str)
EXTREME_INSTANTS = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")
EXTREME_PERIOD = "9999-12"
_HUGE = "\x00huge\x00"  # stands for HUGE_INTEGER until the body is written out (json.dumps cannot write it)
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T")
PERIOD = re.compile(r"^\d{4}-\d{2}$")
# Typed presence codes that are not 8 ASCII digits (each a 422 naming `short_code`), and odd spacings of
# 8 digits that are (whitespace is ignored, an ideographic space included).
BAD_SHORT_CODES = ("1234 567", "123456789", "１２３４５６７８", "١٢٣٤٥٦٧٨", "1234-5678", "+1234567", "1e7",
                   "12345678" * 6, " ", "")
ODD_SHORT_CODES = ("1234\u30005678", " 1 2 3 4 5 6 7 8 ", "\t12345678\n", "00000000")


def deeply_nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def json_bytes(value) -> bytes:
    """*value* as a JSON body, non-ASCII escaped (a lone surrogate travels as \\ud800) and _HUGE written out."""
    return json.dumps(value).replace(json.dumps(_HUGE), HUGE_INTEGER).encode("ascii")


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path, value


def _replaced(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


def hostile_values(leaf, name=None) -> list:
    values = [_HUGE]
    if name == "short_code":
        values.extend(BAD_SHORT_CODES + ODD_SHORT_CODES)
    if isinstance(leaf, str):
        values.append(leaf + SURROGATE)
        if DATE_TIME.match(leaf):
            values.extend(EXTREME_INSTANTS)
        if PERIOD.match(leaf):
            values.append(EXTREME_PERIOD)
    return values


def hostile_bodies(body) -> list[bytes]:
    """The JSON *body* made hostile in each way: nested too deep, or one leaf (at any depth) replaced."""
    bodies = [deeply_nested(2000), deeply_nested(100)]
    for path, leaf in _leaves(body):
        name = path[-1] if path else None
        bodies.extend(json_bytes(_replaced(body, path, value)) for value in hostile_values(leaf, name))
    return bodies


def hostile_queries(query: dict) -> list[dict]:
    queries = []
    for name, value in query.items():
        for hostile in (HUGE_INTEGER, *EXTREME_INSTANTS, EXTREME_PERIOD):
            queries.append({**query, name: hostile})
        if isinstance(value, str) and DATE_TIME.match(value):
            queries.extend({**query, name: instant} for instant in EXTREME_INSTANTS)
    return queries


def hostile_cases(_context, case):
    """A strategy: the case as generated, or made hostile in its JSON body or its query string."""
    variants = []
    if case.media_type == "application/json" and case.body is not None:
        try:
            json.dumps(case.body)
        except (TypeError, ValueError):
            pass  # not plain JSON (bytes, binary): leave it alone
        else:
            variants.extend(("body", body) for body in hostile_bodies(case.body))
    if case.query:
        variants.extend(("query", query) for query in hostile_queries(dict(case.query)))
    if not variants:
        return st.just(case)

    def apply(choice):
        where, value = choice
        setattr(case, where, value)
        return case

    return st.one_of(st.just(case), st.sampled_from(variants).map(apply))


@pytest.fixture
def fuzz_users(build):
    """One user per role, with a little real data around them so that some ids exist."""
    item = build.item(code="HC-FUZZ")
    build.programme(items=[(item, 1200, 4)], budget_fen=1_000_000)
    recipient = build.recipient(login=True)
    provider = build.provider(items=[item], kind="enterprise", status="pending", login=True)
    return {"admin": build.admin(), "auditor": build.auditor(), "recipient": recipient.user,
            "provider": provider.user}


def fuzz(build, operation, mode, role, users):
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def exercise(case):
        # A new token for every case: a fuzzed logout may revoke the one before.
        headers = {} if role == "anonymous" else build.headers(users[role])
        response = case.call(headers=headers)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance], headers=headers)

    exercise()


def test_no_operation_fails_or_breaks_its_schema_for_any_role(app, build, fuzz_users):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    schema.hook("flatmap_case")(hostile_cases)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for role in ROLES:
                try:
                    fuzz(build, operation, mode, role, fuzz_users)
                except Unsatisfiable:
                    continue  # nothing invalid to send: the operation takes no parameters and no body
                except Exception as error:  # noqa: BLE001 - collected and reported together below
                    failures.append(f"{role} {mode.value} {operation.label}: {str(error)[:2000]}")
    assert failures == [], "\n\n".join(failures)


# --- every hostile shape, to every operation, once ----------------------------------------------------

def _resolve(spec, schema):
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _operations(spec):
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, operation


def _send(client, build, users, role, method, url, *, data=None, query=None):
    headers = {} if role == "anonymous" else build.headers(users[role])
    return client.open(url, method=method.upper(), data=data, query_string=query, headers=headers,
                       content_type="application/json" if data is not None else None)


def _problem(response, expected_status=None, field=None) -> str | None:
    """What is wrong with *response* to a hostile request, or None."""
    error = (response.get_json(silent=True) or {}).get("error") or {}
    if response.status_code >= 500 or (expected_status and response.status_code != expected_status) or (
            field and field not in error.get("details", {}).get("fields", {})):
        return f"{response.status_code} {error.get('code')}"
    return None


def test_every_operation_answers_every_hostile_shape_with_a_4xx(build, client, fuzz_users):
    """Each shape to each operation's JSON body and query string, as a role the operation admits: never a 5xx.
    A body nested too deep is 400 `malformed_json`; a lone surrogate is 422 naming the field it sits in."""
    spec = client.get("/api/v1/openapi.json").get_json()
    failures, bodies_sent = [], 0
    for path, method, operation in _operations(spec):
        roles = operation.get("x-roles") or ["anonymous"]
        role = "admin" if "admin" in roles else roles[0]
        url = re.sub(r"\{[^}]+\}", "1", path)
        attempts = []  # (what, request kwargs, expected status, field named)
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            schema = _resolve(spec, content["application/json"]["schema"])
            attempts += [(f"nested {depth} deep", {"data": deeply_nested(depth)}, 400, None) for depth in (2000, 100)]
            for name, prop in schema.get("properties", {}).items():
                if _resolve(spec, prop).get("readOnly"):
                    continue
                attempts.append((f"{name}: lone surrogate", {"data": json_bytes({name: f"x{SURROGATE}"})}, 422, name))
                for value in (_HUGE, *EXTREME_INSTANTS, EXTREME_PERIOD):
                    label = "5,001 digits" if value == _HUGE else value
                    attempts.append((f"{name}: {label}", {"data": json_bytes({name: value})}, None, None))
                if name == "short_code":
                    attempts += [(f"{name}: {value!r}", {"data": json_bytes({name: value})}, 422, name)
                                 for value in BAD_SHORT_CODES]
                    attempts += [(f"{name}: {value!r}", {"data": json_bytes({name: value})}, None, None)
                                 for value in ODD_SHORT_CODES]
            bodies_sent += 1
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "query":
                attempts += [(f"?{parameter['name']}={value[:25]}", {"query": {parameter["name"]: value}}, None, None)
                             for value in (HUGE_INTEGER, *EXTREME_INSTANTS, EXTREME_PERIOD)]
        for what, request, expected_status, field in attempts:
            problem = _problem(_send(client, build, fuzz_users, role, method, url, **request), expected_status, field)
            if problem:
                failures.append(f"{method.upper()} {path} {what}: {problem}")
    assert bodies_sent > 20  # the walk really reached the operations with bodies
    assert failures == [], "\n".join(failures)
