import click
from flask import Blueprint

from marketplace import idempotency, metrics
from marketplace.db import db, transaction, utcnow
from marketplace.errors import DomainError
from marketplace.programmes.models import Programme
from vouchers.service import anomaly_detection, issuance, redemption, revocation, settlement

cli = Blueprint("vouchers_cli", __name__, cli_group=None)


def _one_line(error: DomainError) -> str:
    """A refusal as one line: its message, then each field's messages."""
    fields = (error.details or {}).get("fields") or {}
    named = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items())
    return f"{error.message} {named}".strip()


def _programme(programme_id: int) -> Programme:
    programme = db.session.get(Programme, programme_id)
    if programme is None:
        raise click.ClickException(f"No programme {programme_id}.")
    return programme


@cli.cli.command("issue-vouchers")
@click.argument("programme_id", type=int)
@click.argument("period")
def issue_vouchers_command(programme_id: int, period: str):
    """Issue PERIOD's (YYYY-MM) monthly vouchers of a programme: all or nothing, once per period."""
    with click.progressbar(length=3, label=f"issuing {period}") as bar:
        try:
            with metrics.timed_run("issuance"), transaction():
                programme = _programme(programme_id)
                bar.update(1)
                result = issuance.issue_monthly(programme=programme, period=period, actor=None, now=utcnow())
                bar.update(1)
            bar.update(1)
        except DomainError as error:
            raise click.ClickException(f"{error.message} {error.details or ''}".strip()) from error
    if result.already_issued:
        click.echo(f"{period} was issued before: nothing new.")
    else:
        click.echo(f"issued {result.vouchers} vouchers to {result.recipients} recipients, "
                   f"committing {result.committed_fen} fen")


@cli.cli.command("expire-vouchers")
@click.argument("programme_id", type=int, required=False)
def expire_vouchers_command(programme_id: int | None):
    """Expire vouchers past their validity (one programme, or every programme) and release their value."""
    with transaction():
        programmes = [_programme(programme_id)] if programme_id else db.session.scalars(
            db.select(Programme).order_by(Programme.id)).all()
        for programme in programmes:
            result = revocation.expire_vouchers(programme=programme, actor=None, now=utcnow())
            click.echo(f"programme {programme.id}: expired {result['expired']}, released {result['released_fen']} fen")


@cli.cli.command("purge-expired")
def purge_expired_command():
    """Delete remembered Idempotency-Keys past IDEMPOTENCY_TTL_HOURS, used presence codes past expiry, and
    short codes that are used or expired."""
    now = utcnow()
    with transaction():
        keys = idempotency.purge(now=now)
        short_codes = redemption.purge_short_codes(now=now)
        codes = redemption.purge_used_presence_codes(now=now)
    click.echo(f"purged {keys} idempotency keys, {codes} used presence codes and {short_codes} short codes")


@cli.cli.command("settle")
@click.argument("programme_id", type=int)
@click.argument("period")
def settle_command(programme_id: int, period: str):
    """Draft PERIOD's (YYYY-MM) settlements of a programme, one per provider; prints each one."""
    try:
        with metrics.timed_run("settlement"), transaction():
            programme = _programme(programme_id)
            drafts = settlement.create_settlements(programme=programme, period=period, evaluations={}, actor=None,
                                                   now=utcnow())
    except DomainError as error:
        raise click.ClickException(f"{error.message} {error.details or ''}".strip()) from error
    for draft in drafts:
        click.echo(f"provider {draft.provider_id}: {draft.redemptions_count} redemptions, gross {draft.gross_fen} fen, "
                   f"score {draft.performance_score}, pay {draft.pay_percent}% = {draft.net_fen} fen"
                   + (" — FLAGGED for termination" if draft.flagged_for_termination else ""))
    if not drafts:
        click.echo("nothing to settle (already settled, or no redemptions)")


@cli.cli.command("detect-anomalies")
@click.argument("programme_id", type=int)
@click.argument("period")
def detect_anomalies_command(programme_id: int, period: str):
    """Run the market-integrity rules over PERIOD (YYYY-MM) of a programme; new findings become open flags."""

    def progress(rule: str, findings: int) -> None:
        click.echo(f"  {rule}: {findings} found")

    try:
        with transaction():
            programme = _programme(programme_id)
            issuance.period_bounds(period)  # a bad month is refused before anything is said
            click.echo(f"detecting anomalies in programme {programme.id}, {period}")
            result = anomaly_detection.detect_anomalies(programme=programme, period=period, actor=None,
                                                        now=utcnow(), progress=progress)
    except DomainError as error:
        raise click.ClickException(_one_line(error)) from error
    metrics.record_anomalies(result.created_by_rule)
    click.echo(f"{result.flags_created} new flags; {result.flags_total} flags for {period} in all")
