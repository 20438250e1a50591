"""Report indicators and portal content (issue 14): core.indicator_values, core.portal_pages, their
history tables and statement-level history triggers, and their lookups by old/new unit.

Revision ID: 0010_estate
Revises: 0009_perf
Create Date: 2026-12-01

The SQL beside this file is frozen: it is what ``platform.dataset_ddl`` and ``platform.lookup_ddl``
produced for the two datasets at this revision.
"""

from __future__ import annotations

from pathlib import Path

from sapnhap.migrations.helpers import execute_sql_file

revision = "0010_estate"
down_revision = "0010_documents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_file(Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
