"""Acting for a recipient (代办, /staff/recipients/<id>/act…): the recipients' own pages for an admin in scope,
with a banner saying for whom, every change made with the admin as actor — on both databases."""

import pytest
from sqlalchemy import select

from marketplace.audit.models import AuditEvent
from marketplace.db import db
from providers.models import Complaint
from tests.support.console import qr_codes_in, visible_text
from tests.test_recipient_pages import form_with, log_in, page_forms, submit
from vouchers import tokens
from vouchers.models import ChoiceEvent, Voucher


@pytest.fixture
def world(build):
    world = build.world()
    build.issue(world.programme)
    return world


def act(recipient, path: str = "") -> str:
    return f"/staff/recipients/{recipient.id}/act{path}"


def test_an_admin_in_scope_sees_the_recipients_pages_with_a_banner_on_every_one(client, build, world):
    county = build.admin(region_code="510131")
    log_in(client, county)
    for path in ("", f"/providers/{world.meal}", "/services", "/cards"):
        page = client.get(act(world.alice, path))
        assert page.status_code == 200, path
        assert f"您正在代 {world.alice.name} 办理" in visible_text(page), path
    home = visible_text(client.get(act(world.alice)))
    assert f"{world.alice.name} 的服务券" in home
    assert "还剩 4 次" in home


def test_links_on_the_acting_pages_stay_on_the_acting_pages(client, build, world):
    log_in(client, world.admin)
    body = client.get(act(world.alice)).get_data(as_text=True)
    assert f'href="{act(world.alice, "/providers/" + world.meal)}?programme_id={world.programme.id}"' in body
    assert 'href="/me' not in body.replace('href="/me"', "")  # no link into the admin's own (nonexistent) /me


@pytest.mark.parametrize("path", ["", "/services", "/cards", "/providers/X"])
def test_an_admin_out_of_scope_an_auditor_and_recipients_are_refused(app, build, world, path):
    for user in (build.admin(region_code="510132"), build.auditor(), world.bob.user, world.p1.user):
        client = app.test_client()
        log_in(client, user)
        answer = client.get(act(world.alice, path))
        assert answer.status_code == 403, (user.role, path)


def test_acting_for_an_unknown_recipient_is_not_found(client, world):
    log_in(client, world.admin)
    assert client.get("/staff/recipients/99999/act").status_code == 404
    assert client.get("/staff/recipients/0/act").status_code == 404
    assert client.get("/staff/recipients/abc/act").status_code == 404


def test_there_is_no_presence_code_page_for_someone_else(client, world):
    log_in(client, world.admin)
    assert client.get(act(world.alice, "/code")).status_code == 404


def test_an_out_of_scope_admin_cannot_post_either(app, client, build, world):
    log_in(client, world.admin)
    form = form_with(client, act(world.alice, f"/providers/{world.meal}/choose?provider_id={world.p1.id}"), "step",
                     "confirm")
    outsider = app.test_client()
    log_in(outsider, build.admin(region_code="510132"))
    own_page = outsider.get("/staff").get_data(as_text=True)  # any page: the logout form carries the token
    fields = {**form["fields"], "csrf_token": page_forms(own_page)[0]["fields"]["csrf_token"]}
    assert outsider.post(form["action"], data=fields).status_code == 403
    assert build.count(ChoiceEvent) == 0


def test_a_choice_made_for_the_recipient_is_the_admins_for_them(client, build, world):
    log_in(client, world.admin)
    form = form_with(client, act(world.alice, f"/providers/{world.meal}/choose?provider_id={world.p1.id}"), "step",
                     "confirm")
    answer = submit(client, form)
    assert answer.status_code == 303
    assert answer.location.startswith(act(world.alice, f"/providers/{world.meal}/chosen"))
    [event] = build.read(lambda: db.session.scalars(select(ChoiceEvent)).all())
    assert (event.recipient_id, event.chosen_by, event.acted_as) == (world.alice.id, world.admin.id, "admin")
    audit = build.read(lambda: db.session.scalars(select(AuditEvent).where(AuditEvent.action == "choice.made")).one())
    assert (audit.actor_id, audit.entity_id, audit.on_behalf_of) == (world.admin.id, str(world.alice.id),
                                                                     world.alice.id)


