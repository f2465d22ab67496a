"""The date a recipient's death or move took effect (recipient.status_effective_on), which the `served_after_exit`
rule compares services with: asked with the status change by the API (optional: today's local date when left
out, so older clients keep working) and by the console (required, today's date filled in), never in the future
nor before the birth date, cleared when the recipient comes back, correctable alone, audited. Both databases."""

import json
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from marketplace.audit.models import AuditEvent
from marketplace.db import db, local_date, utcnow
from marketplace.recipients.models import Recipient
from tests.conftest import PASSWORD, error_code
from tests.support.console import csrf_from, login_page, visible_text

URL = "/api/v1/recipients"
BORN = date(1941, 3, 4)
# Dates before 1970 are no date a request may carry (marketplace.schemas.Day): the birth-date bound is seen
# with someone born later.
BORN_LATER = date(1975, 6, 1)


@pytest.fixture
def admin_headers(build):
    return build.headers(build.admin())


def _patch(client, headers, recipient, body):
    return client.patch(f"{URL}/{recipient.id}", json=body, headers=headers)


def _stored(build, recipient) -> tuple[str, date | None]:
    row = build.read(lambda: db.session.get(Recipient, recipient.id))
    return row.status, row.status_effective_on


def _date_changes(build, recipient) -> list[dict]:
    def load():
        events = db.session.scalars(select(AuditEvent).where(
            AuditEvent.action == "recipient.updated", AuditEvent.entity_id == str(recipient.id))
            .order_by(AuditEvent.id)).all()
        return [json.loads(event.data).get("status_effective_on") for event in events]
    return build.read(load)


def _today(build) -> date:
    return build.read(lambda: local_date(utcnow()))


# --- the API --------------------------------------------------------------------------------------------

def test_a_death_is_recorded_with_the_day_it_took_effect(build, client, admin_headers):
    li = build.recipient(name="李桂英", birth=BORN)
    died = _today(build) - timedelta(days=40)
    response = _patch(client, admin_headers, li, {"status": "deceased", "effective_on": died.isoformat()})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "deceased"
    assert response.get_json()["status_effective_on"] == died.isoformat()
    assert client.get(f"{URL}/{li.id}", headers=admin_headers).get_json()["status_effective_on"] == died.isoformat()
    assert _stored(build, li) == ("deceased", died)
    assert _date_changes(build, li) == [{"from": None, "to": died.isoformat()}]


def test_an_older_client_that_sends_no_date_records_todays(build, client, admin_headers):
    li = build.recipient(birth=BORN)
    before = _today(build)
    response = _patch(client, admin_headers, li, {"status": "moved"})
    assert response.status_code == 200
    # Today where the programmes run (the local date, not UTC's), read on either side of the request.
    assert response.get_json()["status_effective_on"] in {before.isoformat(), _today(build).isoformat()}


def test_an_active_recipient_has_no_effective_date(build, client, admin_headers):
    li = build.recipient(birth=BORN)
    assert client.get(f"{URL}/{li.id}", headers=admin_headers).get_json()["status_effective_on"] is None


@pytest.mark.parametrize(("offset", "message"), [
    (1, "cannot be in the future"),
    (None, "cannot be before the recipient was born"),
])
def test_a_date_in_the_future_or_before_birth_is_refused_and_changes_nothing(build, client, admin_headers, offset,
                                                                            message):
    world = build.world()
    li = build.recipient(birth=BORN_LATER, tags=("low_income",))
    build.issue(world.programme)
    recipient = world.alice if offset else li
    day = _today(build) + timedelta(days=offset) if offset else BORN_LATER - timedelta(days=1)
    response = _patch(client, admin_headers, recipient, {"status": "deceased", "effective_on": day.isoformat()})
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert message in response.get_json()["error"]["details"]["fields"]["effective_on"][0]
    assert _stored(build, recipient) == ("active", None)
    from vouchers.models import Voucher
    assert build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.status == "issued")  # none revoked


def test_today_and_the_birth_date_itself_are_accepted(build, client, admin_headers):
    first, second = build.recipient(birth=BORN), build.recipient(birth=BORN_LATER)
    today = _today(build)
    assert _patch(client, admin_headers, first, {"status": "moved", "effective_on": today.isoformat()}).status_code \
        == 200
    assert _patch(client, admin_headers, second, {"status": "deceased",
                                                  "effective_on": BORN_LATER.isoformat()}).status_code == 200
    assert _stored(build, first) == ("moved", today)
    assert _stored(build, second) == ("deceased", BORN_LATER)


def test_a_date_before_the_record_was_made_is_accepted(build, client, admin_headers):
    """The bureau may hear of a death late, or enrol someone from an old list: the date is what happened."""
    li = build.recipient(birth=BORN)
    long_ago = _today(build) - timedelta(days=3 * 365)
    response = _patch(client, admin_headers, li, {"status": "deceased", "effective_on": long_ago.isoformat()})
    assert response.status_code == 200
    assert response.get_json()["status_effective_on"] == long_ago.isoformat()


def test_coming_back_clears_the_date_and_a_date_with_it_is_refused(build, client, admin_headers):
    li = build.recipient(birth=BORN)
    moved_on = _today(build) - timedelta(days=10)
    assert _patch(client, admin_headers, li, {"status": "moved", "effective_on": moved_on.isoformat()}).status_code \
        == 200
    refused = _patch(client, admin_headers, li, {"status": "active", "effective_on": moved_on.isoformat()})
    assert refused.status_code == 422
    assert "effective_on" in refused.get_json()["error"]["details"]["fields"]
    assert _stored(build, li) == ("moved", moved_on)
    back = _patch(client, admin_headers, li, {"status": "active"})
    assert back.status_code == 200
    assert back.get_json()["status_effective_on"] is None
    assert _date_changes(build, li) == [{"from": None, "to": moved_on.isoformat()},
                                        {"from": moved_on.isoformat(), "to": None}]


