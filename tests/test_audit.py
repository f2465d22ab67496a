"""The hash-chained audit trail: written with the change, listed, verified, and tamper-evident."""

import json
import threading
import time
from contextlib import suppress

import pytest
from sqlalchemy import func, select, text

from marketplace import audit
from marketplace.audit.models import AuditEvent, AuditHead
from marketplace.audit.service import event_hash
from marketplace.auth import service as auth_service
from marketplace.auth.models import User
from marketplace.db import db, read_only, transaction, utcnow
from tests.conftest import PASSWORD, error_code
from tests.support import races

EVENT_COLUMNS = ("at", "actor_id", "actor", "action", "entity", "entity_id", "data", "prev_hash", "hash")


def record_events(app, count, *, entity="thing", first_entity_id=1, region_code=None):
    """Append *count* events (about *region_code*), one transaction each; return their ids."""
    with app.app_context():
        for offset in range(count):
            with transaction():
                audit.record(region_code=region_code, action="thing.changed", entity=entity,
                             entity_id=first_entity_id + offset, data={"n": offset})
        return db.session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)).all()[-count:]


def events(app):
    with app.app_context():
        return db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()


def tamper(app, statement, **params):
    """Change the audit table behind the application's back, as someone with database access could."""
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(text(statement), params)


def verify_http(client, headers):
    response = client.get("/api/v1/audit/verify", headers=headers)
    assert response.status_code == 200
    return response.get_json()


def assert_broken_at(client, runner, headers, event_id):
    """Both the API and `flask audit-verify` name *event_id* as the first broken event."""
    body = verify_http(client, headers)
    assert body["ok"] is False
    assert body["first_broken_id"] == event_id
    assert body["events"] == event_id - 1
    result = runner.invoke(args=["audit-verify"])
    assert result.exit_code != 0
    assert f"BROKEN at event {event_id}:" in result.output


@pytest.fixture
def auditor_headers(make_user, auth):
    """Auditor credentials; creating and logging in the auditor appends events 1 and 2."""
    return auth(make_user(role="auditor"))


@pytest.fixture
def chain(app, auditor_headers):
    """A chain of six events (ids 1–6) and an auditor to verify it."""
    record_events(app, 4)
    assert [event.id for event in events(app)] == [1, 2, 3, 4, 5, 6]
    return auditor_headers


# --- written with the change ------------------------------------------------------------------------

def test_change_and_its_event_are_committed_together(app, make_user):
    user = make_user(username="audited.user")
    [event] = events(app)
    assert (event.id, event.action, event.entity, event.entity_id) == (1, "user.created", "user", str(user.id))
    assert json.loads(event.data)["username"] == "audited.user"
    assert event.actor == "system"
    assert event.prev_hash == "0" * 64


def create_then_fail():
    with transaction():
        auth_service.create_user(username="ghost.user", password=PASSWORD, role="auditor", actor=None, now=utcnow())
        audit.record(region_code=None, action="thing.changed", entity="thing", entity_id=1)
        raise RuntimeError("the change fails after it was audited")


def test_rolled_back_transaction_leaves_neither_change_nor_event(app, runner):
    with app.app_context(), pytest.raises(RuntimeError, match="fails after"):
        create_then_fail()

    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 0
        assert audit.verify_chain().ok
    assert runner.invoke(args=["audit-verify"]).exit_code == 0
    assert [event.id for event in events(app)] == []
    assert record_events(app, 1) == [1]  # the rolled-back event did not use up an id
    with app.app_context():
        assert audit.verify_chain().ok


def test_refused_request_leaves_no_event(app, client, make_user, auth):
    admin = make_user(role="admin")
    headers = auth(admin)
    before = len(events(app))
    response = client.post("/api/v1/users", headers=headers,
                           json={"username": admin.username, "password": "another long password", "role": "admin"})
    assert error_code(response) == "duplicate_username"
    assert len(events(app)) == before


def test_event_recorded_before_a_failed_savepoint_is_kept(app):
    with app.app_context(), transaction():
        audit.record(region_code=None, action="kept", entity="thing", entity_id=1)
        with suppress(RuntimeError), db.session.begin_nested():
            audit.record(region_code=None, action="dropped", entity="thing", entity_id=2)
            raise RuntimeError("undo only the savepoint")
        audit.record(region_code=None, action="also.kept", entity="thing", entity_id=3)
    assert [event.action for event in events(app)] == ["kept", "also.kept"]
    with app.app_context():
        assert audit.verify_chain().ok


