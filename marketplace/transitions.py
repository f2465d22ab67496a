"""Status changes of single rows: the one guarded way to move a programme, provider, recipient,
settlement, complaint or redemption from one status to the next.

A change reads the status it expects and writes with
`UPDATE … SET status = :to, … WHERE id = :id AND status = :expected [AND further guards]`. Of two
racing changes exactly one matches; the other gets 409 `invalid_transition` ("changed meanwhile"),
so no history row or audit event is ever written for a change that did not happen, and no history
names the same "from" twice. The UPDATE also takes the row's lock (the write lock on SQLite) before
anything else the change writes, so every change of one row orders its locks the same way and two
of them cannot deadlock.
"""

from collections.abc import Collection, Mapping

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value

from marketplace.db import db
from marketplace.errors import InvalidTransition


def hold(row, *, status: str, what: str) -> None:
    """Lock *row* while it is in *status*, until the transaction ends (a no-op guarded UPDATE).

    Work that relies on a status without changing it (issuing into an active programme, rating a
    completed service) holds the row, so a racing change of that status waits for it, or, if the
    change came first, this refuses.

    :raises InvalidTransition: the row is no longer in *status*.
    """
    model = type(row)
    held = db.session.execute(
        update(model).where(model.id == row.id, model.status == status).values(status=model.status)
        .execution_options(synchronize_session=False)).rowcount
    if held != 1:
        raise InvalidTransition(f"{what} is no longer {status}; reload it.", to=status)


def move(row, *, to: str, allowed_from: Collection[str], what: str, values: Mapping | None = None,
         guards: tuple = ()) -> str:
    """Move *row* (an ORM object with `id` and `status`) to *to*, setting *values* too; return the status
    it left. The object in the session is updated to match.

    :raises InvalidTransition: its status is not one of *allowed_from*, or it changed since it was
        read (a racing change won), or a guard no longer holds.
    """
    expected = row.status
    if expected not in allowed_from:
        raise InvalidTransition(f"{what} is {expected}: it cannot become {to}.", status=expected, to=to)
    model = type(row)
    changes = {"status": to, **(values or {})}
    changed = db.session.execute(
        update(model).where(model.id == row.id, model.status == expected, *guards).values(**changes)
        .execution_options(synchronize_session=False)).rowcount
    if changed != 1:
        raise InvalidTransition(f"{what} changed meanwhile; reload it.", status=expected, to=to)
    for name, value in changes.items():
        set_committed_value(row, name, value)
    return expected
