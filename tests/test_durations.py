"""The durations the market-integrity rules read (both databases): a catalogue item's usual duration
(`default_duration_minutes`, optional, 1–1440, on POST and PATCH /api/v1/catalogue/items, audited), a programme
item's shortest plausible service (`min_duration_minutes`, optional, 1–1440, in POST /api/v1/programmes and
beside each item of the console's programme form), and the duration a provider records at the door (optional)."""

import json

import pytest
from sqlalchemy import select

from marketplace.audit.models import AuditEvent
from marketplace.catalogue.models import ServiceItem
from marketplace.db import db
from marketplace.programmes.models import Programme
from tests.conftest import PASSWORD, error_code, programme_payload
from tests.support.console import csrf_from, login_page, visible_text
from tests.test_scan_pages import offer_form, read_code, redemptions
from tests.test_staff_programme_create import FORM_KEY, filled

ITEMS = "/api/v1/catalogue/items"
PAGE = "/staff/programmes/new"


def item_body(**overrides) -> dict:
    return {"code": "HC-BATH", "name": "助浴", "category_code": "basic_public", "unit": "次",
            "standard_price_fen": 6000, "nature": "service", **overrides}


def _stored_item(build, code: str) -> ServiceItem:
    return build.read(lambda: db.session.scalar(select(ServiceItem).where(ServiceItem.code == code)))


def _events(build, action: str) -> list[dict]:
    return build.read(lambda: [json.loads(event.data) for event in db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))])


# --- catalogue items ------------------------------------------------------------------------------------

def test_an_item_is_created_with_its_usual_duration_and_shows_it(build, client):
    headers = build.headers(build.admin())
    created = client.post(ITEMS, json=item_body(default_duration_minutes=60), headers=headers)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["default_duration_minutes"] == 60
    [listed] = [item for item in client.get(ITEMS).get_json() if item["code"] == "HC-BATH"]
    assert listed["default_duration_minutes"] == 60
    assert _events(build, "catalogue.item_created")[-1]["default_duration_minutes"] == 60


def test_the_usual_duration_is_optional(build, client):
    created = client.post(ITEMS, json=item_body(), headers=build.headers(build.admin()))
    assert created.status_code == 201
    assert created.get_json()["default_duration_minutes"] is None


@pytest.mark.parametrize("minutes", [0, 1441, -5, 1.5, "60", True])
def test_a_usual_duration_outside_a_minute_to_a_day_is_refused(build, client, minutes):
    refused = client.post(ITEMS, json=item_body(default_duration_minutes=minutes),
                          headers=build.headers(build.admin()))
    assert refused.status_code == 422
    assert "default_duration_minutes" in refused.get_json()["error"]["details"]["fields"]
    assert _stored_item(build, "HC-BATH") is None


@pytest.mark.parametrize("minutes", [1, 1440])
def test_a_minute_and_a_whole_day_are_the_bounds(build, client, minutes):
    created = client.post(ITEMS, json=item_body(default_duration_minutes=minutes), headers=build.headers(build.admin()))
    assert created.status_code == 201
    assert created.get_json()["default_duration_minutes"] == minutes


def test_an_admin_sets_and_clears_the_usual_duration_later_and_each_change_is_audited(build, client):
    code = build.item(name="助浴")
    headers = build.headers(build.admin())
    changed = client.patch(f"{ITEMS}/{code}", json={"default_duration_minutes": 45}, headers=headers)
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["default_duration_minutes"] == 45
    assert _stored_item(build, code).default_duration_minutes == 45
    again = client.patch(f"{ITEMS}/{code}", json={"default_duration_minutes": 45}, headers=headers)
    assert again.status_code == 200
    cleared = client.patch(f"{ITEMS}/{code}", json={"default_duration_minutes": None}, headers=headers)
    assert cleared.status_code == 200
    assert cleared.get_json()["default_duration_minutes"] is None
    assert [event["default_duration_minutes"] for event in _events(build, "catalogue.item_updated")] == [
        {"from": None, "to": 45}, {"from": 45, "to": None}]  # the same value again changed nothing


@pytest.mark.parametrize("body", [{}, {"default_duration_minutes": 0}, {"default_duration_minutes": 2000},
                                  {"default_duration_minutes": 30, "price": 1}])
def test_a_change_without_a_valid_duration_is_refused(build, client, body):
    code = build.item(name="助浴", default_duration_minutes=60)
    refused = client.patch(f"{ITEMS}/{code}", json=body, headers=build.headers(build.admin()))
    assert refused.status_code == 422
    assert _stored_item(build, code).default_duration_minutes == 60


def test_changing_an_item_is_for_an_admin_without_a_region_scope(build, client):
    code = build.item(name="助浴", default_duration_minutes=60)
    body = {"default_duration_minutes": 10}
    for user in (build.admin(region_code="510131"), build.auditor()):
        assert client.patch(f"{ITEMS}/{code}", json=body, headers=build.headers(user)).status_code == 403
    assert client.patch(f"{ITEMS}/{code}", json=body).status_code == 401
    assert _stored_item(build, code).default_duration_minutes == 60


