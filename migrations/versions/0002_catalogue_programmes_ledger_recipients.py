"""Catalogue (six categories, the negative list), programmes, the budget journal, recipients.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# 指导目录: the six categories of the guidance catalogue for government purchase of services.
CATEGORIES = [
    ("basic_public", "基本公共服务", 1),
    ("social_management", "社会管理性服务", 2),
    ("industry_coordination", "行业管理与协调性服务", 3),
    ("technical", "技术性服务", 4),
    ("government_support", "政府履职所需辅助性事项", 5),
    ("other_social", "其他适宜由社会力量承担的服务事项", 6),
]

# 负面清单: what may never be bought as a service, one rule per item nature, with its reason.
NEGATIVE_LIST = [
    ("goods", "货物", "Goods are procured under the Government Procurement Law's rules for goods, not bought as "
     "services (政府购买服务不包括货物采购)."),
    ("construction", "建设工程", "Construction works are procured under the Bidding Law and the rules for works, "
     "not as services (政府购买服务不包括工程建设)."),
    ("financing", "融资及借贷", "Buying services may not be used for financing or borrowing; it must not create "
     "hidden government debt (严禁利用或虚构政府购买服务合同违法违规融资)."),
    ("staff_hiring", "岗位聘用", "Purchase of services buys results, not staff: hiring people into posts "
     "(岗位聘用, 劳务派遣) is not a purchase of services."),
    ("judicial", "司法审判", "Judicial adjudication is a core power of the state and may not be delegated to "
     "social forces (不得将司法审判等职能转由社会力量承担)."),
    ("administrative_penalty", "行政处罚", "Administrative penalties are a core government power and may not be "
     "purchased (不得将行政处罚职能转由社会力量承担)."),
    ("administrative_coercion", "行政强制", "Administrative coercion is a core government power and may not be "
     "purchased (不得将行政强制职能转由社会力量承担)."),
]


def upgrade():
    op.create_table('negative_list_rule',
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_negative_list_rule'))
    )
    op.create_table('recipient',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('id_number_hash', sa.String(length=64), nullable=False),
    sa.Column('id_number_masked', sa.String(length=18), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=False),
    sa.Column('sex', sa.String(length=6), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('address', sa.String(length=200), nullable=True),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("sex IN ('male', 'female')", name=op.f('ck_recipient_sex_known')),
    sa.CheckConstraint("status IN ('active', 'moved', 'deceased')", name=op.f('ck_recipient_status_known')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recipient')),
    sa.UniqueConstraint('id_number_hash', name=op.f('uq_recipient_id_number_hash'))
    )
    with op.batch_alter_table('recipient', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recipient_region_code'), ['region_code'], unique=False)

    op.create_table('service_category',
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_service_category'))
    )
    op.create_table('recipient_tag',
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=16), nullable=False),
    sa.CheckConstraint("tag IN ('disabled', 'low_income', 'extreme_poverty', 'advanced_age', 'living_alone')", name=op.f('ck_recipient_tag_tag_known')),
    sa.ForeignKeyConstraint(['recipient_id'], ['recipient.id'], name=op.f('fk_recipient_tag_recipient_id_recipient'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('recipient_id', 'tag', name=op.f('pk_recipient_tag'))
    )
    op.bulk_insert(sa.table('negative_list_rule', sa.column('code', sa.String), sa.column('name', sa.String),
                            sa.column('reason', sa.Text)),
                   [{'code': code, 'name': name, 'reason': reason} for code, name, reason in NEGATIVE_LIST])
    op.bulk_insert(sa.table('service_category', sa.column('code', sa.String), sa.column('name', sa.String),
                            sa.column('position', sa.Integer)),
                   [{'code': code, 'name': name, 'position': position} for code, name, position in CATEGORIES])
    op.create_table('service_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=80), nullable=False),
    sa.Column('category_code', sa.String(length=40), nullable=False),
    sa.Column('unit', sa.String(length=8), nullable=False),
    sa.Column('standard_price_fen', sa.Integer(), nullable=False),
    sa.Column('nature', sa.String(length=32), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("nature = 'service'", name=op.f('ck_service_item_service_only')),
    sa.CheckConstraint('standard_price_fen > 0', name=op.f('ck_service_item_price_positive')),
    sa.ForeignKeyConstraint(['category_code'], ['service_category.code'], name=op.f('fk_service_item_category_code_service_category')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_item')),
    sa.UniqueConstraint('code', name=op.f('uq_service_item_code'))
    )
    op.create_table('programme',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('authority', sa.String(length=120), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('eligibility', sa.JSON(), nullable=False),
    sa.Column('copay_percent', sa.JSON(), nullable=False),
    sa.Column('reserved_share_percent', sa.Integer(), nullable=False),
    sa.Column('settlement_rules', sa.JSON(), nullable=False),
    sa.Column('rating_window_days', sa.Integer(), nullable=False),
    sa.Column('reversal_window_hours', sa.Integer(), nullable=False),
    sa.Column('choice_required', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('draft', 'active', 'closed')", name=op.f('ck_programme_status_known')),
    sa.CheckConstraint('reserved_share_percent BETWEEN 0 AND 100', name=op.f('ck_programme_reserved_share_percent')),
    sa.CheckConstraint('starts_on <= ends_on', name=op.f('ck_programme_period_ordered')),
    sa.ForeignKeyConstraint(['created_by'], ['user_account.id'], name=op.f('fk_programme_created_by_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_programme'))
    )
    with op.batch_alter_table('programme', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_programme_region_code'), ['region_code'], unique=False)

    op.create_table('journal_entry',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('reference_type', sa.String(length=32), nullable=True),
    sa.Column('reference_id', sa.String(length=64), nullable=True),
    sa.Column('memo', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['user_account.id'], name=op.f('fk_journal_entry_actor_id_user_account')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_journal_entry_programme_id_programme')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journal_entry'))
    )
    with op.batch_alter_table('journal_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_journal_entry_programme_id'), ['programme_id'], unique=False)
        batch_op.create_index('ix_journal_entry_reference', ['reference_type', 'reference_id'], unique=False)

    op.create_table('programme_budget',
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('available_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint('available_fen >= 0', name=op.f('ck_programme_budget_available_not_negative')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_programme_budget_programme_id_programme'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('programme_id', name=op.f('pk_programme_budget'))
    )
    op.create_table('programme_item',
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('item_code', sa.String(length=32), nullable=False),
    sa.Column('unit_price_fen', sa.Integer(), nullable=False),
    sa.Column('monthly_quota', sa.Integer(), nullable=False),
    sa.CheckConstraint('monthly_quota > 0', name=op.f('ck_programme_item_monthly_quota_positive')),
    sa.CheckConstraint('unit_price_fen > 0', name=op.f('ck_programme_item_unit_price_positive')),
    sa.ForeignKeyConstraint(['item_code'], ['service_item.code'], name=op.f('fk_programme_item_item_code_service_item')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_programme_item_programme_id_programme'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('programme_id', 'item_code', name=op.f('pk_programme_item'))
    )
    op.create_table('budget_amendment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('amount_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.CheckConstraint('amount_fen != 0', name=op.f('ck_budget_amendment_amount_not_zero')),
    sa.ForeignKeyConstraint(['created_by'], ['user_account.id'], name=op.f('fk_budget_amendment_created_by_user_account')),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entry.id'], name=op.f('fk_budget_amendment_entry_id_journal_entry')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_budget_amendment_programme_id_programme')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_budget_amendment')),
    sa.UniqueConstraint('entry_id', name=op.f('uq_budget_amendment_entry_id'))
    )
    with op.batch_alter_table('budget_amendment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_budget_amendment_programme_id'), ['programme_id'], unique=False)

    op.create_table('journal_line',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('account', sa.String(length=16), nullable=False),
    sa.Column('amount_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.CheckConstraint("account IN ('funding', 'available', 'committed', 'redeemed', 'settled')", name=op.f('ck_journal_line_account_known')),
    sa.CheckConstraint('amount_fen != 0', name=op.f('ck_journal_line_amount_not_zero')),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entry.id'], name=op.f('fk_journal_line_entry_id_journal_entry')),
    sa.ForeignKeyConstraint(['programme_id'], ['programme.id'], name=op.f('fk_journal_line_programme_id_programme')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journal_line'))
    )
    with op.batch_alter_table('journal_line', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_journal_line_entry_id'), ['entry_id'], unique=False)
        batch_op.create_index('ix_journal_line_programme_id_account', ['programme_id', 'account', 'kind'], unique=False)

    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_account_recipient_id'), ['recipient_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_user_account_recipient_id_recipient'), 'recipient', ['recipient_id'], ['id'])



def downgrade():
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_user_account_recipient_id_recipient'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_user_account_recipient_id'))

    with op.batch_alter_table('journal_line', schema=None) as batch_op:
        batch_op.drop_index('ix_journal_line_programme_id_account')
        batch_op.drop_index(batch_op.f('ix_journal_line_entry_id'))

    op.drop_table('journal_line')
    with op.batch_alter_table('budget_amendment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_budget_amendment_programme_id'))

    op.drop_table('budget_amendment')
    op.drop_table('programme_item')
    op.drop_table('programme_budget')
    with op.batch_alter_table('journal_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_journal_entry_reference')
        batch_op.drop_index(batch_op.f('ix_journal_entry_programme_id'))

    op.drop_table('journal_entry')
    with op.batch_alter_table('programme', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_programme_region_code'))

    op.drop_table('programme')
    op.drop_table('service_item')
    op.drop_table('recipient_tag')
    op.drop_table('service_category')
    with op.batch_alter_table('recipient', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recipient_region_code'))

    op.drop_table('recipient')
    op.drop_table('negative_list_rule')
