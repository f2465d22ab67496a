"""The read models of the recipients' pages (vouchers/service/recipient_view.py), and the service rules their
forms rely on (a choice replacing what the form showed, a rating for one recipient), on both databases."""

import pytest

from marketplace.db import db, utcnow
from marketplace.errors import Forbidden, NotFound
from marketplace.programmes.models import Programme
from marketplace.recipients.models import Recipient
from vouchers.models import ChoiceEvent, Voucher
from vouchers.service import choice, feedback, recipient_view


def _recipient(build, ref) -> Recipient:
    return db.session.get(Recipient, ref.id)


def test_the_month_counts_vouchers_left_per_service_with_their_value_and_provider(build):
    world = build.world()
    build.issue(world.programme)
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.redeem(world.p1, world.alice, world.meal)

    overview = build.read(lambda: recipient_view.month_overview(recipient=_recipient(build, world.alice),
                                                                now=utcnow()))
    meal, bath = overview.services
    assert (meal.item_code, meal.issued, meal.left, meal.used) == (world.meal, 4, 3, 1)
    assert (meal.face_value_fen, meal.copay_fen) == (1140, 60)  # low_income: 5 % of ¥12.00, rounded up
    assert meal.valid_until == build.last_day()
    assert meal.provider.id == world.p1.id
    assert (bath.left, bath.provider) == (2, None)
    assert overview.next_step.kind == "choose"  # the bath still needs a provider
    assert overview.next_step.service.item_code == world.bath
    assert overview.to_rate == 1


def test_the_next_step_is_the_code_once_every_service_has_a_provider_then_rating_then_nothing(build):
    world = build.world()
    build.issue(world.programme)
    build.choose_all(world, world.p1, world.alice)

    def step():
        return build.read(lambda: recipient_view.month_overview(recipient=_recipient(build, world.alice),
                                                                now=utcnow()).next_step.kind)

    assert step() == "show_code"
    served = [build.redeem(world.p1, world.alice, world.meal) for _ in range(4)]
    served += [build.redeem(world.p1, world.alice, world.bath) for _ in range(2)]
    assert step() == "rate"
    for redemption in served:
        build.rate(redemption, 5)
    assert step() == "used_up"


def test_no_vouchers_this_month_says_so(build):
    world = build.world()
    overview = build.read(lambda: recipient_view.month_overview(recipient=_recipient(build, world.alice),
                                                                now=utcnow()))
    assert overview.services == []
    assert overview.next_step.kind == "no_vouchers"


def test_revoked_vouchers_are_not_counted(build):
    world = build.world()
    build.issue(world.programme)
    first = build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.item_code == world.meal)[0]
    build.revoke(first.id)
    overview = build.read(lambda: recipient_view.month_overview(recipient=_recipient(build, world.alice),
                                                                now=utcnow()))
    meal = next(service for service in overview.services if service.item_code == world.meal)
    assert (meal.issued, meal.left) == (3, 3)


def test_provider_options_are_exactly_the_eligible_providers_best_first(build):
    world = build.world()
    build.issue(world.programme)
    build.provider(items=[world.meal])  # approved, not enrolled
    suspended = build.provider(items=[world.meal], enrol_in=[world.programme])
    build.set_provider_status(suspended, "suspend")
    build.rated_services(world.p2, [world.bob], world.programme, world.meal, [5, 5, 4])
    build.choose(world.alice, world.programme, world.meal, world.p1)

    options = build.read(lambda: recipient_view.provider_options(
        recipient=_recipient(build, world.alice), item_code=world.meal, now=utcnow()))
    assert [option.provider_id for option in options.options] == [world.p2.id, world.p1.id]
    best = options.options[0]
    assert (best.rank, best.ratings_count, best.satisfaction_rate) == (1, 3, 1.0)
    assert best.item_names == ["助餐", "助浴"]
    assert best.region_codes == ["510131"]
    assert options.current.id == world.p1.id
    assert options.programme.id == world.programme.id
    assert options.item_name == "助餐"


def test_provider_options_leave_out_providers_serving_another_county(build):
    meal = build.item()
    city = build.programme(items=[meal], region_code="510100")
    here = build.provider(items=[meal], enrol_in=[city], regions=("510131",))
    build.provider(items=[meal], enrol_in=[city], regions=("510132",))
    alice = build.recipient(region_code="510131")
    options = build.read(lambda: recipient_view.provider_options(recipient=_recipient(build, alice), item_code=meal,
                                                                 now=utcnow()))
    assert [option.provider_id for option in options.options] == [here.id]


def test_provider_options_of_a_service_no_programme_buys_are_not_found(build):
    world = build.world()
    other = build.item(name="助洁")
    for item_code in (other, "NO-SUCH-ITEM"):
        with pytest.raises(NotFound):
            build.read(lambda code=item_code: recipient_view.provider_options(
                recipient=_recipient(build, world.alice), item_code=code, now=utcnow()))
    with pytest.raises(NotFound):
        build.read(lambda: recipient_view.provider_options(
            recipient=_recipient(build, world.alice), item_code=world.meal, programme_id=world.programme.id + 99,
            now=utcnow()))


