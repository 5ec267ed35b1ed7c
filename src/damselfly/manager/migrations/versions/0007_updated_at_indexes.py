"""indexes on updated_at: the change feed looks for recent changes once a second

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_updated_at", "jobs", ["updated_at"])
    op.create_index("ix_media_tasks_updated_at", "media_tasks", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_media_tasks_updated_at", table_name="media_tasks")
    op.drop_index("ix_jobs_updated_at", table_name="jobs")
