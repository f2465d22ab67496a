"""Market integrity: anomaly flags and what their rules need.

- anomaly_flag: one finding of a rule about one subject in one programme and month (unique), with its
  evidence; open → confirmed or dismissed with a reason. anomaly_flag_redemption: the redemptions it is
  about (held out of settlement while the flag is confirmed).
- recipient.status_effective_on: the date a death or move took effect.
- service_item.default_duration_minutes, programme_item.min_duration_minutes: the durations the rules use.
- programme.anomaly_parameters: the programme's own thresholds (null: the defaults).
- redemption (recipient_id, delivered_at) and (scanned_by, delivered_at): the rules' joins in time.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('anomaly_flag',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('severity', sa.String(length=8), nullable=False),
    sa.Column('subject', sa.String(length=80), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=True),
    sa.Column('recipient_id', sa.Integer(), nullable=True),
    sa.Column('staff_user_id', sa.Integer(), nullable=True),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.CheckConstraint("severity IN ('low', 'medium', 'high')", name=op.f('ck_anomaly_flag_severity_known')),
    sa.CheckConstraint("status IN ('open', 'confirmed', 'dismissed')", name=op.f('ck_anomaly_flag_status_known')),
    sa.ForeignKeyConstraint(['decided_by'], ['user_account.id'], name=op.f('fk_anomaly_flag_decided_by_user_account')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_anomaly_flag_programme_id_programme')),
    sa.ForeignKeyConstraint(['provider_id'], ['provider.id'], name=op.f('fk_anomaly_flag_provider_id_provider')),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipient.id'], name=op.f('fk_anomaly_flag_recipient_id_recipient')),
    sa.ForeignKeyConstraint(['staff_user_id'], ['user_account.id'], name=op.f('fk_anomaly_flag_staff_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_anomaly_flag')),
    sa.UniqueConstraint('rule', 'programme_id', 'period', 'subject', name=op.f('uq_anomaly_flag_rule_programme_id_period_subject'))
    )
    with op.batch_alter_table('anomaly_flag', schema=None) as batch_op:
        batch_op.create_index('ix_anomaly_flag_programme_period', ['programme_id', 'period', 'status'], unique=False)
        batch_op.create_index('ix_anomaly_flag_provider_status', ['provider_id', 'status'], unique=False)

    op.create_table('anomaly_flag_redemption',
    sa.Column('flag_id', sa.Integer(), nullable=False),
    sa.Column('redemption_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['flag_id'], ['anomaly_flag.id'], name=op.f('fk_anomaly_flag_redemption_flag_id_anomaly_flag'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['redemption_id'], ['redemption.id'], name=op.f('fk_anomaly_flag_redemption_redemption_id_redemption')),
    sa.PrimaryKeyConstraint('flag_id', 'redemption_id', name=op.f('pk_anomaly_flag_redemption'))
    )
    with op.batch_alter_table('anomaly_flag_redemption', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_anomaly_flag_redemption_redemption_id'), ['redemption_id'], unique=False)

    with op.batch_alter_table('recipient', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status_effective_on', sa.Date(), nullable=True))
    with op.batch_alter_table('service_item', schema=None) as batch_op:
        batch_op.add_column(sa.Column('default_duration_minutes', sa.Integer(), nullable=True))
    with op.batch_alter_table('programme_item', schema=None) as batch_op:
        batch_op.add_column(sa.Column('min_duration_minutes', sa.Integer(), nullable=True))
    with op.batch_alter_table('programme', schema=None) as batch_op:
        batch_op.add_column(sa.Column('anomaly_parameters', sa.JSON(), nullable=True))
    op.create_index('ix_redemption_recipient_delivered', 'redemption', ['recipient_id', 'delivered_at'], unique=False)
    op.create_index('ix_redemption_scanned_by_delivered', 'redemption', ['scanned_by', 'delivered_at'], unique=False)


def downgrade():
    op.drop_index('ix_redemption_scanned_by_delivered', table_name='redemption')
    op.drop_index('ix_redemption_recipient_delivered', table_name='redemption')
    with op.batch_alter_table('programme', schema=None) as batch_op:
        batch_op.drop_column('anomaly_parameters')
    with op.batch_alter_table('programme_item', schema=None) as batch_op:
        batch_op.drop_column('min_duration_minutes')
    with op.batch_alter_table('service_item', schema=None) as batch_op:
        batch_op.drop_column('default_duration_minutes')
    with op.batch_alter_table('recipient', schema=None) as batch_op:
        batch_op.drop_column('status_effective_on')
    with op.batch_alter_table('anomaly_flag_redemption', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_anomaly_flag_redemption_redemption_id'))
    op.drop_table('anomaly_flag_redemption')
    with op.batch_alter_table('anomaly_flag', schema=None) as batch_op:
        batch_op.drop_index('ix_anomaly_flag_provider_status')
        batch_op.drop_index('ix_anomaly_flag_programme_period')
    op.drop_table('anomaly_flag')
