"""The platform schema of release 0.1.0, frozen (schemas registry, core, history, ops).

Revision ID: 0001
Revises:
Create Date: 2026-12-01

Written with ``IF NOT EXISTS`` throughout: a platform created by release 0.1.0's
``ensure_platform`` (before migrations) upgrades in place.
"""

from __future__ import annotations

from pathlib import Path

from sapnhap.migrations.helpers import execute_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_file(Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
