"""Choices racing each other — on SQLite and PostgreSQL.

Several people (the recipient on the phone, a community worker at the door) switch the same service
at once. Every switch must succeed, the history must be one unbroken chain — each switch names the
provider it really replaced — and the current choice must be the last switch's.
"""

from sqlalchemy import select

from marketplace.auth.models import User
from marketplace.db import db, utcnow
from marketplace.programmes.models import Programme
from marketplace.recipients.models import Recipient
from tests.support.races import race_transactions
from tests.support.scenario import Builder
from vouchers.models import Choice, ChoiceEvent
from vouchers.service import choice

RACERS = 16


def switches(build, world):
    """The recipient's history for meals, oldest first, and the current choice."""

    def read():
        events = db.session.scalars(select(ChoiceEvent).where(ChoiceEvent.recipient_id == world.alice.id,
                                                              ChoiceEvent.item_code == world.meal)
                                    .order_by(ChoiceEvent.id)).all()
        current = db.session.get(Choice, (world.alice.id, world.programme.id, world.meal))
        return [(event.from_provider_id, event.to_provider_id) for event in events], current.provider_id

    return build.read(read)


def run_race(app, build, world):
    providers = (world.p1.id, world.p2.id)
    admin_id = build.system_admin.id

    def choose(index):
        choice.set_choice(recipient=db.session.get(Recipient, world.alice.id),
                                   programme=db.session.get(Programme, world.programme.id), item_code=world.meal,
                                   provider_id=providers[index % 2], actor=db.session.get(User, admin_id),
                                   now=utcnow())

    return race_transactions(app, choose, racers=RACERS)


def assert_one_unbroken_chain(history, current, *, starts_from):
    assert len(history) == RACERS
    assert history[0][0] == starts_from
    for (_from, to), (following_from, _to) in zip(history, history[1:], strict=False):
        assert following_from == to, history
    assert current == history[-1][1]


def test_racing_first_choices_of_one_service_all_succeed_in_one_chain(app):
    build = Builder(app)
    world = build.world()

    outcomes = run_race(app, build, world)

    assert outcomes == ["ok"] * RACERS
    history, current = switches(build, world)
    assert_one_unbroken_chain(history, current, starts_from=None)


def test_racing_switches_of_one_service_all_succeed_in_one_chain(app):
    build = Builder(app)
    world = build.world()
    build.choose(world.alice.id, world.programme, world.meal, world.p1.id)

    outcomes = run_race(app, build, world)

    assert outcomes == ["ok"] * RACERS
    history, current = switches(build, world)
    assert_one_unbroken_chain(history[1:], current, starts_from=world.p1.id)
