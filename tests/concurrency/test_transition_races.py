"""Status transitions under races — on SQLite and PostgreSQL.

Every status change is one guarded UPDATE (marketplace.transitions): of two admins deciding at once
exactly one wins, the other hears 409 `invalid_transition` (never a 503), and the history never names
the same "from" twice. Each racer is a real thread with its own session and connection.
"""

import json

import pytest
from sqlalchemy import select

from marketplace.audit.models import AuditEvent
from marketplace.auth.models import User
from marketplace.db import db, utcnow
from marketplace.errors import InvalidTransition
from marketplace.programmes import service as programme_service
from marketplace.programmes.models import Programme
from marketplace.recipients import service as recipient_service
from marketplace.recipients.models import Recipient
from providers.models import Provider, ProviderStatusChange
from providers.service import qualification
from tests.support.races import race_transactions
from tests.support.scenario import Builder
from vouchers.models import Voucher
from vouchers.service import issuance

RACERS = 8


def _history(build: Builder, provider_id: int) -> list[tuple[str | None, str]]:
    return build.read(lambda: [(row.from_status, row.to_status) for row in db.session.scalars(
        select(ProviderStatusChange).where(ProviderStatusChange.provider_id == provider_id)
        .order_by(ProviderStatusChange.id))])


def _decide(admin_id: int, provider_id: int, action: str) -> None:
    qualification.change_status(provider_id=provider_id, action=action, reason=f"{action} by a racing admin",
                                actor=db.session.get(User, admin_id), now=utcnow())


def test_racing_approvals_of_a_pending_provider_approve_it_once(app):
    build = Builder(app)
    meal = build.item()
    provider = build.provider(items=[meal], status="pending")
    admin_id = build.system_admin.id

    outcomes = race_transactions(app, lambda _index: _decide(admin_id, provider.id, "approve"), racers=RACERS)

    assert sorted(outcomes) == ["InvalidTransition"] * (RACERS - 1) + ["ok"]
    assert _history(build, provider.id) == [(None, "pending"), ("pending", "approved")]


