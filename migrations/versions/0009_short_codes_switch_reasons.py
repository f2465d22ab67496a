"""Presence by typed code, reasons for switching provider, and who an admin acted for.

- presence_short_code: the 8 digits of a presence code, kept only as a keyed hash, naming the code's
  nonce (using the code or its token uses both) and expiring with it.
- redemption.presence may be `typed_code` (the digits were typed in instead of the QR code scanned):
  a high share of typed codes is a market-integrity signal.
- choice_event.switch_reason / switch_note: why a recipient left a provider, kept with the switch.
- audit_event.on_behalf_of: the recipient an admin acted for (代办); hashed with the event when set,
  so older events hash as before.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-12
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

PRESENCE_KINDS = "presence IN ('presence_code', 'typed_code', 'voucher_card')"
PRESENCE_KINDS_BEFORE = "presence IN ('presence_code', 'voucher_card')"
SWITCH_REASONS = "switch_reason IN ('service_quality', 'staff_attitude', 'timeliness', 'price', 'moved', 'other')"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _presence_check(condition: str) -> None:
    # On SQLite the batch rebuilds the table (with its partial unique index), which others reference:
    # let the references be checked at commit, when the rebuilt table stands under the old name again.
    if _sqlite():
        op.execute("PRAGMA defer_foreign_keys = ON")
    with op.batch_alter_table('redemption', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_redemption_presence_known'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_redemption_presence_known'), sa.text(condition))


def upgrade():
    op.create_table('presence_short_code',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('nonce', sa.String(length=16), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipient.id'],
                            name=op.f('fk_presence_short_code_recipient_id_recipient')),
    sa.PrimaryKeyConstraint('code_hash', name=op.f('pk_presence_short_code')),
    sa.UniqueConstraint('nonce', name=op.f('uq_presence_short_code_nonce'))
    )
    with op.batch_alter_table('presence_short_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_presence_short_code_expires_at'), ['expires_at'], unique=False)

    _presence_check(PRESENCE_KINDS)

    with op.batch_alter_table('choice_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('switch_reason', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('switch_note', sa.String(length=200), nullable=True))
        batch_op.create_check_constraint(batch_op.f('ck_choice_event_switch_reason_known'), sa.text(SWITCH_REASONS))

    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('on_behalf_of', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_column('on_behalf_of')

    with op.batch_alter_table('choice_event', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_choice_event_switch_reason_known'), type_='check')
        batch_op.drop_column('switch_note')
        batch_op.drop_column('switch_reason')

    # Typed-code redemptions become scans of the presence code they were the typed form of.
    op.execute("UPDATE redemption SET presence = 'presence_code' WHERE presence = 'typed_code'")
    _presence_check(PRESENCE_KINDS_BEFORE)

    with op.batch_alter_table('presence_short_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_presence_short_code_expires_at'))
    op.drop_table('presence_short_code')