def test_user_created_before_a_duplicate_in_the_same_transaction_keeps_its_event(app):
    with app.app_context(), transaction():
        first = auth_service.create_user(username="first.user", password=PASSWORD, role="auditor", actor=None,
                                         now=utcnow())
        with suppress(auth_service.DuplicateUsername):
            auth_service.create_user(username="FIRST.user", password=PASSWORD, role="auditor", actor=None,
                                     now=utcnow())
    assert [(event.action, event.entity_id) for event in events(app)] == [("user.created", str(first.id))]


def test_savepoints_that_commit_keep_their_events_in_order(app):
    with app.app_context(), transaction():
        audit.record(region_code=None, action="one", entity="thing", entity_id=1)
        with db.session.begin_nested():
            audit.record(region_code=None, action="two", entity="thing", entity_id=2)
            with suppress(RuntimeError), db.session.begin_nested():
                audit.record(region_code=None, action="dropped", entity="thing", entity_id=3)
                raise RuntimeError("undo the inner savepoint")
        audit.record(region_code=None, action="three", entity="thing", entity_id=4)
    assert [event.action for event in events(app)] == ["one", "two", "three"]
    with app.app_context():
        assert audit.verify_chain().ok


def record_in_savepoint_then_fail():
    with transaction():
        with db.session.begin_nested():
            audit.record(region_code=None, action="inside", entity="thing", entity_id=1)
        raise RuntimeError("undo everything")


def test_events_of_a_rolled_back_outer_transaction_vanish_with_its_savepoints(app):
    with app.app_context(), pytest.raises(RuntimeError, match="undo everything"):
        record_in_savepoint_then_fail()
    assert events(app) == []


# --- GET /api/v1/audit ------------------------------------------------------------------------------