def test_revoke_racing_reinstate_leaves_one_decision_and_a_true_history(app):
    build = Builder(app)
    meal = build.item()
    admin_id = build.system_admin.id
    actions = ["revoke", "reinstate"] * (RACERS // 2)
    for _pair in range(5):
        provider = build.provider(items=[meal], status="suspended")

        outcomes = race_transactions(app, lambda index, p=provider.id: _decide(admin_id, p, actions[index]),
                                     racers=RACERS)

        # One decision from "suspended" wins; a revoke that read "approved" after a reinstatement committed
        # may follow it (reinstate, then revoke), nothing else: the history is one unbroken chain.
        assert set(outcomes) <= {"ok", "InvalidTransition"}
        assert outcomes.count("ok") in (1, 2)
        history = _history(build, provider.id)
        history = history[history.index(("approved", "suspended")) + 1:]  # what the racers decided
        assert len(history) == outcomes.count("ok")
        assert history[0][0] == "suspended"
        assert [row[0] for row in history[1:]] == [row[1] for row in history[:-1]]
        final = build.read(lambda p=provider.id: db.session.get(Provider, p).status)
        assert history[-1][1] == final
        assert final in ("revoked", "approved")


def test_deceased_racing_moved_changes_the_recipient_once(app):
    build = Builder(app)
    world = build.world()
    build.issue(world.programme, build.period())
    statuses = ["deceased", "moved"] * (RACERS // 2)

    def change(index):
        recipient_service.update_recipient(recipient=db.session.get(Recipient, world.alice.id), status=statuses[index],
                                           actor=None, now=utcnow())

    outcomes = race_transactions(app, change, racers=RACERS)

    # One change from "active" wins; a "deceased" that read "moved" after the move committed may follow
    # it (moved, then died), nothing else: the history is one chain that never repeats a "from".
    assert set(outcomes) <= {"ok", "InvalidTransition"}
    assert outcomes.count("ok") in (1, 2)
    final = build.read(lambda: db.session.get(Recipient, world.alice.id).status)
    changes = build.read(lambda: [json.loads(event.data)["status"] for event in db.session.scalars(
        select(AuditEvent).where(AuditEvent.entity == "recipient", AuditEvent.entity_id == str(world.alice.id),
                                 AuditEvent.action == "recipient.updated").order_by(AuditEvent.id))])
    assert len(changes) == outcomes.count("ok")
    assert changes[0]["from"] == "active"
    assert [change["from"] for change in changes[1:]] == [change["to"] for change in changes[:-1]]
    assert changes[-1]["to"] == final
    assert build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.status == "issued") == []
    assert build.failing_checks(world.programme) == []


def test_a_deceased_recipient_is_final(app):
    build = Builder(app)
    recipient = build.recipient()
    build.set_recipient_status(recipient.id, "deceased")
    for status in ("active", "moved", "deceased"):
        with pytest.raises(InvalidTransition):
            build.set_recipient_status(recipient.id, status)


def test_activate_racing_close_never_leaves_an_active_programme_closed(app):
    build = Builder(app)
    admin_id = build.system_admin.id
    meal = build.item()
    for _pair in range(5):
        programme = build.programme(items=[(meal, 1500, 4)], status="draft")
        programme_id = programme.id

        def decide(index, programme_id=programme_id):
            change = programme_service.activate if index % 2 else programme_service.close
            change(programme=db.session.get(Programme, programme_id), actor=db.session.get(User, admin_id),
                   now=utcnow())

        outcomes = race_transactions(app, decide, racers=RACERS)

        # One decision from "draft" wins; a close that read "active" after the activation committed may
        # follow it (activate, then close), nothing else.
        assert set(outcomes) <= {"ok", "InvalidTransition"}
        assert outcomes.count("ok") in (1, 2)
        status, closed_at = build.read(lambda p=programme_id: (db.session.get(Programme, p).status,
                                                               db.session.get(Programme, p).closed_at))
        assert (status == "closed") == (closed_at is not None), (status, closed_at)


def test_issues_racing_the_close_leave_no_open_voucher_in_the_closed_programme(app):
    build = Builder(app)
    world = build.world()
    admin_id = build.system_admin.id
    programme_id = world.programme.id

    def work(index):
        actor = db.session.get(User, admin_id)
        programme = db.session.get(Programme, programme_id)
        if index == RACERS // 2:
            programme_service.close(programme=programme, actor=actor, now=utcnow())
        else:
            recipient = db.session.get(Recipient, world.alice.id)
            issuance.issue_supplementary(programme=programme, recipient=recipient, item_code=world.meal, count=2,
                                         actor=actor, now=utcnow())

    outcomes = race_transactions(app, work, racers=RACERS)

    assert set(outcomes) <= {"ok", "ProgrammeNotActive"}
    assert build.vouchers(Voucher.programme_id == programme_id, Voucher.status == "issued") == []
    assert build.ledger(world.programme).committed_fen == 0
    assert build.failing_checks(world.programme) == []


def test_two_closes_at_once_close_once(app):
    build = Builder(app)
    world = build.world()
    build.issue(world.programme, build.period())
    admin_id = build.system_admin.id

    def close(_index):
        programme_service.close(programme=db.session.get(Programme, world.programme.id),
                                actor=db.session.get(User, admin_id), now=utcnow())

    outcomes = race_transactions(app, close, racers=4)

    assert sorted(outcomes) == ["InvalidTransition"] * 3 + ["ok"]
    closes = build.read(lambda: db.session.scalars(select(AuditEvent.id).where(
        AuditEvent.action == "programme.closed")).all())
    assert len(closes) == 1
    assert build.ledger(world.programme).committed_fen == 0
    assert build.failing_checks(world.programme) == []
