"""Schemathesis against the app's own OpenAPI document: every operation, as every role, with valid and
invalid data. No request may produce a 5xx, and every response must match its declared schema.

`make test` runs a bounded pass (FUZZ_EXAMPLES, default 3 per operation, role and mode); `make fuzz`
runs a long one.
"""

import os
import random

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from sqlalchemy import select

from marketplace.auth import service as auth_service
from marketplace.auth.models import User
from marketplace.db import db, transaction, utcnow
from marketplace.demo import demo_credit_code, demo_recipient
from marketplace.recipients import service as recipient_service
from providers.service import registry
from tests.conftest import PASSWORD

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "3"))
ROLES = ("anonymous", "recipient", "provider", "auditor", "admin")


@pytest.fixture
def fuzz_users(app, make_user, make_item, make_programme):
    """One user per role, with a little real data around them so that some ids exist."""
    item = make_item(code="HC-FUZZ")
    make_programme(item_codes=[item.code], budget_fen=1_000_000, activate=True)
    admin = make_user(role="admin")
    with app.app_context(), transaction():
        recipient = recipient_service.create_recipient(**demo_recipient(3, random.Random(3)), actor=None,
                                                       now=utcnow())
        recipient_user = recipient_service.create_account(recipient=recipient, username="fuzz-recipient",
                                                          password=PASSWORD, actor=None, now=utcnow())
        provider = registry.register_provider(
            name="模糊测试服务中心", kind="enterprise", credit_code=demo_credit_code("91", "MA5F7K2Q"),
            legal_representative="赵六", phone="13700000000", address="蒲江县", region_codes=["510131"],
            item_codes=[item.code], capacity=5, account={"username": "fuzz-staff", "password": PASSWORD},
            actor=None, now=utcnow()).provider
    return {"admin": admin.id, "auditor": make_user(role="auditor").id, "recipient": recipient_user.id,
            "provider": db_user_id(app, provider.id)}


def db_user_id(app, provider_id):
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.provider_id == provider_id))


def fresh_token(app, user_id):
    """A bearer token straight from the service (no argon2), new for every case: a fuzzed logout may
    revoke the one before."""
    with app.app_context(), transaction():
        raw, _token = auth_service.issue_token(user=db.session.get(User, user_id), kind="bearer", now=utcnow())
    return raw


def fuzz(app, operation, mode, role, users):
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def exercise(case):
        headers = {} if role == "anonymous" else {"Authorization": f"Bearer {fresh_token(app, users[role])}"}
        response = case.call(headers=headers)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance], headers=headers)

    exercise()


def test_no_operation_fails_or_breaks_its_schema_for_any_role(app, fuzz_users):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for role in ROLES:
                try:
                    fuzz(app, operation, mode, role, fuzz_users)
                except Unsatisfiable:
                    continue  # nothing invalid to send: the operation takes no parameters and no body
                except Exception as error:  # noqa: BLE001 - collected and reported together below
                    failures.append(f"{role} {mode.value} {operation.label}: {str(error)[:2000]}")
    assert failures == [], "\n\n".join(failures)
