"""Schemathesis against the app's own OpenAPI document: every operation, as every role, with valid and
invalid data. No request may produce a 5xx, and every response must match its declared schema.

`make test` runs a bounded pass (FUZZ_EXAMPLES, default 3 per operation, role and mode); `make fuzz`
runs a long one.
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
ROLES = ("anonymous", "recipient", "provider", "auditor", "admin")


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
