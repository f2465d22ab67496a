"""Complaints that cannot be used as a weapon (issue 18 §5): a recipient holds at most 3 open complaints about one
provider — the fourth is 409 `too_many_open_complaints` until one is resolved, whoever files it (the recipient or
an admin for them), also when filings race — and the console's complaint forms say so beside the provider picked.
The public rankings count upheld complaints only (tests/test_complaints.py); staff still see every one.
Every test runs on SQLite and PostgreSQL.
"""

import pytest
from sqlalchemy import func, select

from marketplace.auth.models import User
from marketplace.db import db, utcnow
from providers.models import Complaint
from providers.service import complaints
from tests.conftest import error_code
from tests.support.console import visible_text
from tests.support.races import race_transactions
from tests.test_recipient_pages import log_in, page_forms, submit
from vouchers.service import feedback

URL = "/api/v1/complaints"


@pytest.fixture
def world(build):
    world = build.world()
    build.issue(world.programme)
    build.choose_all(world, world.p1, world.alice)
    return world


def file(client, headers, **body):
    return client.post(URL, json={"text": "没有人上门服务", **body}, headers=headers)


def open_count(build, recipient, provider) -> int:
    return build.read(lambda: db.session.scalar(select(func.count()).select_from(Complaint).where(
        Complaint.recipient_id == recipient.id, Complaint.provider_id == provider.id, Complaint.status == "open")))


def test_the_fourth_open_complaint_about_one_provider_is_refused(build, client, world):
    alice = build.headers(world.alice.user)
    for _ in range(3):
        assert file(client, alice, provider_id=world.p1.id).status_code == 201

    response = file(client, alice, provider_id=world.p1.id)

    assert response.status_code == 409
    assert error_code(response) == "too_many_open_complaints"
    assert response.get_json()["error"]["details"] == {"open_complaints": 3, "limit": 3}
    assert open_count(build, world.alice, world.p1) == 3


def test_a_resolved_complaint_makes_room_for_another(build, client, world):
    alice = build.headers(world.alice.user)
    first = [file(client, alice, provider_id=world.p1.id).get_json()["id"] for _ in range(3)]
    build.resolve(first[0], upheld=False)

    assert file(client, alice, provider_id=world.p1.id).status_code == 201
    assert file(client, alice, provider_id=world.p1.id).status_code == 409


def test_the_limit_is_per_provider_and_per_recipient(build, client, world):
    alice, bob = build.headers(world.alice.user), build.headers(world.bob.user)
    for _ in range(3):
        file(client, alice, provider_id=world.p1.id)

    assert file(client, alice, provider_id=world.p2.id).status_code == 201
    assert file(client, bob, provider_id=world.p1.id).status_code == 201


def test_an_admin_filing_for_the_recipient_counts_and_is_refused_alike(build, client, world):
    alice, staff = build.headers(world.alice.user), build.headers(world.admin)
    file(client, alice, provider_id=world.p1.id)
    file(client, staff, provider_id=world.p1.id, recipient_id=world.alice.id)
    file(client, alice, provider_id=world.p1.id)

    response = file(client, staff, provider_id=world.p1.id, recipient_id=world.alice.id)

    assert (response.status_code, error_code(response)) == (409, "too_many_open_complaints")
    # A complaint the bureau files about the provider itself, naming nobody, is not a recipient's.
    assert file(client, staff, provider_id=world.p1.id).status_code == 201


def test_a_complaint_about_a_service_counts_for_its_recipient(build, client, world):
    served = build.redeem(world.p1, world.alice, world.meal)
    staff = build.headers(world.admin)
    for _ in range(3):
        assert file(client, staff, provider_id=world.p1.id, recipient_id=world.alice.id).status_code == 201

    response = file(client, staff, provider_id=world.p1.id, redemption_id=served.id)

    assert error_code(response) == "too_many_open_complaints"
    assert build.redemptions()[0].id == served.id


def test_racing_filings_never_go_past_three(app, build, world):
    """Twelve filings for alice against p1 at once, one already open: exactly two more get in."""
    build.complain(world.p1, recipient=world.alice)
    admin_id = world.admin.id

    def filing(_index):
        feedback.complain(provider_id=world.p1.id, text="同时投诉", redemption_id=None, recipient_id=world.alice.id,
                          actor=db.session.get(User, admin_id), now=utcnow())

    outcomes = race_transactions(app, filing, racers=12)

    assert sorted(outcomes) == ["TooManyOpenComplaints"] * 10 + ["ok"] * 2
    assert open_count(build, world.alice, world.p1) == 3


def test_the_limit_is_one_constant():
    assert complaints.MAX_OPEN_COMPLAINTS == 3


# --- the console's complaint forms ----------------------------------------------------------------------

def complaint_form(client, path: str) -> dict:
    return next(form for form in page_forms(client.get(path).get_data(as_text=True))
                if form["action"].endswith("/complaint"))


@pytest.mark.parametrize("acting", [False, True])
def test_the_complaint_form_says_so_beside_the_provider(build, client, world, acting):
    path = f"/staff/recipients/{world.alice.id}/act/services" if acting else "/me/services"
    log_in(client, world.admin if acting else world.alice.user)
    for _ in range(3):
        assert submit(client, complaint_form(client, path), provider_id=str(world.p1.id),
                      text="饭菜是凉的").status_code == 303

    answer = submit(client, complaint_form(client, path), provider_id=str(world.p1.id), text="还是凉的")

    assert answer.status_code == 409
    body = answer.get_data(as_text=True)
    beside = body[body.index('id="field-provider_id"'):body.index('id="field-text"')]
    assert "已经有 3 条投诉正在处理" in visible_text_of(beside)
    assert open_count(build, world.alice, world.p1) == 3
    assert "还是凉的" in body  # what was typed is kept


def visible_text_of(fragment: str) -> str:
    class Page:
        def get_data(self, as_text=True):
            return fragment

    return visible_text(Page())
