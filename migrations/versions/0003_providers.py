"""Providers: registry, regions and items served, qualification history, programme enrolment.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('provider',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('legal_representative', sa.String(length=50), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('social_organisation', 'enterprise', 'public_institution', 'community_organisation', 'rural_collective')", name=op.f('ck_provider_kind_known')),
    sa.CheckConstraint("status IN ('pending', 'approved', 'suspended', 'revoked')", name=op.f('ck_provider_status_known')),
    sa.CheckConstraint('capacity > 0', name=op.f('ck_provider_capacity_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider')),
    sa.UniqueConstraint('credit_code', name=op.f('uq_provider_credit_code'))
    )
    with op.batch_alter_table('provider', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provider_status'), ['status'], unique=False)

    op.create_table('provider_region',
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('prefix', sa.String(length=6), nullable=False),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_provider_region_provider_id_provider'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('provider_id', 'region_code', name=op.f('pk_provider_region'))
    )
    with op.batch_alter_table('provider_region', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provider_region_prefix'), ['prefix'], unique=False)

    op.create_table('provider_item',
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('item_code', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['item_code'], ['service_item.code'], name=op.f('fk_provider_item_item_code_service_item')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_provider_item_provider_id_provider'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('provider_id', 'item_code', name=op.f('pk_provider_item'))
    )
    with op.batch_alter_table('provider_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provider_item_item_code'), ['item_code'], unique=False)

    op.create_table('provider_status_change',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('from_status', sa.String(length=10), nullable=True),
    sa.Column('to_status', sa.String(length=10), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['user_account.id'], name=op.f('fk_provider_status_change_actor_id_user_account')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_provider_status_change_provider_id_provider')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_status_change'))
    )
    with op.batch_alter_table('provider_status_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_provider_status_change_provider_id'), ['provider_id'], unique=False)

    op.create_table('enrolment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('enrolled_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('enrolled_by', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['enrolled_by'], ['user_account.id'], name=op.f('fk_enrolment_enrolled_by_user_account')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_enrolment_programme_id_programme')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_enrolment_provider_id_provider')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrolment')),
    sa.UniqueConstraint('programme_id', 'provider_id', name=op.f('uq_enrolment_programme_id_provider_id'))
    )
    with op.batch_alter_table('enrolment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrolment_programme_id'), ['programme_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_enrolment_provider_id'), ['provider_id'], unique=False)

    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_account_provider_id'), ['provider_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_user_account_provider_id_provider'), 'provider', ['provider_id'], ['id'])



def downgrade():
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_user_account_provider_id_provider'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_user_account_provider_id'))

    with op.batch_alter_table('enrolment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enrolment_provider_id'))
        batch_op.drop_index(batch_op.f('ix_enrolment_programme_id'))

    op.drop_table('enrolment')
    with op.batch_alter_table('provider_status_change', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_provider_status_change_provider_id'))

    op.drop_table('provider_status_change')
    with op.batch_alter_table('provider_item', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_provider_item_item_code'))

    op.drop_table('provider_item')
    with op.batch_alter_table('provider_region', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_provider_region_prefix'))

    op.drop_table('provider_region')
    with op.batch_alter_table('provider', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_provider_status'))

    op.drop_table('provider')
