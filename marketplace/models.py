"""Import every model so that the metadata is complete (for migrations and the models-match test)."""

from marketplace.audit.models import AuditEvent, AuditHead
from marketplace.auth.models import AuthToken, User

__all__ = ["AuditEvent", "AuditHead", "AuthToken", "User"]