@pytest.mark.parametrize("code", ["HC-NOPE", "not a code", "x" * 40])
def test_an_unknown_item_is_not_found(build, client, code):
    response = client.patch(f"{ITEMS}/{code}", json={"default_duration_minutes": 10},
                            headers=build.headers(build.admin()))
    assert response.status_code == 404
    assert error_code(response) == "not_found"


# --- programme items ------------------------------------------------------------------------------------

def test_a_programme_item_takes_a_shortest_plausible_service(build, client):
    meal, bath = build.item(name="助餐"), build.item(name="助浴")
    payload = programme_payload([meal, bath])
    payload["items"][1]["min_duration_minutes"] = 30
    created = client.post("/api/v1/programmes", json=payload, headers=build.headers(build.admin()))
    assert created.status_code == 201, created.get_json()
    by_code = {item["item_code"]: item for item in created.get_json()["items"]}
    assert by_code[bath]["min_duration_minutes"] == 30
    assert by_code[meal]["min_duration_minutes"] is None
    stored = build.read(lambda: {item.item_code: item.min_duration_minutes
                                 for item in db.session.get(Programme, created.get_json()["id"]).items})
    assert stored == {meal: None, bath: 30}


@pytest.mark.parametrize("minutes", [0, 1441, "30", 2.5])
def test_a_shortest_service_outside_a_minute_to_a_day_is_refused_beside_its_item(build, client, minutes):
    meal = build.item(name="助餐")
    payload = programme_payload([meal])
    payload["items"][0]["min_duration_minutes"] = minutes
    refused = client.post("/api/v1/programmes", json=payload, headers=build.headers(build.admin()))
    assert refused.status_code == 422
    assert "min_duration_minutes" in refused.get_json()["error"]["details"]["fields"]["items"]["0"]
    assert build.read(lambda: db.session.scalar(select(Programme.id))) is None


# --- the console's programme form ---------------------------------------------------------------------

@pytest.fixture
def catalogue(build):
    return {"meal": build.item(name="助餐", price=1500), "bath": build.item(name="助浴", price=6000)}


def _post(client, data: dict):
    page = client.get(PAGE).get_data(as_text=True)
    return client.post(PAGE, data={**data, "csrf_token": csrf_from(page), "form_key": FORM_KEY.search(page).group(1)})


def test_the_programme_form_asks_for_a_shortest_service_beside_each_item(build, client, catalogue):
    assert login_page(client, build.admin().username, PASSWORD).status_code == 302
    page = client.get(PAGE)
    body = page.get_data(as_text=True)
    for code in catalogue.values():
        assert f'name="min-{code}" type="text" inputmode="numeric" value=""' in body
    assert "最短服务时长（分钟）" in visible_text(page)


def test_the_console_creates_a_programme_with_a_shortest_service(app, build, client, catalogue):
    assert login_page(client, build.admin().username, PASSWORD).status_code == 302
    meal, bath = catalogue["meal"], catalogue["bath"]
    answer = _post(client, filled(catalogue, item=[meal, bath], **{f"quota-{bath}": "2", f"min-{bath}": "30",
                                                                  f"min-{meal}": ""}))
    assert answer.status_code == 303, visible_text(answer)
    stored = build.read(lambda: {item.item_code: item.min_duration_minutes
                                 for item in db.session.scalars(select(Programme)).one().items})
    assert stored == {meal: None, bath: 30}


@pytest.mark.parametrize(("value", "said"), [("0", "应在 1 到 1440 之间"), ("半小时", "请填写一个整数"),
                                             ("1441", "应在 1 到 1440 之间")])
def test_a_wrong_shortest_service_is_refused_beside_its_item(build, client, catalogue, value, said):
    assert login_page(client, build.admin().username, PASSWORD).status_code == 302
    meal = catalogue["meal"]
    refused = _post(client, filled(catalogue, **{f"min-{meal}": value}))
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert f'id="error-min-{meal}"' in html
    assert said in visible_text(refused)
    assert f'href="#field-min-{meal}">助餐最短的服务时长：' in html  # named in the summary at the top
    assert f'name="min-{meal}" type="text" inputmode="numeric" value="{value}"' in html  # kept as typed
    assert build.read(lambda: db.session.scalar(select(Programme.id))) is None


# --- at the door ------------------------------------------------------------------------------------------

def test_the_provider_may_leave_the_duration_out_at_the_door(build, client):
    world = build.world()
    build.issue(world.programme, build.period())
    build.choose(world.alice, world.programme, world.meal, world.p1)
    assert login_page(client, world.p1.user.username, PASSWORD).status_code == 302
    offer = read_code(client, short_code=build.presence_code(world.alice)["short_code_display"])
    html = offer.get_data(as_text=True)
    assert 'name="duration_minutes"' in html
    assert "服务时长（分钟，可以不填）" in visible_text(offer)
    done = client.post("/provider/scan/confirm", data=offer_form(html, duration_minutes="", notes=""))
    assert done.status_code == 303
    assert [r.duration_minutes for r in redemptions(build)] == [None]
