"""Import every kernel model so that the metadata is complete (app.py imports the higher domains' models)."""

from marketplace.audit.models import AuditEvent, AuditHead
from marketplace.auth.models import AuthToken, User
from marketplace.catalogue.models import NegativeListRule, ServiceCategory, ServiceItem
from marketplace.idempotency import IdempotencyRecord
from marketplace.programmes.models import (
    BudgetAmendment,
    JournalEntry,
    JournalLine,
    Programme,
    ProgrammeBudget,
    ProgrammeItem,
)
from marketplace.recipients.models import Recipient, RecipientTag

__all__ = [
    "AuditEvent", "AuditHead", "AuthToken", "BudgetAmendment", "IdempotencyRecord", "JournalEntry", "JournalLine",
    "NegativeListRule",
    "Programme", "ProgrammeBudget", "ProgrammeItem", "Recipient", "RecipientTag", "ServiceCategory", "ServiceItem",
    "User",
]
