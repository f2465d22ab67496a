from collections.abc import Callable
from datetime import datetime

import click
from flask import Blueprint
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from marketplace import idempotency, metrics
from marketplace.db import db, local_date, transaction, utcnow
from marketplace.errors import DomainError
from marketplace.programmes.models import Programme
from marketplace.scheduled import database_reason, one_line_failures, reason
from vouchers.service import anomaly_detection, issuance, redemption, revocation, settlement

cli = Blueprint("vouchers_cli", __name__, cli_group=None)


def _programme(programme_id: int) -> Programme:
    programme = db.session.get(Programme, programme_id)
    if programme is None:
        raise click.ClickException(f"No programme {programme_id}.")
    return programme


# --- what the scheduled jobs say: `all` programmes, `this-month` and `last-month` ------------------------
# cron and systemd timers (deploy/) run the monthly cycle without knowing programme ids or dates. Every
# command is safe to run twice (a second run finds nothing new and exits 0) and a failure exits 1 with
# one line saying why.

ALL = "all"
RELATIVE_PERIODS = ("this-month", "last-month")


class ProgrammeParam(click.ParamType):
    name = "PROGRAMME"

    def convert(self, value, param, ctx):
        if value == ALL or isinstance(value, int):
            return value
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a programme id nor `{ALL}`.", param, ctx)


PROGRAMME = ProgrammeParam()
PERIOD_HELP = "PERIOD is a month as YYYY-MM, or this-month or last-month (in LOCAL_TIMEZONE)."


def resolve_period(period: str, now: datetime) -> str:
    """`this-month` and `last-month` as YYYY-MM where the programmes run; any other text as given."""
    if period not in RELATIVE_PERIODS:
        return period
    today = local_date(now)
    year, month = (today.year, today.month) if period == "this-month" else (
        (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12))
    return f"{year:04d}-{month:02d}"


def _period(period: str) -> str:
    """PERIOD resolved and checked. :raises ValidationFailed: not a month."""
    resolved = resolve_period(period, utcnow())
    issuance.period_bounds(resolved)
    return resolved


def each_programme(selector: int | str, *, statuses: tuple[str, ...], what: str,
                   work: Callable[[Programme], None]) -> None:
    """Run *work* on programme *selector*, or (`all`) on every programme in *statuses*, each in its own
    transaction. One programme's refusal does not stop the others; the command then exits 1 naming each.

    :raises click.ClickException: the programme does not exist, or `all` and some were refused (one line).
    :raises DomainError: *selector*'s programme was refused (one_line_failures makes that one line).
    """
    if selector != ALL:
        with transaction():
            work(_programme(selector))
        return
    with transaction():
        ids = db.session.scalars(select(Programme.id).where(Programme.status.in_(statuses))
                                 .order_by(Programme.id)).all()
    if not ids:
        click.echo(f"no {' or '.join(statuses)} programme: no {what}")
        return
    failures = []
    for programme_id in ids:
        try:
            with transaction():
                work(db.session.get(Programme, programme_id))
        except (DomainError, SQLAlchemyError) as error:
            why = reason(error) if isinstance(error, DomainError) else f"database error: {database_reason(error)}"
            failures.append(f"programme {programme_id}: {why}")
            click.echo(f"programme {programme_id}: refused, nothing written", err=True)
    if failures:
        raise click.ClickException(f"{what} refused for {len(failures)} of {len(ids)} programmes: "
                                   + "; ".join(failures))


@cli.cli.command("issue-vouchers", epilog=PERIOD_HELP)
@click.argument("programme_id", metavar="PROGRAMME", type=PROGRAMME)
@click.argument("period")
@one_line_failures
def issue_vouchers_command(programme_id: int | str, period: str):
    """Issue PERIOD's monthly vouchers of PROGRAMME (an id, or `all`: every active programme running in
    PERIOD): all or nothing per programme, once per period."""
    period = _period(period)
    if programme_id == ALL:
        each_programme(ALL, statuses=("active",), what="issuance", work=lambda programme: _issue(programme, period))
        return
    with click.progressbar(length=3, label=f"issuing {period}") as bar:
        with metrics.timed_run("issuance"), transaction():
            programme = _programme(programme_id)
            bar.update(1)
            result = issuance.issue_monthly(programme=programme, period=period, actor=None, now=utcnow())
            bar.update(1)
        bar.update(1)
    _say_issued(result, period)


