"""Signals the kernel sends so that higher domains can act without the kernel importing them.

Receivers run synchronously, inside the sender's transaction: whatever they write commits or rolls
back together with the change that set them off.

- `programme_closed(programme, actor=, now=)`: a programme was closed. The vouchers domain revokes
  its open vouchers and releases their commitment.
- `recipient_departed(recipient, actor=, now=, status=)`: a recipient died or moved away. The vouchers
  domain revokes their open vouchers and releases the commitment.
- `reconciliation_checks(programme_id)`: reconciliation is running; each receiver returns a list of
  `Check` (see marketplace.programmes.ledger) re-deriving its domain's balances from its own tables.
- `recipient_record(recipient, now=)`: staff are reading a recipient's page; each receiver returns a dict of
  sections its domain holds about them (the vouchers domain: vouchers, choices, services, complaints).
- `recipient_departure_preview(recipient)`: staff are about to record a death or a move; each receiver returns
  a dict of what that will end (the vouchers domain: `{"vouchers": n, "released_fen": x}`). Reads only.
- `ranking_switching(item_code, programme_id=)`: the providers domain is ranking an item's providers (in one
  programme, or all); each receiver returns `{provider_id: switch_away_rate}` (the vouchers domain, from the
  choice history: vouchers/service/switching.py). Reads only.
- `provider_record(provider_id, now=)`: staff are reading a provider's page; each receiver returns a dict of
  sections its domain holds about it (the vouchers domain: `{"switching": [ProviderMonth, …]}`, the last six
  whole months). Reads only.
"""

from blinker import Namespace

_signals = Namespace()

programme_closed = _signals.signal("programme-closed")
recipient_departed = _signals.signal("recipient-departed")
reconciliation_checks = _signals.signal("reconciliation-checks")
recipient_record = _signals.signal("recipient-record")
recipient_departure_preview = _signals.signal("recipient-departure-preview")
ranking_switching = _signals.signal("ranking-switching")
provider_record = _signals.signal("provider-record")
