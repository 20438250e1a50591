"""The audit trail is append-only for the loader: reconciliation and handover records of an open
run are recorded again only through two SECURITY DEFINER functions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from pathlib import Path

from sapnhap.migrations.helpers import execute_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_file(Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
