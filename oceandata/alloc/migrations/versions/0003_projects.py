"""projects: members, user settings, storage usage, uploads, publish requests

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('project_members',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('allocation_id', sa.Integer(), nullable=False),
    sa.Column('user', sa.String(length=255), nullable=False),
    sa.Column('added_by', sa.String(length=255), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['allocation_id'], ['allocations.id']),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('allocation_id', 'user', name='uq_project_members_allocation_user')
    )
    with op.batch_alter_table('project_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_project_members_allocation_id'),
                              ['allocation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_project_members_user'), ['user'], unique=False)

    op.create_table('user_settings',
    sa.Column('user', sa.String(length=255), nullable=False),
    sa.Column('default_allocation_id', sa.Integer(), nullable=True),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['default_allocation_id'], ['allocations.id']),
    sa.PrimaryKeyConstraint('user')
    )

    op.create_table('storage_usage',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('allocation_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('peak_bytes', sa.BigInteger(), nullable=False),
    sa.Column('gb_days', sa.Float(), nullable=False),
    sa.Column('measured_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['allocation_id'], ['allocations.id']),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('allocation_id', 'day', name='uq_storage_usage_allocation_day')
    )
    with op.batch_alter_table('storage_usage', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_storage_usage_allocation_id'),
                              ['allocation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_storage_usage_day'), ['day'], unique=False)

    op.create_table('uploads',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('allocation_id', sa.Integer(), nullable=False),
    sa.Column('user', sa.String(length=255), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('received', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.Enum('OPEN', 'COMPLETE', 'ABORTED', name='uploadstate',
                               native_enum=False, length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['allocation_id'], ['allocations.id']),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_uploads_allocation_id'), ['allocation_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_uploads_user'), ['user'], unique=False)

    op.create_table('publish_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('allocation_id', sa.Integer(), nullable=False),
    sa.Column('entry', sa.String(length=255), nullable=False),
    sa.Column('requested_by', sa.String(length=255), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('licence', sa.String(length=100), nullable=False),
    sa.Column('citation', sa.Text(), nullable=False),
    sa.Column('authors', sa.JSON(), nullable=False),
    sa.Column('profile', sa.String(length=100), nullable=True),
    sa.Column('grade', sa.String(length=32), nullable=True),
    sa.Column('category', sa.String(length=100), nullable=True),
    sa.Column('compliance', sa.JSON(), nullable=True),
    sa.Column('snapshot', sa.String(length=64), nullable=True),
    sa.Column('status', sa.Enum('PENDING', 'APPROVED', 'DENIED', name='publishstate',
                                native_enum=False, length=16), nullable=False),
    sa.Column('decided_by', sa.String(length=255), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('changes', sa.JSON(), nullable=True),
    sa.Column('pid', sa.String(length=64), nullable=True),
    sa.Column('published_name', sa.String(length=255), nullable=True),
    sa.Column('tag', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['allocation_id'], ['allocations.id']),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('pid')
    )
    with op.batch_alter_table('publish_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_publish_requests_allocation_id'),
                              ['allocation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_publish_requests_status'), ['status'],
                              unique=False)


def downgrade() -> None:
    op.drop_table('publish_requests')
    op.drop_table('uploads')
    op.drop_table('storage_usage')
    op.drop_table('user_settings')
    op.drop_table('project_members')
