"""Real races through a real server: gunicorn (2 workers × 8 threads) over HTTP, on a fresh PostgreSQL
database and on a fresh SQLite file.

The service-level race tests (test_redemption_races, test_budget_race) race threads inside one
process. These fire concurrent HTTP requests at `gunicorn wsgi:app` as deployed — two processes, each
with its own connection pool, request handling, error handlers, idempotency layer and commit — and
then check the outcome both over HTTP (ledger, reconciliation, audit verification) and in the
database:

(a) 40 scans of one voucher card at once → exactly one 201, every other answer 409
    `voucher_already_redeemed`, one redemption row, the journal moved the face value once;
(b) a monthly issuance racing 31 supplementary issues for a budget that cannot cover them all →
    available never below 0 (also polled while the race runs), committed equal to the face value of
    every voucher issued and to the sum of what the 200/201 answers reported, every refusal a 409
    `budget_exceeded`, reconciliation ok;
(c) 32 concurrent sends of one redemption with one Idempotency-Key → one redemption row; every
    answer is the same 201 body (exactly one of them not a replay) or 409 `idempotency_key_in_flight`
    (PostgreSQL only: SQLite's single writer makes the repeats wait and replay).

No answer may be a 5xx: every reply is counted, and so is every 5xx line in gunicorn's access log.
"""

import threading
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select

from marketplace.db import db
from marketplace.idempotency import IdempotencyRecord
from tests.support.databases import fresh_database, postgres_unavailable_reason
from tests.support.races import race
from tests.support.scenario import Builder
from tests.support.servers import Server
from vouchers.models import Redemption, Voucher

SCANS = 40
ISSUERS = 32
REPLAYS = 32
EDGE_REGION = "510129"  # 大邑县


class Live:
    """The running server, and a Builder on a test-process app sharing its database and secrets."""

    def __init__(self, backend: str, server: Server):
        self.backend = backend
        self.server = server
        self.build = Builder(server.local_app())

    def post(self, path, body, headers, **kwargs):
        return self.server.call("POST", path, json_body=body, headers=headers, **kwargs)

    def get(self, path, headers):
        return self.server.get_json(path, headers)

    def ledger(self, programme_id, headers) -> dict:
        return self.get(f"/api/v1/programmes/{programme_id}/ledger", headers)

    def assert_books_ok(self, programme_id, headers) -> None:
        reconciliation = self.get(f"/api/v1/programmes/{programme_id}/reconciliation", headers)
        assert reconciliation["ok"], [check for check in reconciliation["checks"] if not check["ok"]]
        verified = self.get("/api/v1/audit/verify", headers)
        assert verified["ok"], verified
        assert verified["first_broken_id"] is None

    def assert_no_5xx(self) -> None:
        assert self.server.client_side_5xx() == []
        assert self.server.server_side_5xx() == []
        assert "unhandled error" not in self.server.error_text()


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def live(request, tmp_path_factory):
    if request.param == "postgresql" and (reason := postgres_unavailable_reason()):
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp(f"server-{request.param}")
    with fresh_database(request.param, folder, prefix="vm_server") as url:
        server = Server(url, folder)
        try:
            server.start()
            yield Live(request.param, server)
        finally:
            server.stop()


def no_exceptions(replies) -> list:
    failures = [repr(reply) for reply in replies if isinstance(reply, BaseException)]
    assert failures == [], failures
    return replies


def outcomes(replies) -> Counter:
    return Counter((reply.status, reply.error_code) for reply in replies)


def test_racing_card_scans_redeem_one_voucher_exactly_once(live):
    build = live.build
    world = build.world()
    build.issue(world.programme, build.period())
    build.choose_all(world, world.p1)
    voucher = build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.item_code == world.bath)[0]
    token = build.voucher_token(voucher.id)
    scanner, admin = build.headers(world.p1.user), build.headers(world.admin)
    programme_id = world.programme.id
    before = live.ledger(programme_id, admin)

    replies = no_exceptions(race(SCANS, lambda _index: live.post("/api/v1/redemptions", {"voucher_token": token},
                                                                 scanner)))

    assert outcomes(replies) == {(201, None): 1, (409, "voucher_already_redeemed"): SCANS - 1}
    won = next(reply.json for reply in replies if reply.status == 201)
    assert won["voucher_id"] == voucher.id
    assert won["provider_id"] == world.p1.id
    assert won["face_value_fen"] == voucher.face_value_fen
    listed = live.get(f"/api/v1/redemptions?programme_id={programme_id}", admin)
    assert listed["total"] == 1
    assert listed["items"][0]["id"] == won["id"]
    assert live.get(f"/api/v1/vouchers/{voucher.id}", admin)["status"] == "redeemed"
    assert build.count(Redemption, Redemption.voucher_id == voucher.id) == 1
    after = live.ledger(programme_id, admin)
    assert after["redeemed_fen"] == before["redeemed_fen"] + voucher.face_value_fen
    assert after["committed_fen"] == before["committed_fen"] - voucher.face_value_fen
    assert after["available_fen"] == before["available_fen"]
    live.assert_books_ok(programme_id, admin)
    live.assert_no_5xx()


