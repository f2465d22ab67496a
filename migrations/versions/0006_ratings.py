"""Ratings with per-provider, programme and item totals; complaints.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('rating_aggregate',
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('item_code', sa.String(length=32), nullable=False),
    sa.Column('ratings_count', sa.Integer(), nullable=False),
    sa.Column('score_sum', sa.Integer(), nullable=False),
    sa.Column('satisfied_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['item_code'], ['service_item.code'], name=op.f('fk_rating_aggregate_item_code_service_item')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_rating_aggregate_programme_id_programme')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_rating_aggregate_provider_id_provider')),
    sa.PrimaryKeyConstraint('provider_id', 'programme_id', 'item_code', name=op.f('pk_rating_aggregate'))
    )
    with op.batch_alter_table('rating_aggregate', schema=None) as batch_op:
        batch_op.create_index('ix_rating_aggregate_item_code', ['item_code', 'provider_id'], unique=False)

    op.create_table('complaint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=True),
    sa.Column('redemption_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('upheld', sa.Boolean(), nullable=True),
    sa.Column('resolution', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('open', 'resolved')", name=op.f('ck_complaint_status_known')),
    sa.ForeignKeyConstraint(['created_by'], ['user_account.id'], name=op.f('fk_complaint_created_by_user_account')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_complaint_provider_id_provider')),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipient.id'], name=op.f('fk_complaint_recipient_id_recipient')),
    sa.ForeignKeyConstraint(['redemption_id'], ['redemption.id'], name=op.f('fk_complaint_redemption_id_redemption')),
    sa.ForeignKeyConstraint(['resolved_by'], ['user_account.id'], name=op.f('fk_complaint_resolved_by_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_complaint'))
    )
    with op.batch_alter_table('complaint', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_complaint_provider_id'), ['provider_id'], unique=False)
        batch_op.create_index('ix_complaint_redemption_status', ['redemption_id', 'status'], unique=False)

    op.create_table('rating',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('redemption_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('item_code', sa.String(length=32), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('rated_by', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("source IN ('recipient', 'phone_followup')", name=op.f('ck_rating_source_known')),
    sa.CheckConstraint('score BETWEEN 1 AND 5', name=op.f('ck_rating_score_range')),
    sa.ForeignKeyConstraint(['item_code'], ['service_item.code'], name=op.f('fk_rating_item_code_service_item')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_rating_programme_id_programme')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_rating_provider_id_provider')),
    sa.ForeignKeyConstraint(['rated_by'], ['user_account.id'], name=op.f('fk_rating_rated_by_user_account')),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipient.id'], name=op.f('fk_rating_recipient_id_recipient')),
    sa.ForeignKeyConstraint(['redemption_id'], ['redemption.id'], name=op.f('fk_rating_redemption_id_redemption')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rating')),
    sa.UniqueConstraint('redemption_id', name=op.f('uq_rating_redemption_id'))
    )
    with op.batch_alter_table('rating', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rating_provider_id'), ['provider_id'], unique=False)



def downgrade():
    with op.batch_alter_table('rating', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rating_provider_id'))

    op.drop_table('rating')
    with op.batch_alter_table('complaint', schema=None) as batch_op:
        batch_op.drop_index('ix_complaint_redemption_status')
        batch_op.drop_index(batch_op.f('ix_complaint_provider_id'))

    op.drop_table('complaint')
    with op.batch_alter_table('rating_aggregate', schema=None) as batch_op:
        batch_op.drop_index('ix_rating_aggregate_item_code')

    op.drop_table('rating_aggregate')
