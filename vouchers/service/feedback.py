"""Feedback on delivered services: ratings and complaints, checked here against the redemption and
stored by the providers domain (which ranks and settles on them)."""

from datetime import datetime

from marketplace import transitions
from marketplace.db import db
from marketplace.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from marketplace.programmes.models import Programme
from marketplace.recipients.models import Recipient
from providers.models import Provider
from providers.service import complaints, ratings
from vouchers.models import Redemption
from vouchers.service.lookup import get_redemption


def rate_redemption(*, redemption_id: int, score: int, comment: str | None, source: str, actor, now: datetime,
                    recipient_id: int | None = None):
    """Rate a delivered service: by its recipient, or by an admin (in scope) from a phone follow-up (回访).

    *recipient_id*, when given, is the recipient whose service it must be (an admin acting for one
    recipient, 代办, rates only that recipient's services).

    :raises NotFound: no such redemption (or not *recipient_id*'s).
    :raises Forbidden: not the recipient's own service, an admin not marking a phone follow-up, or a
        redemption outside the admin's region.
    :raises InvalidTransition: the redemption was reversed.
    :raises RatingWindowClosed, AlreadyRated: see providers.service.ratings.record_rating.
    """
    if actor.role == "admin":
        redemption = get_redemption(redemption_id, actor=actor)
        if source != "phone_followup":
            raise Forbidden("Admins record ratings only from a phone follow-up: send source `phone_followup`.")
    elif actor.role == "recipient":
        redemption = db.session.get(Redemption, redemption_id)
        if redemption is None:
            raise NotFound("No such redemption.")
        if redemption.recipient_id != actor.recipient_id:
            raise Forbidden("Only the person who received the service may rate it.")
        if source != "recipient":
            raise ValidationFailed({"source": "Recipients rate as `recipient`."})
    else:
        raise Forbidden()
    if recipient_id is not None and redemption.recipient_id != recipient_id:
        raise NotFound("No such service of this recipient.")
    if redemption.status != "completed":
        raise InvalidTransition("A reversed redemption cannot be rated.")
    # Held until the rating is recorded: a reversal racing it waits, then takes the rating out again.
    transitions.hold(redemption, status="completed", what="The redemption")
    programme = db.session.get(Programme, redemption.programme_id)
    return ratings.record_rating(
        redemption_id=redemption.id, provider_id=redemption.provider_id, programme_id=redemption.programme_id,
        item_code=redemption.item_code, recipient_id=redemption.recipient_id, delivered_at=redemption.delivered_at,
        rating_window_days=programme.rating_window_days, score=score, comment=comment, source=source,
        region_code=programme.region_code, actor=actor, now=now)


def complain(*, provider_id: int, text: str, redemption_id: int | None, recipient_id: int | None, actor,
             now: datetime):
    """File a complaint against a provider, optionally about one redemption (recipients: their own only).

    :raises NotFound: unknown provider, or a redemption that is not the recipient's or not by that provider.
    """
    provider = db.session.get(Provider, provider_id)
    if provider is None:
        raise NotFound("No such provider.")
    if actor.role == "recipient":
        recipient_id = actor.recipient_id
    if redemption_id is not None:
        redemption = db.session.get(Redemption, redemption_id)
        if redemption is None or redemption.provider_id != provider.id or (
                recipient_id is not None and redemption.recipient_id != recipient_id):
            raise NotFound("No such redemption of yours by this provider.")
        recipient_id = redemption.recipient_id
    if recipient_id is not None and db.session.get(Recipient, recipient_id) is None:
        raise NotFound("No such recipient.")
    return complaints.file_complaint(provider=provider, text=text, recipient_id=recipient_id,
                                     redemption_id=redemption_id, actor=actor, now=now)
