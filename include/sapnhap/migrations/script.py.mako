"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from sapnhap.migrations.helpers import execute_sql

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql("""
    """)


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
