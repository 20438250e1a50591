"""Documents (văn bản đến/đi) and their processing history: core.documents, core.document_steps,
their history tables and triggers, and the lookups by old/new agency and of a document's steps.

Revision ID: 0009_documents
Revises: 0009_trust
Create Date: 2026-12-01

The SQL beside this file is frozen: it is what ``platform.dataset_ddl`` and
``platform.document_lookup_ddl`` produced for the documents datasets at this revision.
"""

from __future__ import annotations

from pathlib import Path

from sapnhap.migrations.helpers import execute_sql_file

revision = "0009_documents"
down_revision = "0009_trust"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_file(Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
