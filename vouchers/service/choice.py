"""The recipient's free choice of provider (docs/domain.md, rule 4: 由领受者自主选择承接主体), one per programme and
item.

Every change is kept as a ChoiceEvent (the market's signal), a switch with the recipient's reason
when they give one. Concurrent switches of one service queue on the choice's row, so each event names
the provider it really replaced.
"""

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from marketplace import audit
from marketplace.db import db
from marketplace.errors import DomainError, ValidationFailed
from marketplace.programmes.models import Programme
from marketplace.recipients.models import Recipient
from marketplace.regions import covers
from providers.models import Enrolment, Provider
from providers.service.registry import serves
from vouchers.models import SWITCH_REASONS, Choice, ChoiceEvent

MAX_SWITCH_NOTE = 200


class ProviderNotEligible(DomainError):
    status, code, message = 422, "provider_not_eligible", "This provider cannot be chosen for this service."


class ChoiceChanged(DomainError):
    status, code = 409, "choice_changed"
    message = "The provider chosen for this service changed meanwhile: look at the choice as it is now."


ANY = object()  # `replacing` not given: replace whatever is chosen now


def set_choice(*, recipient: Recipient, programme: Programme, item_code: str, provider_id: int, actor,
               now: datetime, switch_reason: str | None = None, switch_note: str | None = None,
               replacing: int | None | object = ANY) -> Choice:
    """Record the recipient's free choice of provider for an item; switches are kept, with their reason.

    A reason (one of SWITCH_REASONS) and a note (at most 200 characters once trimmed) belong to a switch
    from another provider: a first choice, or choosing the same provider again, has none. `other` needs
    a note; a note needs a reason. An admin choosing for the recipient (代办) is audited as acting on
    their behalf.

    *replacing*, when given, is the provider the chooser saw as chosen (None: none was): a form shown
    before someone else changed the choice must not undo that change. If the choice is already
    *provider_id* (this very change, posted again), nothing happens.

    :raises ValidationFailed: the programme does not buy the item, the recipient lives outside it, or the
        reason and note break the rules above.
    :raises ChoiceChanged: the choice is no longer *replacing*.
    :raises ProviderNotEligible: not approved, not enrolled, not offering the item, or not serving the
        recipient's region.
    """
    switch_reason, switch_note = checked_reason(switch_reason, switch_note)
    if item_code not in {item.item_code for item in programme.items}:
        raise ValidationFailed({"item_code": "The programme does not buy this item."})
    if not covers(programme.region_code, recipient.region_code):
        raise ValidationFailed({"programme_id": "The recipient lives outside this programme's region."})
    provider = db.session.get(Provider, provider_id)
    reason = _ineligibility(provider, programme, item_code, recipient.region_code)
    if reason:
        raise ProviderNotEligible(reason, reason=reason)
    key = (recipient.id, programme.id, item_code)
    chosen_by = getattr(actor, "id", None)
    choice = _locked_choice(key)
    previous = choice.provider_id if choice else None
    if choice is None:
        choice = Choice(recipient_id=recipient.id, programme_id=programme.id, item_code=item_code,
                        provider_id=provider.id, chosen_at=now, chosen_by=chosen_by)
        try:
            with db.session.begin_nested():
                db.session.add(choice)
        except IntegrityError:  # a concurrent first choice of this service got in first: this one replaces it
            choice = _locked_choice(key)
            previous = choice.provider_id
    if replacing is not ANY and previous != replacing:
        if previous == provider.id:
            return choice  # made already: a repeat of this very change does nothing twice
        raise ChoiceChanged(current_provider_id=previous)
    if switch_reason is not None and previous in (None, provider.id):
        # Known only now that the choice is ours: a racing first choice may have turned this into a switch.
        raise ValidationFailed({"switch_reason": "Only a switch from another provider has a reason: nothing is "
                                                 "replaced here."})
    choice.provider_id, choice.chosen_at, choice.chosen_by = provider.id, now, chosen_by
    db.session.add(ChoiceEvent(recipient_id=recipient.id, programme_id=programme.id, item_code=item_code,
                               from_provider_id=previous, to_provider_id=provider.id, chosen_at=now,
                               chosen_by=chosen_by, acted_as=actor.role, switch_reason=switch_reason,
                               switch_note=switch_note))
    db.session.flush()
    # The note is the recipient's own words (it may name people): kept with the switch, not in the audit trail.
    audit.record(action="choice.made", entity="recipient", entity_id=recipient.id, actor=actor, now=now,
                 region_code=recipient.region_code, on_behalf_of=audit.acting_for(actor, recipient.id),
                 data={"programme_id": programme.id, "item_code": item_code, "from_provider_id": previous,
                       "to_provider_id": provider.id, "acted_as": actor.role, "switch_reason": switch_reason})
    return choice


def checked_reason(reason: str | None, note: str | None) -> tuple[str | None, str | None]:
    """The switch reason and the trimmed note (None when blank): the rules `set_choice` applies, for a form
    that asks for the reason before it asks to confirm the switch. :raises ValidationFailed: naming the field."""
    note = (note or "").strip() or None
    if reason is not None and reason not in SWITCH_REASONS:
        raise ValidationFailed({"switch_reason": f"One of: {', '.join(SWITCH_REASONS)}."})
    if note is not None and len(note) > MAX_SWITCH_NOTE:
        raise ValidationFailed({"switch_note": f"At most {MAX_SWITCH_NOTE} characters."})
    if note is not None and reason is None:
        raise ValidationFailed({"switch_reason": "Choose a reason for the note (`other` when none fits)."})
    if reason == "other" and note is None:
        raise ValidationFailed({"switch_note": "Say in a few words why, when the reason is `other`."})
    return reason, note


def _locked_choice(key: tuple[int, int, str]) -> Choice | None:
    """The current choice of (recipient, programme, item), read only once it is ours to change.

    The no-op UPDATE takes the row's lock on PostgreSQL and the write lock on SQLite, so concurrent
    switches of one service queue and each one's history names the provider it really replaced. When
    it finds no row there is nothing to read: a row committed a moment later is not locked, so the
    caller inserts, and a concurrent first choice makes that insert fail instead.
    """
    recipient_id, programme_id, item_code = key
    locked = db.session.execute(
        update(Choice).where(Choice.recipient_id == recipient_id, Choice.programme_id == programme_id,
                             Choice.item_code == item_code)
        .values(provider_id=Choice.provider_id).execution_options(synchronize_session=False)).rowcount
    return db.session.get(Choice, key, populate_existing=True) if locked else None


def _ineligibility(provider: Provider | None, programme: Programme, item_code: str, region_code: str) -> str | None:
    if provider is None or provider.status != "approved":
        return "The provider is not approved."
    enrolled = db.session.scalar(select(Enrolment.id).where(Enrolment.programme_id == programme.id,
                                                            Enrolment.provider_id == provider.id))
    if enrolled is None:
        return "The provider is not enrolled in this programme."
    if item_code not in provider.item_codes:
        return "The provider does not offer this service."
    if not serves(provider, region_code):
        return "The provider does not serve the recipient's region."
    return None


def choices_of(recipient: Recipient) -> dict:
    """The recipient's current choices and every change, oldest first."""
    current = db.session.scalars(select(Choice).where(Choice.recipient_id == recipient.id)
                                 .order_by(Choice.programme_id, Choice.item_code)).all()
    history = db.session.scalars(select(ChoiceEvent).where(ChoiceEvent.recipient_id == recipient.id)
                                 .order_by(ChoiceEvent.id)).all()
    return {"current": current, "history": history}
