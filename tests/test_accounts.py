"""Who may create which login (POST /users): the other half of four eyes.

An admin without a region scope creates logins of every role. A region-limited admin creates only
provider logins of providers serving part of its region and recipient logins of people living in it;
never admin or auditor logins (a second admin of one's own making could approve one's own
settlements). Both databases.
"""

import random

import pytest

from marketplace.db import transaction, utcnow
from marketplace.demo import demo_credit_code, demo_recipient
from marketplace.recipients import service as recipient_service
from providers.service import registry
from tests.conftest import error_code

PASSWORD = "Correct-Horse-Battery-42"


@pytest.fixture
def people(app):
    """A recipient and a provider of 蒲江县 (510131), and a provider of 大邑县 (510129)."""
    with app.app_context(), transaction():
        recipient = recipient_service.create_recipient(**demo_recipient(7, random.Random(7)), actor=None, now=utcnow())
        inside, outside = (registry.register_provider(
            name=name, kind="social_organisation", credit_code=demo_credit_code("52", body),
            legal_representative="张华", phone="028-88550001", address="四川省成都市", region_codes=[region],
            item_codes=[], capacity=10, account={"username": f"staff-{body.lower()}", "password": PASSWORD},
            actor=None, now=utcnow()).provider.id
            for name, body, region in (("蒲江服务中心", "MA000101", "510131"), ("大邑服务中心", "MA000102", "510129")))
        return {"recipient": recipient.id, "inside": inside, "outside": outside}


def login_for(**link) -> dict:
    role = "recipient" if "recipient_id" in link else "provider"
    return {"username": f"{role}-{next(iter(link.values()))}", "password": PASSWORD, "role": role, **link}


def test_a_county_admin_creates_logins_for_its_own_people(client, make_user, auth, people):
    county = auth(make_user(role="admin", region_code="510131"))

    for body in (login_for(recipient_id=people["recipient"]), login_for(provider_id=people["inside"])):
        response = client.post("/api/v1/users", json=body, headers=county)
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["role"] == body["role"]


def test_a_county_admin_may_not_create_a_login_for_another_countys_provider(client, make_user, auth, people):
    county = auth(make_user(role="admin", region_code="510131"))

    response = client.post("/api/v1/users", json=login_for(provider_id=people["outside"]), headers=county)

    assert response.status_code == 403
    assert error_code(response) == "forbidden"


@pytest.mark.parametrize("role", ["admin", "auditor"])
def test_only_an_unscoped_admin_creates_admin_and_auditor_logins(client, make_user, auth, role):
    body = {"username": f"new-{role}", "password": PASSWORD, "role": role}
    if role == "admin":
        body["region_code"] = "510131"

    refused = client.post("/api/v1/users", json=body, headers=auth(make_user(role="admin", region_code="510131")))
    created = client.post("/api/v1/users", json=body, headers=auth(make_user(role="admin")))

    assert refused.status_code == 403
    assert error_code(refused) == "forbidden"
    assert created.status_code == 201
