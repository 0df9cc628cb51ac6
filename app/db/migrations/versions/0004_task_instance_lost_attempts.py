"""task instance lost attempts: attempts lost with their worker are counted apart from retries

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 10:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_instance") as batch:
        batch.add_column(
            sa.Column("lost_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("task_instance") as batch:
        batch.drop_column("lost_attempts")
