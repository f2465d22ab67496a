"""The provider's answer to a complaint (POST /complaints/{id}/answer) and what a provider sees of its
complaints (never who complained). Every test runs on SQLite and PostgreSQL; the races use real threads."""

from dataclasses import dataclass

import pytest
from sqlalchemy import select

from marketplace.audit.models import AuditEvent
from marketplace.auth.models import User
from marketplace.db import db, utcnow
from providers.models import Complaint
from providers.service import complaints
from tests.conftest import error_code
from tests.support.races import race, race_transactions
from tests.support.scenario import Builder, World

URL = "/api/v1/complaints"
ANSWER = "已核实：那天送餐车坏了，已向老人道歉，以后提前打电话说明。"


@dataclass(frozen=True)
class Cast(World):
    """The standard world: alice chose p1 for meals and had one; she complained about it (through an admin).
    p1.user is p1's manager (its first login); `staff` is a scanning login of p1."""

    build: Builder
    complaint: int
    staff: User

    def headers(self, user):
        return self.build.headers(user)


@pytest.fixture
def cast(build):
    world = build.world()
    build.issue(world.programme)
    build.choose(world.alice, world.programme, world.meal, world.p1)
    served = build.redeem(world.p1, world.alice, world.meal)
    complaint = build.complain(world.p1, redemption=served, by=world.alice.user, text="送餐晚了一个小时，饭菜是凉的")
    return Cast(**vars(world), build=build, complaint=complaint,
                staff=build.user(role="provider", provider_id=world.p1.id))


def answer(client, headers, complaint_id, text=ANSWER):
    return client.post(f"{URL}/{complaint_id}/answer", json={"answer": text}, headers=headers)


def stored(build, complaint_id) -> Complaint:
    return build.read(lambda: db.session.get(Complaint, complaint_id))


def test_the_manager_answers_a_complaint_about_its_provider(client, cast):
    response = answer(client, cast.headers(cast.p1.user), cast.complaint, text=f"  {ANSWER}\n")

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["answer"] == ANSWER  # trimmed
    assert body["answered_at"]
    assert body["status"] == "open"
    assert body["answered_by"] is None  # the bureau's field
    assert body["recipient_id"] is None  # never who complained
    row = stored(cast.build, cast.complaint)
    assert (row.answer, row.answered_by, row.status) == (ANSWER, cast.p1.user.id, "open")


def test_staff_see_the_answer_and_who_gave_it(client, cast):
    answer(client, cast.headers(cast.p1.user), cast.complaint)

    body = client.get(f"{URL}/{cast.complaint}", headers=cast.headers(cast.admin)).get_json()

    assert (body["answer"], body["answered_by"], body["recipient_id"]) == (ANSWER, cast.p1.user.id, cast.alice.id)
    auditor = client.get(f"{URL}/{cast.complaint}", headers=cast.headers(cast.build.auditor())).get_json()
    assert auditor["answered_by"] == cast.p1.user.id


def test_the_recipient_reads_the_answer_to_their_complaint(client, cast):
    answer(client, cast.headers(cast.p1.user), cast.complaint)

    body = client.get(f"{URL}/{cast.complaint}", headers=cast.headers(cast.alice.user)).get_json()

    assert (body["answer"], body["recipient_id"], body["answered_by"]) == (ANSWER, cast.alice.id, None)


def test_a_scanning_staff_login_may_not_answer(client, cast):
    response = answer(client, cast.headers(cast.staff), cast.complaint)

    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert stored(cast.build, cast.complaint).answer is None


def test_the_bureaus_staff_may_not_answer_for_the_provider(client, cast):
    response = answer(client, cast.headers(cast.admin), cast.complaint)

    assert response.status_code == 403
    assert stored(cast.build, cast.complaint).answer is None


def test_another_providers_manager_finds_no_such_complaint(client, cast):
    response = answer(client, cast.headers(cast.p2.user), cast.complaint)

    assert response.status_code == 404
    assert error_code(response) == "not_found"
    assert stored(cast.build, cast.complaint).answer is None


def test_a_complaint_is_answered_once(client, cast):
    manager = cast.headers(cast.p1.user)
    assert answer(client, manager, cast.complaint).status_code == 200

    again = answer(client, manager, cast.complaint, text="补充一句：已经换了送餐员。")

    assert again.status_code == 409
    assert error_code(again) == "complaint_already_answered"
    assert stored(cast.build, cast.complaint).answer == ANSWER


def test_a_resolved_complaint_can_no_longer_be_answered(client, cast):
    cast.build.resolve(cast.complaint, upheld=True)

    response = answer(client, cast.headers(cast.p1.user), cast.complaint)

    assert response.status_code == 409
    assert error_code(response) == "invalid_transition"
    assert stored(cast.build, cast.complaint).answer is None


