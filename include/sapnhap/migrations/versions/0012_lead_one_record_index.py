"""One index per core table on (source_id, source_key): verification's ``<table>_source_key``
(0007) duplicated the merge's ``<table>_record`` (0006); every load paid for both.

Revision ID: 0009_lead
Revises: 0009_documents
Create Date: 2026-12-01
"""

from __future__ import annotations

from sapnhap.migrations.helpers import dataset_tables, execute_sql

revision = "0009_lead"
down_revision = "0009_documents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for t in dataset_tables():
        execute_sql(f"DROP INDEX IF EXISTS core.{t}_source_key;")


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
