"""Settlements, and the link from each redemption to the one settlement that pays it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('settlement',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('redemptions_count', sa.Integer(), nullable=False),
    sa.Column('gross_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('satisfaction_score', sa.Integer(), nullable=False),
    sa.Column('complaint_score', sa.Integer(), nullable=False),
    sa.Column('upheld_complaints', sa.Integer(), nullable=False),
    sa.Column('evaluation_score', sa.Integer(), nullable=True),
    sa.Column('performance_score', sa.Integer(), nullable=False),
    sa.Column('pay_percent', sa.Integer(), nullable=False),
    sa.Column('net_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('flagged_for_termination', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('approved_by', sa.Integer(), nullable=True),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paid_by', sa.Integer(), nullable=True),
    sa.Column('payment_reference', sa.String(length=100), nullable=True),
    sa.CheckConstraint("status IN ('draft', 'approved', 'paid')", name=op.f('ck_settlement_status_known')),
    sa.CheckConstraint('net_fen <= gross_fen AND net_fen >= 0', name=op.f('ck_settlement_net_within_gross')),
    sa.CheckConstraint('pay_percent BETWEEN 0 AND 100', name=op.f('ck_settlement_pay_percent_range')),
    sa.ForeignKeyConstraint(['approved_by'], ['user_account.id'], name=op.f('fk_settlement_approved_by_user_account')),
    sa.ForeignKeyConstraint(['created_by'], ['user_account.id'], name=op.f('fk_settlement_created_by_user_account')),
    sa.ForeignKeyConstraint(['paid_by'], ['user_account.id'], name=op.f('fk_settlement_paid_by_user_account')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_settlement_programme_id_programme')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_settlement_provider_id_provider')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement')),
    sa.UniqueConstraint('programme_id', 'provider_id', 'period', name=op.f('uq_settlement_programme_id_provider_id_period'))
    )
    with op.batch_alter_table('settlement', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_settlement_programme_id'), ['programme_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_settlement_provider_id'), ['provider_id'], unique=False)

    with op.batch_alter_table('redemption', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_redemption_settlement_id_settlement'), 'settlement', ['settlement_id'], ['id'])



def downgrade():
    with op.batch_alter_table('redemption', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_redemption_settlement_id_settlement'), type_='foreignkey')

    with op.batch_alter_table('settlement', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_settlement_provider_id'))
        batch_op.drop_index(batch_op.f('ix_settlement_programme_id'))

    op.drop_table('settlement')
