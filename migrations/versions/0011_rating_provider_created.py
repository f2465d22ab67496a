"""A provider's ratings newest first: rating (provider_id, created_at) replaces the index on provider_id
alone, so a provider's latest comments (/provider/feedback, the staff's provider page) are a short backward
index scan instead of sorting all of its ratings.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('rating', schema=None) as batch_op:
        batch_op.create_index('ix_rating_provider_created', ['provider_id', 'created_at'], unique=False)
        batch_op.drop_index(batch_op.f('ix_rating_provider_id'))


def downgrade():
    with op.batch_alter_table('rating', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rating_provider_id'), ['provider_id'], unique=False)
        batch_op.drop_index('ix_rating_provider_created')
