"""The vouchers domain's use cases, one module per job.

- `issuance`: monthly and supplementary issues, with the money arithmetic they share (co-payment,
  periods);
- `revocation`: revoking and expiring open vouchers, releasing their value;
- `choice`: the recipient's free choice of provider per item, with its history;
- `redemption`: presence codes and redeeming a voucher (核销), the hot path; its prebuilt statements
  live in `redemption_sql`;
- `reversal`: undoing a redemption within the programme's reversal window;
- `feedback`: rating a delivered service and complaining about it (stored by the providers domain);
- `lookup`: vouchers and redemptions as each actor may see them;
- `settlement`: monthly settlement (结算) with pay by performance.

Money rules shared by all of them (docs/domain.md, "Money"):
- every voucher written commits its face value through the kernel's guarded `commit_budget`, in the
  same transaction, so no run can overspend however many run at once;
- a voucher changes status only by a guarded UPDATE (`… WHERE status = 'issued'`), and a partial
  unique index allows one completed redemption per voucher, so racing scans give exactly one winner;
- every status change moves its face value in the journal (committed → redeemed, committed →
  available, redeemed → committed) in the same transaction, with an audit event.
"""