def test_a_rating_heard_on_the_phone_is_recorded_as_a_follow_up_by_the_admin(client, build, world):
    build.choose_all(world, world.p1, world.alice)
    served = build.redeem(world.p1, world.alice, world.meal)
    log_in(client, world.admin)
    assert "电话回访" in visible_text(client.get(act(world.alice, "/services")))
    form = form_with(client, act(world.alice, "/services"), "redemption_id", str(served.id))
    assert submit(client, form, score="2", comment="老人说饭太咸").status_code == 303
    [rating] = build.ratings()
    assert (rating["score"], rating["source"], rating["rated_by"], rating["recipient_id"]) == (
        2, "phone_followup", world.admin.id, world.alice.id)
    assert "电话回访时记录" in visible_text(client.get(act(world.alice, "/services")))


def test_acting_for_one_recipient_an_admin_cannot_rate_anothers_service(client, build, world):
    build.choose_all(world, world.p1)
    bobs = build.redeem(world.p1, world.bob, world.meal)
    build.redeem(world.p1, world.alice, world.meal)
    log_in(client, world.admin)
    form = next(f for f in page_forms(client.get(act(world.alice, "/services")).get_data(as_text=True))
                if "redemption_id" in f["fields"])
    answer = submit(client, form, redemption_id=str(bobs.id), score="1")
    assert answer.status_code == 404
    assert build.ratings() == []


def test_a_complaint_filed_for_the_recipient_names_them(client, build, world):
    build.choose_all(world, world.p1, world.alice)
    log_in(client, world.admin)
    form = next(f for f in page_forms(client.get(act(world.alice, "/services")).get_data(as_text=True))
                if f["action"].endswith("/complaint"))
    assert submit(client, form, provider_id=str(world.p1.id), text="老人电话里说没人上门").status_code == 303
    [complaint] = build.read(lambda: db.session.scalars(select(Complaint)).all())
    assert (complaint.recipient_id, complaint.created_by) == (world.alice.id, world.admin.id)


def test_the_admin_prints_the_recipients_cards(client, build, world, app):
    log_in(client, world.admin)
    page = client.get(act(world.alice, "/cards"))
    issued = build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.status == "issued")
    with app.app_context():
        printed = sorted(tokens.read_voucher_token(token) for token in qr_codes_in(page.get_data(as_text=True)))
    assert printed == sorted(voucher.id for voucher in issued)


def acted_for(build, action: str) -> list[tuple[int, int | None]]:
    """(actor, on_behalf_of) of the audit events of *action*."""
    return build.read(lambda: [(event.actor_id, event.on_behalf_of) for event in db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))])


def test_every_action_for_the_recipient_is_audited_as_the_admins_on_their_behalf(client, build, world):
    build.choose_all(world, world.p1, world.alice)
    served = build.redeem(world.p1, world.alice, world.meal)
    log_in(client, world.admin)
    form = form_with(client, act(world.alice, "/services"), "redemption_id", str(served.id))
    assert submit(client, form, score="3").status_code == 303
    form = next(f for f in page_forms(client.get(act(world.alice, "/services")).get_data(as_text=True))
                if f["action"].endswith("/complaint"))
    assert submit(client, form, provider_id=str(world.p1.id), text="电话里说送餐晚了").status_code == 303
    reason_form = form_with(client, act(world.alice, f"/providers/{world.meal}/choose?provider_id={world.p2.id}"),
                            "step", "reason")
    confirmation = submit(client, reason_form, switch_reason="timeliness")
    [confirm] = [f for f in page_forms(confirmation.get_data(as_text=True)) if f["fields"].get("step") == "confirm"]
    assert submit(client, confirm).status_code == 303
    client.get(act(world.alice, "/cards"))

    mine = (world.admin.id, world.alice.id)
    assert acted_for(build, "rating.recorded") == [mine]
    assert acted_for(build, "complaint.filed") == [mine]
    assert acted_for(build, "choice.made")[-1] == mine
    printed = acted_for(build, "voucher.card_printed")
    assert printed == [mine] * build.count(Voucher, Voucher.recipient_id == world.alice.id, Voucher.status == "issued")
    verified = client.get("/api/v1/audit/verify", headers=build.headers(world.admin)).get_json()
    assert verified["ok"] is True


def test_a_recipient_acting_for_themself_is_on_behalf_of_nobody(client, build, world):
    build.choose_all(world, world.p1, world.alice)
    served = build.redeem(world.p1, world.alice, world.meal)
    log_in(client, world.alice.user)
    form = form_with(client, "/me/services", "redemption_id", str(served.id))
    assert submit(client, form, score="5").status_code == 303
    client.get("/me/cards")
    assert acted_for(build, "rating.recorded") == [(world.alice.user.id, None)]
    assert acted_for(build, "voucher.card_printed") == []  # only a card an admin prints is audited
