"""Qualification (资质) decisions: approve, suspend, reinstate, revoke — each with a reason, kept as
history and audited. Only approved providers may enrol, be chosen and redeem."""

from datetime import datetime

from marketplace import audit, scope, transitions
from marketplace.regions import common_region
from providers.service.registry import ProviderProfile, find_provider, profiles, record_status

# action → (statuses it applies to, resulting status, what the audit calls it).
TRANSITIONS = {
    "approve": ({"pending"}, "approved", "provider.approved"),
    "suspend": ({"approved"}, "suspended", "provider.suspended"),
    "reinstate": ({"suspended"}, "approved", "provider.reinstated"),
    "revoke": ({"pending", "approved", "suspended"}, "revoked", "provider.revoked"),
}


def change_status(*, provider_id: int, action: str, reason: str, actor, now: datetime) -> ProviderProfile:
    """Approve, suspend, reinstate or revoke a provider, with a reason.

    :raises NotFound: no such provider.
    :raises Forbidden: the provider serves no part of a region-limited admin's region.
    :raises InvalidTransition: the action does not apply to the provider's current status, or a racing
        decision changed it first.
    """
    provider = find_provider(provider_id, actor=actor)
    allowed_from, to_status, audit_action = TRANSITIONS[action]
    scope.require_any(actor, provider.region_codes, "The provider")
    from_status = transitions.move(provider, to=to_status, allowed_from=allowed_from, what="The provider",
                                   values={"status_reason": reason, "status_changed_at": now})
    record_status(provider, from_status, to_status, reason, actor, now)
    audit.record(action=audit_action, entity="provider", entity_id=provider.id, actor=actor, now=now,
                 region_code=common_region(provider.region_codes),
                 data={"from": from_status, "to": to_status, "reason": reason})
    return profiles([provider], actor)[0]
