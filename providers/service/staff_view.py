"""One provider as the bureau's staff read it (`/staff/providers/<id>`), and what a qualification decision
would do to it, said before it is made.

Everything is read through the registry's own look-ups, so an admin limited to a region sees only
providers serving part of it, and an auditor sees every one.
"""

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import column, func, select, table

from marketplace.auth.models import User
from marketplace.db import db
from marketplace.programmes.models import Programme
from marketplace.signals import provider_record
from providers.models import Enrolment, ProgrammeApplication, Provider, ProviderStatusChange
from providers.service import registry
from providers.service.applications import list_applications
from providers.service.feedback_view import ProviderFeedback, provider_feedback
from providers.service.qualification import TRANSITIONS
from providers.service.registry import ProviderProfile

APPLICATIONS_SHOWN = 50

# The recipients' choices belong to the vouchers domain, above this one: named here, not imported
# (as Rating names the redemption it is about), to count who would be affected by a decision.
_choice = table("choice", column("recipient_id"), column("provider_id"))


@dataclass(frozen=True)
class HistoryLine:
    change: ProviderStatusChange
    by: str | None  # the deciding login's username; None when the provider registered itself


@dataclass(frozen=True)
class ProgrammeServed:
    programme: Programme
    enrolled_at: datetime


@dataclass(frozen=True)
class ApplicationLine:
    application: ProgrammeApplication
    programme_name: str


@dataclass(frozen=True)
class ProviderDossier:
    profile: ProviderProfile
    feedback: ProviderFeedback
    history: list[HistoryLine]
    programmes: list[ProgrammeServed]
    applications: list[ApplicationLine]
    chosen_by: int  # recipients who chose it for at least one item
    actions: list[str]  # the qualification decisions its status allows now
    # What the higher domains hold about it (the kernel's `provider_record` signal): the vouchers domain's
    # `switching`, its last six whole months of recipients gained and lost (vouchers.service.switching).
    sections: dict = field(default_factory=dict)

    @property
    def provider(self) -> Provider:
        return self.profile.provider


@dataclass(frozen=True)
class DecisionPreview:
    """What a decision on the provider would do, said on its confirmation."""

    profile: ProviderProfile
    action: str
    applies: bool  # False when the provider's status no longer allows the action (someone decided first)
    chosen_by: int
    programmes: int

    @property
    def provider(self) -> Provider:
        return self.profile.provider


def allowed_actions(status: str) -> list[str]:
    """The decisions that apply to a provider in *status*, in the order the page offers them."""
    return [action for action, (allowed_from, _to, _audit) in TRANSITIONS.items() if status in allowed_from]


def chosen_by(provider_id: int) -> int:
    """How many recipients currently chose the provider, for any item of any programme."""
    return db.session.scalar(select(func.count(func.distinct(_choice.c.recipient_id)))
                             .where(_choice.c.provider_id == provider_id)) or 0


def provider_dossier(*, provider_id: int, actor, now: datetime) -> ProviderDossier:
    """The provider's particulars, ratings, complaints with its answers, programmes, applications, the
    history of decisions about it and its recent switching, for admins in scope and auditors.

    :raises NotFound: no such provider. :raises Forbidden: it serves no part of a region-limited admin's region.
    """
    provider = registry.find_own_provider(provider_id, actor=actor)
    profile = registry.profiles([provider], actor)[0]
    history = db.session.execute(
        select(ProviderStatusChange, User.username).outerjoin(User, User.id == ProviderStatusChange.actor_id)
        .where(ProviderStatusChange.provider_id == provider.id).order_by(ProviderStatusChange.id)).all()
    served = db.session.execute(
        select(Programme, Enrolment.enrolled_at).join(Enrolment, Enrolment.programme_id == Programme.id)
        .where(Enrolment.provider_id == provider.id).order_by(Enrolment.id)).all()
    applied = list_applications(actor=actor, page=1, per_page=APPLICATIONS_SHOWN, provider_id=provider.id)["items"]
    names = dict(db.session.execute(select(Programme.id, Programme.name).where(
        Programme.id.in_({a.programme_id for a in applied}))).all()) if applied else {}
    return ProviderDossier(
        profile=profile, feedback=provider_feedback(provider_id=provider.id, now=now),
        history=[HistoryLine(change=change, by=username) for change, username in history],
        programmes=[ProgrammeServed(programme=programme, enrolled_at=at) for programme, at in served],
        applications=[ApplicationLine(application=a, programme_name=names.get(a.programme_id, "")) for a in applied],
        chosen_by=chosen_by(provider.id), actions=allowed_actions(provider.status),
        sections=_sections(provider.id, now))


def _sections(provider_id: int, now: datetime) -> dict:
    found: dict = {}
    for _receiver, answer in provider_record.send(provider_id, now=now):
        found.update(answer or {})
    return found


def decision_preview(*, provider_id: int, action: str, actor) -> DecisionPreview:
    """What *action* (approve, suspend, reinstate, revoke) would do to the provider, for its confirmation.

    :raises NotFound: no such provider. :raises Forbidden: outside a region-limited admin's region.
    """
    provider = registry.find_own_provider(provider_id, actor=actor)
    programmes = db.session.scalar(select(func.count()).select_from(Enrolment)
                                   .where(Enrolment.provider_id == provider.id)) or 0
    return DecisionPreview(profile=registry.profiles([provider], actor)[0], action=action,
                           applies=action in allowed_actions(provider.status), chosen_by=chosen_by(provider.id),
                           programmes=programmes)