def test_issuance_racing_supplementary_issues_at_the_budget_edge_never_overspends(live):
    build = live.build
    meal = build.item(price=1000)
    # A region of its own: the module's other tests add recipients to 510131, and they must not be eligible.
    recipients = [build.recipient(region_code=EDGE_REGION) for _ in range(5)]
    monthly_total = 5 * 2 * 1000  # five recipients, quota two, face value 1000 (no co-payment)
    budget = monthly_total + 15 * 1000 + 500  # room for the run and 15 extras, or for 25 extras alone
    programme = build.programme(items=[(meal, 1000, 2)], budget_fen=budget, copay={"default": 0}, min_age=None,
                                region_code=EDGE_REGION)
    admin = build.headers(build.admin())
    period = build.period()
    racing = threading.Event()
    racing.set()
    polled: list[int] = []

    def poll():
        while racing.is_set():
            reply = live.server.call("GET", f"/api/v1/programmes/{programme.id}/ledger", headers=admin, timeout=30)
            polled.append(reply.json["available_fen"] if reply.status == 200 else -10**9 - reply.status)

    def issue(index):
        if index == 0:
            return live.post(f"/api/v1/programmes/{programme.id}/issuance", {"period": period}, admin)
        return live.post("/api/v1/vouchers", {"programme_id": programme.id, "item_code": meal, "count": 1,
                                              "recipient_id": recipients[index % len(recipients)].id}, admin)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        replies = no_exceptions(race(ISSUERS, issue))
    finally:
        racing.clear()
        poller.join(timeout=60)
    assert not poller.is_alive()

    monthly, extras = replies[0], replies[1:]
    assert (monthly.status, monthly.error_code) in {(200, None), (409, "budget_exceeded")}, monthly.body
    assert set(outcomes(extras)) <= {(201, None), (409, "budget_exceeded")}, outcomes(extras)
    refused = [reply for reply in replies if reply.status == 409]
    assert len(refused) >= 6  # 31 extras and the run ask for 41,000 of 25,500
    assert all(reply.json["error"]["details"]["shortfall_fen"] > 0 for reply in refused)
    granted_extras = [reply.json for reply in extras if reply.status == 201]
    assert all(page["total"] == 1 and page["items"][0]["face_value_fen"] == 1000 for page in granted_extras)
    acknowledged = sum(page["items"][0]["face_value_fen"] for page in granted_extras)
    if monthly.status == 200:
        assert monthly.json["vouchers"] == 10
        assert monthly.json["committed_fen"] == monthly_total
        acknowledged += monthly.json["committed_fen"]

    balances = live.ledger(programme.id, admin)
    issued = live.get(f"/api/v1/vouchers?programme_id={programme.id}&status=issued&per_page=500", admin)
    assert issued["total"] == len(granted_extras) + (10 if monthly.status == 200 else 0)
    assert balances["committed_fen"] == sum(v["face_value_fen"] for v in issued["items"]) == acknowledged
    assert balances["committed_fen"] == build.issued_face_value(programme)
    assert balances["available_fen"] == budget - acknowledged == 500  # everything that fitted was taken
    assert balances["allocated_fen"] == balances["available_fen"] + balances["committed_fen"]
    assert polled, "the ledger was never polled during the race"
    assert min(polled) >= 0, sorted(polled)[:5]
    live.assert_books_ok(programme.id, admin)
    live.assert_no_5xx()


def test_concurrent_replays_of_one_idempotency_key_redeem_once(live):
    build = live.build
    world = build.world()
    build.choose_all(world, world.p1)
    [voucher_id] = build.supplementary(world.programme, world.alice.id, world.bath)
    body = {"voucher_token": build.voucher_token(voucher_id), "duration_minutes": 45}
    scanner, admin = build.headers(world.p1.user), build.headers(world.admin)
    key = {"Idempotency-Key": f"scan-{uuid.uuid4()}"}
    programme_id = world.programme.id

    replies = no_exceptions(race(REPLAYS, lambda _index: live.post("/api/v1/redemptions", body,
                                                                   {**scanner, **key})))

    allowed = {(201, None), (409, "idempotency_key_in_flight")}
    if live.backend == "sqlite":
        allowed = {(201, None)}  # the single writer queues the repeats, which then replay
    assert set(outcomes(replies)) <= allowed, outcomes(replies)
    created = [reply for reply in replies if reply.status == 201]
    firsts = [reply for reply in created if reply.headers.get("idempotent-replayed") != "true"]
    assert len(firsts) == 1, "exactly one request may run; every other 201 must be a replay"
    assert {reply.body for reply in created} == {firsts[0].body}
    redemption = firsts[0].json
    assert redemption["voucher_id"] == voucher_id

    again = live.post("/api/v1/redemptions", body, {**scanner, **key})
    assert (again.status, again.headers.get("idempotent-replayed"), again.body) == (201, "true", firsts[0].body)

    assert build.count(Redemption, Redemption.programme_id == programme_id) == 1
    assert build.read(lambda: db.session.scalar(select(func.count()).select_from(IdempotencyRecord)
                                                .where(IdempotencyRecord.key == key["Idempotency-Key"]))) == 1
    listed = live.get(f"/api/v1/redemptions?programme_id={programme_id}", admin)
    assert [item["id"] for item in listed["items"]] == [redemption["id"]]
    assert live.get(f"/api/v1/vouchers/{voucher_id}", admin)["status"] == "redeemed"
    balances = live.ledger(programme_id, admin)
    assert balances["redeemed_fen"] == redemption["face_value_fen"]
    assert balances["committed_fen"] == 0
    live.assert_books_ok(programme_id, admin)
    live.assert_no_5xx()
