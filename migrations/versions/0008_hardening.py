"""Who created each login (four eyes), the region of each audit event (region scope), and settlement
ids that SQLite never reuses.

- user_account.created_by: a settlement's approver may be neither its drafter nor a login the
  drafter created.
- audit_event.region_code / region_prefix: the region an event concerns, for the scope filter; older
  events keep NULL (visible to unscoped admins and auditors only) and hash as before.
- settlement on SQLite becomes AUTOINCREMENT: without it SQLite hands a deleted draft's id to the next
  draft, and audit events and statements that named the old one would name the new one. (PostgreSQL
  sequences never reuse an id.)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade():
    if _sqlite():
        # Rebuilding a table that others reference drops it first; let the references be checked at
        # commit, when the rebuilt table stands under the old name again.
        op.execute("PRAGMA defer_foreign_keys = ON")
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('created_by', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_user_account_created_by_user_account'), 'user_account',
                                    ['created_by'], ['id'])

    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('region_code', sa.String(length=6), nullable=True))
        batch_op.add_column(sa.Column('region_prefix', sa.String(length=6), nullable=True))
        batch_op.create_index(batch_op.f('ix_audit_event_region_prefix'), ['region_prefix'], unique=False)

    if _sqlite():
        with op.batch_alter_table('settlement', recreate='always',
                                  table_kwargs={'sqlite_autoincrement': True}) as batch_op:
            pass


def downgrade():
    if _sqlite():
        op.execute("PRAGMA defer_foreign_keys = ON")
        with op.batch_alter_table('settlement', recreate='always',
                                  table_kwargs={'sqlite_autoincrement': False}) as batch_op:
            pass

    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_event_region_prefix'))
        batch_op.drop_column('region_prefix')
        batch_op.drop_column('region_code')

    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_user_account_created_by_user_account'), type_='foreignkey')
        batch_op.drop_column('created_by')
