"""Schema accounts (re-mapped accounts, roles, mail forwarding), until now created by the accounts DAG.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from pathlib import Path

from sapnhap.migrations.helpers import execute_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_file(Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
