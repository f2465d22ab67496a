"""Append-only, hash-chained audit trail (docs/domain.md, rule 8).

Services call `audit.record(...)` for every change of money, status or qualification; the event is
appended to the chain when their transaction commits.
"""

from marketplace.audit.service import acting_for, record, verify_chain

__all__ = ["acting_for", "record", "verify_chain"]