def test_auditor_lists_events_newest_first_with_their_fields(app, client, auditor_headers):
    record_events(app, 2)
    response = client.get("/api/v1/audit", headers=auditor_headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["total"] == 4
    assert (body["page"], body["per_page"]) == (1, 50)
    assert [item["id"] for item in body["items"]] == [4, 3, 2, 1]
    newest = body["items"][0]
    assert {"id", "at", "actor", "action", "entity", "entity_id", "data", "hash"} <= set(newest)
    assert newest["data"] == {"n": 1}
    assert newest["hash"] == events(app)[-1].hash


def test_admin_may_list_and_verify_the_audit_trail(client, make_user, auth):
    headers = auth(make_user(role="admin"))
    assert client.get("/api/v1/audit", headers=headers).status_code == 200
    assert client.get("/api/v1/audit/verify", headers=headers).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit/verify", "/api/v1/audit?page=0"])
def test_anonymous_may_not_read_the_audit_trail(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"


def test_a_region_scoped_admin_reads_only_the_events_of_regions_overlapping_its_own(app, client, make_user,
                                                                                    auth, auditor_headers):
    county = record_events(app, 2, region_code="510131")   # 蒲江县
    city = record_events(app, 1, region_code="510100")     # 成都市, which includes it
    other = record_events(app, 2, region_code="510129")    # 大邑县
    everywhere = record_events(app, 1)                      # e.g. the catalogue

    recorded = set(county + city + other + everywhere)

    def seen(headers):
        """Which of the recorded events the reader gets (its own login's events aside)."""
        page = client.get("/api/v1/audit?per_page=500", headers=headers).get_json()
        return {event["id"] for event in page["items"]} & recorded

    assert seen(auth(make_user(role="admin", region_code="510131"))) == set(county + city)
    assert seen(auth(make_user(role="admin", region_code="510129"))) == set(other + city)
    assert seen(auditor_headers) == recorded
    assert seen(auth(make_user(role="admin"))) == recorded


def test_audit_list_filters_by_entity_and_entity_id(app, client, auditor_headers):
    record_events(app, 3, entity="programme", first_entity_id=7)
    record_events(app, 2, entity="voucher", first_entity_id=7)
    by_entity = client.get("/api/v1/audit?entity=programme", headers=auditor_headers).get_json()
    assert by_entity["total"] == 3
    assert {item["entity"] for item in by_entity["items"]} == {"programme"}
    one = client.get("/api/v1/audit?entity=programme&entity_id=8", headers=auditor_headers).get_json()
    assert [(item["entity"], item["entity_id"]) for item in one["items"]] == [("programme", "8")]
    assert client.get("/api/v1/audit?entity=nothing", headers=auditor_headers).get_json()["total"] == 0


def test_audit_list_is_paginated(app, client, auditor_headers):
    record_events(app, 5)  # seven events in all
    page = client.get("/api/v1/audit?page=3&per_page=3", headers=auditor_headers).get_json()
    assert (page["page"], page["per_page"], page["total"]) == (3, 3, 7)
    assert [item["id"] for item in page["items"]] == [1]
    second = client.get("/api/v1/audit?page=2&per_page=3", headers=auditor_headers).get_json()
    assert [item["id"] for item in second["items"]] == [4, 3, 2]


@pytest.mark.parametrize("query", ["per_page=501", "per_page=0", "page=0", "page=x"])
def test_audit_list_refuses_bad_pagination(client, auditor_headers, query):
    response = client.get(f"/api/v1/audit?{query}", headers=auditor_headers)
    assert response.status_code == 422
    assert error_code(response) == "validation_error"


# --- verification -----------------------------------------------------------------------------------

def test_untouched_chain_verifies(app, client, runner, chain):
    body = verify_http(client, chain)
    assert body["ok"] is True
    assert body["events"] == 6
    assert body["first_broken_id"] is None
    assert body["head_hash"] == events(app)[-1].hash
    result = runner.invoke(args=["audit-verify"])
    assert result.exit_code == 0
    assert "ok: 6 events" in result.output


def test_empty_chain_verifies(runner):
    result = runner.invoke(args=["audit-verify"])
    assert result.exit_code == 0
    assert "ok: 0 events" in result.output


def test_edited_event_data_is_named(app, client, runner, chain):
    tamper(app, "UPDATE audit_event SET data = :data WHERE id = 4", data='{"n":999}')
    assert_broken_at(client, runner, chain, 4)


@pytest.mark.parametrize(("column", "value"), [("actor", "someone-else"), ("action", "thing.deleted"),
                                               ("entity_id", "999"), ("region_code", "510129"),
                                               ("on_behalf_of", 7)])
def test_edited_event_fields_are_named(app, client, runner, chain, column, value):
    tamper(app, f"UPDATE audit_event SET {column} = :value WHERE id = 5", value=value)
    assert_broken_at(client, runner, chain, 5)


def test_who_an_admin_acted_for_is_hashed_with_the_event(app, client, runner, chain):
    with app.app_context(), transaction():
        audit.record(action="thing.changed", entity="thing", entity_id=7, region_code="510131", on_behalf_of=42,
                     data={"n": 7})
        audit.record(action="thing.changed", entity="thing", entity_id=8, region_code="510131", data={"n": 8})
    assert [(event.id, event.on_behalf_of) for event in events(app)[-2:]] == [(7, 42), (8, None)]
    assert verify_http(client, chain)["ok"] is True

    tamper(app, "UPDATE audit_event SET on_behalf_of = :value WHERE id = 7", value=43)
    assert_broken_at(client, runner, chain, 7)
    tamper(app, "UPDATE audit_event SET on_behalf_of = NULL WHERE id = 7")
    assert_broken_at(client, runner, chain, 7)


def test_deleted_middle_event_is_named(app, client, runner, chain):
    tamper(app, "DELETE FROM audit_event WHERE id = 4")
    assert_broken_at(client, runner, chain, 4)


def test_deleted_first_event_is_named(app, client, runner, chain):
    tamper(app, "DELETE FROM audit_event WHERE id = 1")
    assert_broken_at(client, runner, chain, 1)


def test_deleted_last_event_is_named(app, client, runner, chain):
    tamper(app, "DELETE FROM audit_event WHERE id = 6")
    assert_broken_at(client, runner, chain, 6)


def test_reordered_events_are_named(app, client, runner, chain):
    with app.app_context(), db.engine.begin() as conn:
        rows = {row.id: row._mapping for row in conn.execute(text("SELECT * FROM audit_event WHERE id IN (3, 4)"))}
        assignments = ", ".join(f"{column} = :{column}" for column in EVENT_COLUMNS)
        for target, source in ((3, 4), (4, 3)):
            conn.execute(text(f"UPDATE audit_event SET {assignments} WHERE id = :id"),
                         {**{column: rows[source][column] for column in EVENT_COLUMNS}, "id": target})
    assert json.loads(events(app)[2].data) == {"n": 1}  # the swap really happened
    assert_broken_at(client, runner, chain, 3)


@pytest.mark.parametrize("event_id", [2, 6])
def test_changed_hash_is_named(app, client, runner, chain, event_id):
    tamper(app, "UPDATE audit_event SET hash = :forged WHERE id = :id", forged="f" * 64, id=event_id)
    assert_broken_at(client, runner, chain, event_id)


def test_event_appended_behind_the_chain_heads_back_is_named(app, client, runner, chain):
    last = events(app)[-1]
    forged = {"id": 7, "at": last.at, "actor_id": None, "actor": "system", "action": "thing.changed",
              "entity": "thing", "entity_id": "99", "data": "{}", "region_code": None}
    digest = event_hash(last.hash, **forged)
    with app.app_context(), transaction():
        db.session.add(AuditEvent(**forged, prev_hash=last.hash, hash=digest))
    assert_broken_at(client, runner, chain, 7)


def test_rehashed_rewrite_of_the_chain_is_caught_by_the_head(app, client, runner, chain):
    rows = events(app)
    prev = rows[3].prev_hash
    with app.app_context(), transaction():
        for row in rows[3:]:
            data = '{"n":999}' if row.id == 4 else row.data
            digest = event_hash(prev, id=row.id, at=row.at, actor_id=row.actor_id, actor=row.actor,
                                action=row.action, entity=row.entity, entity_id=row.entity_id, data=data,
                                region_code=row.region_code)
            db.session.execute(text("UPDATE audit_event SET data = :data, prev_hash = :prev, hash = :hash "
                                    "WHERE id = :id"), {"data": data, "prev": prev, "hash": digest, "id": row.id})
            prev = digest
    assert verify_http(client, chain)["ok"] is False
    assert runner.invoke(args=["audit-verify"]).exit_code != 0


# --- concurrency ------------------------------------------------------------------------------------

THREADS, TRANSACTIONS = 8, 10


def test_concurrent_appends_keep_one_gapless_chain(app, runner):
    def writer(thread_no: int) -> None:
        for n in range(TRANSACTIONS):
            with transaction():
                if n == 0:
                    auth_service.create_user(username=f"writer-{thread_no}", password=PASSWORD,
                                             role="auditor", actor=None, now=utcnow())
                else:
                    audit.record(region_code=None, action="thing.changed", entity=f"thread-{thread_no}",
                                 entity_id=n)

    assert races.failures(races.race(THREADS, writer, context=app.app_context)) == []
    total = THREADS * TRANSACTIONS
    rows = events(app)
    assert [event.id for event in rows] == list(range(1, total + 1))
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(rows, rows[1:], strict=False))
    for thread_no in range(THREADS):
        mine = [int(event.entity_id) for event in rows if event.entity == f"thread-{thread_no}"]
        assert sorted(mine) == list(range(1, TRANSACTIONS))
    assert sum(event.action == "user.created" for event in rows) == THREADS
    with app.app_context():
        result = audit.verify_chain()
        head = db.session.get(AuditHead, 1)
    assert (result.ok, result.events) == (True, total)
    assert (head.last_id, head.last_hash) == (total, rows[-1].hash)
    assert runner.invoke(args=["audit-verify"]).exit_code == 0


def test_verification_while_others_append_never_reports_a_broken_chain(app):
    # Under PostgreSQL's READ COMMITTED every statement sees the latest commits: appends landing
    # between the walk and the head read must not look like tampering.
    stop = threading.Event()
    failures: list[Exception] = []

    def appender() -> None:
        try:
            with app.app_context():
                n = 0
                while not stop.is_set():
                    n += 1
                    with transaction():
                        audit.record(region_code=None, action="thing.changed", entity="appender", entity_id=n)
        except Exception as error:  # reported by the assertion below
            failures.append(error)

    thread = threading.Thread(target=appender)
    thread.start()
    results = []
    try:
        deadline = time.monotonic() + 30
        with app.app_context(), read_only():  # as GET /audit/verify: on SQLite a reader, not a writer
            # Walk again and again while the appender gets going and goes on (at least 40 walks, 50 events).
            while (len(results) < 40 or results[-1].events < 50) and time.monotonic() < deadline:
                results.append(audit.verify_chain())
                db.session.rollback()  # a fresh snapshot for the next walk (SQLite keeps one per transaction)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert failures == []
    assert all(result.ok for result in results), [r.reason for r in results if not r.ok]
    assert results[-1].events >= 50  # the appends really ran alongside