def test_an_answered_complaint_is_resolved_as_usual_and_keeps_its_answer(client, cast):
    answer(client, cast.headers(cast.p1.user), cast.complaint)
    resolved = client.post(f"{URL}/{cast.complaint}/resolve", json={"upheld": False, "resolution": "核实后不属实"},
                           headers=cast.headers(cast.admin))

    assert resolved.status_code == 200
    assert (resolved.get_json()["status"], resolved.get_json()["answer"]) == ("resolved", ANSWER)
    late = answer(client, cast.headers(cast.p1.user), cast.complaint)
    assert error_code(late) == "complaint_already_answered"


@pytest.mark.parametrize("text", ["好", "   好   ", "", "字" * 2001], ids=["one", "one-trimmed", "empty", "too-long"])
def test_an_answer_has_two_to_two_thousand_characters(client, cast, text):
    response = answer(client, cast.headers(cast.p1.user), cast.complaint, text=text)

    assert response.status_code == 422
    assert "answer" in response.get_json()["error"]["details"]["fields"]
    assert stored(cast.build, cast.complaint).answer is None


def test_two_thousand_characters_are_accepted(client, cast):
    assert answer(client, cast.headers(cast.p1.user), cast.complaint, text="字" * 2000).status_code == 200


def test_answering_is_audited_in_the_complaints_region(client, cast):
    answer(client, cast.headers(cast.p1.user), cast.complaint)
    response = client.get("/api/v1/audit", query_string={"entity": "provider", "entity_id": cast.p1.id},
                          headers=cast.headers(cast.build.auditor()))
    events = [event for event in response.get_json()["items"] if event["action"] == "complaint.answered"]

    assert len(events) == 1
    assert events[0]["actor"] == cast.p1.user.username
    assert events[0]["data"] == {"complaint_id": cast.complaint}
    assert events[0]["region_code"] == "510131"  # alice's
    assert ANSWER not in str(events[0])
    assert client.get("/api/v1/audit/verify", headers=cast.headers(cast.admin)).get_json()["ok"] is True


def test_a_refused_answer_is_not_audited(client, cast):
    answer(client, cast.headers(cast.staff), cast.complaint)
    answer(client, cast.headers(cast.p2.user), cast.complaint)
    response = client.get("/api/v1/audit", headers=cast.headers(cast.build.auditor()))

    assert [event for event in response.get_json()["items"] if event["action"] == "complaint.answered"] == []


def test_a_provider_lists_its_own_complaints_without_who_complained(client, cast):
    other = cast.build.complain(cast.p2, recipient=cast.bob, text="服务员态度不好")

    for login in (cast.p1.user, cast.staff):
        body = client.get(URL, headers=cast.headers(login)).get_json()
        assert [item["id"] for item in body["items"]] == [cast.complaint]
        assert all(item["recipient_id"] is None and item["answered_by"] is None for item in body["items"])
        assert client.get(f"{URL}/{other}", headers=cast.headers(login)).status_code == 404
    assert client.get(f"{URL}/{cast.complaint}", headers=cast.headers(cast.staff)).get_json()["recipient_id"] is None


# --- races ----------------------------------------------------------------------------------------

def test_two_answers_at_once_give_one_answer(app, cast):
    token = cast.build.headers(cast.p1.user)

    def post(index):
        with app.test_client() as own:
            response = answer(own, token, cast.complaint, text=f"{ANSWER}（{index}）")
            return response.status_code, response.get_json()

    results = race(2, post)

    statuses = sorted(status for status, _body in results)
    assert statuses == [200, 409], results
    refused = next(body for status, body in results if status == 409)
    assert refused["error"]["code"] == "complaint_already_answered"
    winner = next(body for status, body in results if status == 200)
    assert stored(cast.build, cast.complaint).answer == winner["answer"]


def test_an_answer_racing_the_resolution_never_lands_after_it(app, cast):
    complaint, manager_id, admin_id = cast.complaint, cast.p1.user.id, cast.admin.id

    def work(index):
        if index == 0:
            complaints.answer_complaint(complaint_id=complaint, answer=ANSWER, actor=db.session.get(User, manager_id),
                                        now=utcnow())
        else:
            complaints.resolve_complaint(complaint_id=complaint, upheld=False, resolution="核实后不属实",
                                         actor=db.session.get(User, admin_id), now=utcnow())

    outcomes = race_transactions(app, work, racers=2)

    row = stored(cast.build, complaint)
    assert outcomes[1] == "ok"
    assert row.status == "resolved"
    if outcomes[0] == "ok":
        assert row.answer == ANSWER
        # Both landed: the answer first (the audit chain is in commit order).
        actions = cast.build.read(lambda: db.session.scalars(
            select(AuditEvent.action).where(AuditEvent.action.in_(["complaint.answered", "complaint.resolved"]))
            .order_by(AuditEvent.id)).all())
        assert actions == ["complaint.answered", "complaint.resolved"]
    else:
        assert outcomes[0] == "InvalidTransition"
        assert row.answer is None
