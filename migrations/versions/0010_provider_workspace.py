"""The provider's workspace: applications to join a programme, answers to complaints, managers and
scanning staff logins, and the previous login of each account.

- programme_application: a provider asks to join a programme; an admin accepts (enrols it) or
  refuses with a reason. At most one pending application per programme and provider.
- complaint.answer / answered_at / answered_by: the provider's one answer while the complaint is open.
- user_account.provider_manager: the provider's manager (its first login) adds and deactivates its
  scanning staff logins. Existing providers: their first login becomes their manager.
- user_account.last_login_at: the previous successful login, so that a provider's approval, rejection
  or suspension is shown once, on the next login after it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade():
    op.create_table('programme_application',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'accepted', 'refused')",
                       name=op.f('ck_programme_application_status_known')),
    sa.ForeignKeyConstraint(['created_by'], ['user_account.id'],
                            name=op.f('fk_programme_application_created_by_user_account')),
    sa.ForeignKeyConstraint(['decided_by'], ['user_account.id'],
                            name=op.f('fk_programme_application_decided_by_user_account')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'],
                            name=op.f('fk_programme_application_programme_id_programme')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'],
                            name=op.f('fk_programme_application_provider_id_provider')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_programme_application'))
    )
    with op.batch_alter_table('programme_application', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_programme_application_programme_id'), ['programme_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_programme_application_provider_id'), ['provider_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_programme_application_status'), ['status'], unique=False)
        batch_op.create_index('uq_programme_application_pending', ['programme_id', 'provider_id'], unique=True,
                              postgresql_where=PENDING, sqlite_where=PENDING)

    if _sqlite():
        # Rebuilding a table that others reference drops it first; let the references be checked at
        # commit, when the rebuilt table stands under the old name again.
        op.execute("PRAGMA defer_foreign_keys = ON")
    with op.batch_alter_table('complaint', schema=None) as batch_op:
        batch_op.add_column(sa.Column('answer', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('answered_by', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_complaint_answered_by_user_account'), 'user_account',
                                    ['answered_by'], ['id'])

    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provider_manager', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_check_constraint(batch_op.f('ck_user_account_manager_is_provider'),
                                         sa.text("NOT provider_manager OR role = 'provider'"))

    # Each existing provider's first login becomes its manager.
    op.execute("UPDATE user_account SET provider_manager = true WHERE id IN "
               "(SELECT min(id) FROM user_account WHERE role = 'provider' GROUP BY provider_id)")


def downgrade():
    if _sqlite():
        op.execute("PRAGMA defer_foreign_keys = ON")
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_user_account_manager_is_provider'), type_='check')
        batch_op.drop_column('last_login_at')
        batch_op.drop_column('provider_manager')

    with op.batch_alter_table('complaint', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_complaint_answered_by_user_account'), type_='foreignkey')
        batch_op.drop_column('answered_by')
        batch_op.drop_column('answered_at')
        batch_op.drop_column('answer')

    with op.batch_alter_table('programme_application', schema=None) as batch_op:
        batch_op.drop_index('uq_programme_application_pending', postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.drop_index(batch_op.f('ix_programme_application_status'))
        batch_op.drop_index(batch_op.f('ix_programme_application_provider_id'))
        batch_op.drop_index(batch_op.f('ix_programme_application_programme_id'))

    op.drop_table('programme_application')
