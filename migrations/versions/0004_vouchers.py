"""Vouchers: issuances, vouchers, choices and their history, redemptions, used presence codes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('used_presence_code',
    sa.Column('nonce', sa.String(length=16), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('nonce', name=op.f('pk_used_presence_code'))
    )
    with op.batch_alter_table('used_presence_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_used_presence_code_expires_at'), ['expires_at'], unique=False)

    op.create_table('choice',
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('item_code', sa.String(length=32), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('chosen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('chosen_by', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['chosen_by'], ['user_account.id'], name=op.f('fk_choice_chosen_by_user_account')),
    sa.ForeignKeyConstraint(['item_code'], ['service_item.code'], name=op.f('fk_choice_item_code_service_item')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_choice_programme_id_programme')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_choice_provider_id_provider')),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipient.id'], name=op.f('fk_choice_recipient_id_recipient')),
    sa.PrimaryKeyConstraint('recipient_id', 'programme_id', 'item_code', name=op.f('pk_choice'))
    )
    with op.batch_alter_table('choice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_choice_provider_id'), ['provider_id'], unique=False)

    op.create_table('choice_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('item_code', sa.String(length=32), nullable=False),
    sa.Column('from_provider_id', sa.Integer(), nullable=True),
    sa.Column('to_provider_id', sa.Integer(), nullable=False),
    sa.Column('chosen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('chosen_by', sa.Integer(), nullable=True),
    sa.Column('acted_as', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['chosen_by'], ['user_account.id'], name=op.f('fk_choice_event_chosen_by_user_account')),
    sa.ForeignKeyConstraint(['from_provider_id'], ['provider.id'], name=op.f('fk_choice_event_from_provider_id_provider')),
    sa.ForeignKeyConstraint(['item_code'], ['service_item.code'], name=op.f('fk_choice_event_item_code_service_item')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_choice_event_programme_id_programme')),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipient.id'], name=op.f('fk_choice_event_recipient_id_recipient')),
    sa.ForeignKeyConstraint(['to_provider_id'], ['provider.id'], name=op.f('fk_choice_event_to_provider_id_provider')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_choice_event'))
    )
    with op.batch_alter_table('choice_event', schema=None) as batch_op:
        batch_op.create_index('ix_choice_event_recipient', ['recipient_id', 'programme_id', 'item_code'], unique=False)

    op.create_table('issuance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('monthly_period', sa.String(length=7), nullable=True),
    sa.Column('recipients', sa.Integer(), nullable=False),
    sa.Column('vouchers', sa.Integer(), nullable=False),
    sa.Column('committed_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.CheckConstraint("kind IN ('monthly', 'supplementary')", name=op.f('ck_issuance_kind_known')),
    sa.ForeignKeyConstraint(['created_by'], ['user_account.id'], name=op.f('fk_issuance_created_by_user_account')),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entry.id'], name=op.f('fk_issuance_entry_id_journal_entry')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_issuance_programme_id_programme')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_issuance')),
    sa.UniqueConstraint('programme_id', 'monthly_period', name=op.f('uq_issuance_programme_id_monthly_period'))
    )
    with op.batch_alter_table('issuance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_issuance_programme_id'), ['programme_id'], unique=False)

    op.create_table('voucher',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('item_code', sa.String(length=32), nullable=False),
    sa.Column('issuance_id', sa.Integer(), nullable=False),
    sa.Column('face_value_fen', sa.Integer(), nullable=False),
    sa.Column('copay_fen', sa.Integer(), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_until', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('issued', 'redeemed', 'expired', 'revoked')", name=op.f('ck_voucher_status_known')),
    sa.CheckConstraint('face_value_fen > 0 AND copay_fen >= 0', name=op.f('ck_voucher_amounts')),
    sa.CheckConstraint('valid_from <= valid_until', name=op.f('ck_voucher_validity_ordered')),
    sa.ForeignKeyConstraint(['issuance_id'], ['issuance.id'], name=op.f('fk_voucher_issuance_id_issuance')),
    sa.ForeignKeyConstraint(['item_code'], ['service_item.code'], name=op.f('fk_voucher_item_code_service_item')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_voucher_programme_id_programme')),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipient.id'], name=op.f('fk_voucher_recipient_id_recipient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_voucher'))
    )
    with op.batch_alter_table('voucher', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_voucher_issuance_id'), ['issuance_id'], unique=False)
        batch_op.create_index('ix_voucher_programme_status_valid_until', ['programme_id', 'status', 'valid_until'], unique=False)
        batch_op.create_index('ix_voucher_recipient_item_status', ['recipient_id', 'item_code', 'status', 'valid_until'], unique=False)

    op.create_table('redemption',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('voucher_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('item_code', sa.String(length=32), nullable=False),
    sa.Column('scanned_by', sa.Integer(), nullable=False),
    sa.Column('presence', sa.String(length=16), nullable=False),
    sa.Column('face_value_fen', sa.Integer(), nullable=False),
    sa.Column('copay_fen', sa.Integer(), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('duration_minutes', sa.Integer(), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reversed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reversed_by', sa.Integer(), nullable=True),
    sa.Column('reversal_reason', sa.Text(), nullable=True),
    sa.Column('settlement_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("presence IN ('presence_code', 'voucher_card')", name=op.f('ck_redemption_presence_known')),
    sa.CheckConstraint("status IN ('completed', 'reversed')", name=op.f('ck_redemption_status_known')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_redemption_programme_id_programme')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_redemption_provider_id_provider')),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipient.id'], name=op.f('fk_redemption_recipient_id_recipient')),
    sa.ForeignKeyConstraint(['reversed_by'], ['user_account.id'], name=op.f('fk_redemption_reversed_by_user_account')),
    sa.ForeignKeyConstraint(['scanned_by'], ['user_account.id'], name=op.f('fk_redemption_scanned_by_user_account')),
    sa.ForeignKeyConstraint(['voucher_id'], ['voucher.id'], name=op.f('fk_redemption_voucher_id_voucher')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_redemption'))
    )
    with op.batch_alter_table('redemption', schema=None) as batch_op:
        batch_op.create_index('ix_redemption_programme_delivered', ['programme_id', 'delivered_at'], unique=False)
        batch_op.create_index('ix_redemption_provider_delivered', ['provider_id', 'delivered_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_redemption_settlement_id'), ['settlement_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_redemption_voucher_id'), ['voucher_id'], unique=False)
        batch_op.create_index('uq_redemption_voucher_completed', ['voucher_id'], unique=True, postgresql_where=sa.text("status = 'completed'"), sqlite_where=sa.text("status = 'completed'"))



def downgrade():
    with op.batch_alter_table('redemption', schema=None) as batch_op:
        batch_op.drop_index('uq_redemption_voucher_completed', postgresql_where=sa.text("status = 'completed'"), sqlite_where=sa.text("status = 'completed'"))
        batch_op.drop_index(batch_op.f('ix_redemption_voucher_id'))
        batch_op.drop_index(batch_op.f('ix_redemption_settlement_id'))
        batch_op.drop_index('ix_redemption_provider_delivered')
        batch_op.drop_index('ix_redemption_programme_delivered')

    op.drop_table('redemption')
    with op.batch_alter_table('voucher', schema=None) as batch_op:
        batch_op.drop_index('ix_voucher_recipient_item_status')
        batch_op.drop_index('ix_voucher_programme_status_valid_until')
        batch_op.drop_index(batch_op.f('ix_voucher_issuance_id'))

    op.drop_table('voucher')
    with op.batch_alter_table('issuance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_issuance_programme_id'))

    op.drop_table('issuance')
    with op.batch_alter_table('choice_event', schema=None) as batch_op:
        batch_op.drop_index('ix_choice_event_recipient')

    op.drop_table('choice_event')
    with op.batch_alter_table('choice', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_choice_provider_id'))

    op.drop_table('choice')
    with op.batch_alter_table('used_presence_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_used_presence_code_expires_at'))

    op.drop_table('used_presence_code')
