"""served bytes: the open-data service's ledger

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('served_bytes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('client', sa.String(length=255), nullable=False),
    sa.Column('dataset', sa.String(length=255), nullable=False),
    sa.Column('protocol', sa.String(length=32), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('requests', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('day', 'client', 'dataset', 'protocol',
                        name='uq_served_bytes_day_client_dataset_protocol')
    )
    with op.batch_alter_table('served_bytes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_served_bytes_client'), ['client'], unique=False)
        batch_op.create_index(batch_op.f('ix_served_bytes_day'), ['day'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('served_bytes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_served_bytes_day'))
        batch_op.drop_index(batch_op.f('ix_served_bytes_client'))

    op.drop_table('served_bytes')