def test_past_services_say_what_can_still_be_rated(build):
    world = build.world()
    build.issue(world.programme, build.period(-1))
    build.issue(world.programme)
    build.choose_all(world, world.p1, world.alice)
    old = build.redeem(world.p1, world.alice, world.meal, delivered_at=build.in_month(-1, 1, hour=10))
    rated = build.redeem(world.p1, world.alice, world.meal)
    fresh = build.redeem(world.p1, world.alice, world.bath)
    undone = build.redeem(world.p1, world.alice, world.bath)
    build.rate(rated, 4)
    build.reverse(undone)
    build.complain(world.p1, recipient=world.alice)

    past = build.read(lambda: recipient_view.past_services(recipient=_recipient(build, world.alice), now=utcnow()))
    by_id = {service.redemption_id: service for service in past.services}
    assert set(by_id) == {old.id, rated.id, fresh.id}  # the reversed one did not happen
    assert by_id[fresh.id].can_rate
    assert not by_id[fresh.id].rated
    assert by_id[rated.id].rating_score == 4
    assert by_id[rated.id].rating_source == "phone_followup"
    assert not by_id[rated.id].can_rate
    window_open = build.now() <= old.delivered_at + (by_id[old.id].rate_until - old.delivered_at)
    assert by_id[old.id].can_rate == window_open
    assert [provider.id for provider in past.providers] == [world.p1.id]
    assert [complaint.provider_id for complaint in past.complaints] == [world.p1.id]
    assert past.provider_names[world.p1.id] == world.p1.name


def test_printable_cards_are_the_usable_vouchers_of_that_recipient_only(build):
    world = build.world()
    build.issue(world.programme)
    build.choose_all(world, world.p1, world.alice)
    build.redeem(world.p1, world.alice, world.meal)

    def cards(recipient_ref, actor):
        return build.read(lambda: [card.voucher.id for card in recipient_view.printable_cards(
            recipient=_recipient(build, recipient_ref), actor=actor, now=utcnow())])

    alice_issued = {v.id for v in build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.status == "issued")}
    assert set(cards(world.alice, world.alice.user)) == alice_issued
    assert len(alice_issued) == 5
    assert set(cards(world.alice, world.admin)) == alice_issued
    with pytest.raises(NotFound):  # bob's login asking for alice's cards
        cards(world.alice, world.bob.user)


def test_an_admin_acting_for_one_recipient_cannot_rate_anothers_service(build):
    world = build.world()
    build.issue(world.programme)
    build.choose_all(world, world.p1)
    bobs = build.redeem(world.p1, world.bob, world.meal)

    def rate_for(recipient_id):
        return build.run(lambda: feedback.rate_redemption(
            redemption_id=bobs.id, score=5, comment=None, source="phone_followup", recipient_id=recipient_id,
            actor=db.session.get(type(world.admin), world.admin.id), now=utcnow()))

    with pytest.raises(NotFound):
        rate_for(world.alice.id)
    assert rate_for(world.bob.id).score == 5


def test_a_recipient_cannot_rate_anothers_service_whatever_they_claim(build):
    world = build.world()
    build.issue(world.programme)
    build.choose_all(world, world.p1)
    bobs = build.redeem(world.p1, world.bob, world.meal)
    with pytest.raises(Forbidden):
        build.run(lambda: feedback.rate_redemption(
            redemption_id=bobs.id, score=5, comment=None, source="recipient", recipient_id=world.bob.id,
            actor=db.session.get(type(world.alice.user), world.alice.user.id), now=utcnow()))


def choose_replacing(build, world, provider, replacing):
    return build.run(lambda: choice.set_choice(
        recipient=db.session.get(Recipient, world.alice.id), programme=db.session.get(Programme, world.programme.id),
        item_code=world.meal, provider_id=provider.id, replacing=replacing,
        actor=db.session.get(type(world.alice.user), world.alice.user.id), now=utcnow()).provider_id)


def test_a_choice_replacing_what_is_no_longer_chosen_is_refused(build):
    world = build.world()
    third = build.provider(items=[world.meal], enrol_in=[world.programme])
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.choose(world.alice, world.programme, world.meal, third)  # meanwhile
    with pytest.raises(choice.ChoiceChanged):
        choose_replacing(build, world, world.p2, world.p1.id)
    with pytest.raises(choice.ChoiceChanged):
        choose_replacing(build, world, world.p2, None)  # "nothing was chosen" is stale too
    assert choose_replacing(build, world, world.p2, third.id) == world.p2.id
    assert build.count(ChoiceEvent) == 3


def test_the_same_choice_posted_again_changes_nothing(build):
    world = build.world()
    assert choose_replacing(build, world, world.p1, None) == world.p1.id
    assert choose_replacing(build, world, world.p1, None) == world.p1.id  # the repeat of a first choice
    assert choose_replacing(build, world, world.p2, world.p1.id) == world.p2.id
    assert choose_replacing(build, world, world.p2, world.p1.id) == world.p2.id  # the repeat of a switch
    assert build.count(ChoiceEvent) == 2