def _issue(programme: Programme, period: str) -> None:
    first, last = issuance.period_bounds(period)
    if last < programme.starts_on or first > programme.ends_on:
        click.echo(f"programme {programme.id}: does not run in {period} ({programme.starts_on} to "
                   f"{programme.ends_on}): nothing to issue")
        return
    with metrics.timed_run("issuance"):
        result = issuance.issue_monthly(programme=programme, period=period, actor=None, now=utcnow())
    _say_issued(result, period, prefix=f"programme {programme.id}: ")


def _say_issued(result, period: str, prefix: str = "") -> None:
    if result.already_issued:
        click.echo(f"{prefix}{period} was issued before: nothing new.")
    else:
        click.echo(f"{prefix}issued {result.vouchers} vouchers to {result.recipients} recipients, "
                   f"committing {result.committed_fen} fen")


@cli.cli.command("expire-vouchers")
@click.argument("programme_id", metavar="[PROGRAMME]", type=PROGRAMME, required=False)
@one_line_failures
def expire_vouchers_command(programme_id: int | str | None):
    """Expire vouchers past their validity (of PROGRAMME, or of every programme: no argument or `all`) and
    release their value. Run it daily: a second run the same day finds nothing."""
    with transaction():
        programmes = [_programme(programme_id)] if programme_id not in (None, ALL) else db.session.scalars(
            db.select(Programme).order_by(Programme.id)).all()
        for programme in programmes:
            result = revocation.expire_vouchers(programme=programme, actor=None, now=utcnow())
            click.echo(f"programme {programme.id}: expired {result['expired']}, released {result['released_fen']} fen")


@cli.cli.command("purge-expired")
@one_line_failures
def purge_expired_command():
    """Delete remembered Idempotency-Keys past IDEMPOTENCY_TTL_HOURS, used presence codes past expiry, and
    short codes that are used or expired."""
    now = utcnow()
    with transaction():
        keys = idempotency.purge(now=now)
        short_codes = redemption.purge_short_codes(now=now)
        codes = redemption.purge_used_presence_codes(now=now)
    click.echo(f"purged {keys} idempotency keys, {codes} used presence codes and {short_codes} short codes")


@cli.cli.command("settle", epilog=PERIOD_HELP)
@click.argument("programme_id", metavar="PROGRAMME", type=PROGRAMME)
@click.argument("period")
@one_line_failures
def settle_command(programme_id: int | str, period: str):
    """Draft PERIOD's settlements of PROGRAMME (an id, or `all`: every active or closed programme), one per
    provider; prints each one. A second run drafts nothing new."""
    period = _period(period)
    each_programme(programme_id, statuses=("active", "closed"), what="settlement",
                   work=lambda programme: _settle(programme, period, prefix=programme_id == ALL))


def _settle(programme: Programme, period: str, *, prefix: bool) -> None:
    with metrics.timed_run("settlement"):
        drafts = settlement.create_settlements(programme=programme, period=period, evaluations={}, actor=None,
                                               now=utcnow())
    head = f"programme {programme.id}: " if prefix else ""
    for draft in drafts:
        click.echo(f"{head}provider {draft.provider_id}: {draft.redemptions_count} redemptions, gross "
                   f"{draft.gross_fen} fen, score {draft.performance_score}, pay {draft.pay_percent}% = "
                   f"{draft.net_fen} fen" + (" — FLAGGED for termination" if draft.flagged_for_termination else ""))
    if not drafts:
        click.echo(f"{head}nothing to settle (already settled, or no redemptions)")


@cli.cli.command("detect-anomalies", epilog=PERIOD_HELP)
@click.argument("programme_id", metavar="PROGRAMME", type=PROGRAMME)
@click.argument("period")
@one_line_failures
def detect_anomalies_command(programme_id: int | str, period: str):
    """Run the market-integrity rules over PERIOD of PROGRAMME (an id, or `all`: every active or closed
    programme); new findings become open flags. A second run creates nothing new."""
    period = _period(period)
    detected = []
    try:
        each_programme(programme_id, statuses=("active", "closed"), what="anomaly detection",
                       work=lambda programme: detected.append(_detect(programme, period, prefix=programme_id == ALL)))
    finally:
        for result in detected:  # each programme's run, once its work is done (its commit follows at once)
            metrics.record_anomalies(result.created_by_rule)


def _detect(programme: Programme, period: str, *, prefix: bool):
    head = f"programme {programme.id}: " if prefix else ""

    def progress(rule: str, findings: int) -> None:
        click.echo(f"{head}  {rule}: {findings} found")

    click.echo(f"{head}detecting anomalies in programme {programme.id}, {period}")
    result = anomaly_detection.detect_anomalies(programme=programme, period=period, actor=None, now=utcnow(),
                                                progress=progress)
    click.echo(f"{head}{result.flags_created} new flags; {result.flags_total} flags for {period} in all")
    return result