def test_dying_after_a_move_records_the_day_of_death(build, client, admin_headers):
    li = build.recipient(birth=BORN)
    today = _today(build)
    moved_on, died_on = today - timedelta(days=30), today - timedelta(days=3)
    _patch(client, admin_headers, li, {"status": "moved", "effective_on": moved_on.isoformat()})
    response = _patch(client, admin_headers, li, {"status": "deceased", "effective_on": died_on.isoformat()})
    assert response.status_code == 200
    assert _stored(build, li) == ("deceased", died_on)


@pytest.mark.parametrize("status", ["moved", "deceased"])
def test_the_date_alone_corrects_it_for_a_recipient_who_moved_or_died(build, client, admin_headers, status):
    li = build.recipient(birth=BORN)
    today = _today(build)
    wrong, right = today - timedelta(days=2), today - timedelta(days=20)
    _patch(client, admin_headers, li, {"status": status, "effective_on": wrong.isoformat()})
    response = _patch(client, admin_headers, li, {"effective_on": right.isoformat()})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == status
    assert _stored(build, li) == (status, right)
    assert _date_changes(build, li)[-1] == {"from": wrong.isoformat(), "to": right.isoformat()}
    # The same date again is no change, and leaves no event.
    assert _patch(client, admin_headers, li, {"effective_on": right.isoformat()}).status_code == 200
    assert len(_date_changes(build, li)) == 2


def test_a_death_stays_final_when_a_date_comes_with_a_status(build, client, admin_headers):
    li = build.recipient(birth=BORN, status="deceased")
    response = _patch(client, admin_headers, li, {"status": "deceased",
                                                  "effective_on": (_today(build) - timedelta(days=1)).isoformat()})
    assert response.status_code == 409
    assert error_code(response) == "invalid_transition"


def test_an_active_recipient_takes_no_date_alone(build, client, admin_headers):
    li = build.recipient(birth=BORN)
    response = _patch(client, admin_headers, li, {"effective_on": _today(build).isoformat()})
    assert response.status_code == 422
    assert "effective_on" in response.get_json()["error"]["details"]["fields"]
    assert _stored(build, li) == ("active", None)


@pytest.mark.parametrize("value", ["2026-02-30", "yesterday", 20261103, "1969-12-31"])
def test_a_date_that_is_not_one_is_refused(build, client, admin_headers, value):
    li = build.recipient(birth=BORN)
    response = _patch(client, admin_headers, li, {"status": "moved", "effective_on": value})
    assert response.status_code == 422
    assert "effective_on" in response.get_json()["error"]["details"]["fields"]
    assert _stored(build, li) == ("active", None)


def test_only_an_admin_in_scope_sets_the_date(build, client):
    li = build.recipient(birth=BORN)
    body = {"status": "deceased", "effective_on": _today(build).isoformat()}
    assert _patch(client, build.headers(build.auditor()), li, body).status_code == 403
    assert _patch(client, build.headers(build.admin(region_code="510132")), li, body).status_code == 403
    assert _stored(build, li) == ("active", None)


# --- the console ----------------------------------------------------------------------------------------

def _as_admin(build, client):
    assert login_page(client, build.admin().username, PASSWORD).status_code == 302


def _form(client, recipient) -> tuple[str, dict]:
    address = f"/staff/recipients/{recipient.id}/status"
    html = client.get(address + "?to=deceased").get_data(as_text=True)
    key = html.split('name="form_key" value="', 1)[1].split('"', 1)[0]
    return address, {"status": "deceased", "form_key": key, "csrf_token": csrf_from(html)}


def test_the_form_asks_for_the_date_with_today_filled_in_and_no_later_day_offered(build, client):
    li = build.recipient(name="李桂英", birth=BORN)
    _as_admin(build, client)
    html = client.get(f"/staff/recipients/{li.id}/status?to=deceased").get_data(as_text=True)
    today = _today(build).isoformat()
    assert f'name="effective_on" type="date" value="{today}"' in html
    assert f'max="{today}"' in html
    assert "去世或迁出的日期" in html


def test_the_console_records_the_date_and_the_recipients_page_shows_it(build, client):
    li = build.recipient(name="李桂英", birth=BORN)
    _as_admin(build, client)
    died = _today(build) - timedelta(days=12)
    address, data = _form(client, li)
    answer = client.post(address, data={**data, "effective_on": died.isoformat()})
    assert answer.status_code == 303
    assert _stored(build, li) == ("deceased", died)
    shown = visible_text(client.get(answer.location))
    assert "去世日期" in shown
    assert f"{died.year}年{died.month}月{died.day}日" in shown or died.isoformat() in shown


@pytest.mark.parametrize(("value", "said"), [
    ("", "请填写这一项"),
    ("tomorrow", "日期格式不对"),
    ("1969-12-31", "请填写一个有效的日期"),
    ("future", "日期不能晚于今天"),
    ("before-birth", "日期不能早于老人的出生日期"),
])
def test_a_missing_or_wrong_date_is_refused_beside_the_field_and_changes_nothing(build, client, value, said):
    li = build.recipient(name="李桂英", birth=BORN_LATER)
    _as_admin(build, client)
    value = {"future": (_today(build) + timedelta(days=1)).isoformat(),
             "before-birth": (BORN_LATER - timedelta(days=1)).isoformat()}.get(value, value)
    address, data = _form(client, li)
    refused = client.post(address, data={**data, "effective_on": value})
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert 'id="error-effective_on"' in html
    assert said in visible_text(refused)
    assert 'href="#field-effective_on"' in html  # in the summary at the top, linked to the field
    assert _stored(build, li) == ("active", None)
