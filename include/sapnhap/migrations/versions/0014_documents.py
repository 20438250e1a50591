"""Classified documents and the published agency crosswalk: ``core.v_documents`` and
``history.v_documents`` (the summary masked by security level unless the reader is cleared), the
document lookups through them, and ``registry.agency_crosswalk_versions``, ``agency_crosswalk``,
``agency_remaps`` (a new crosswalk re-maps the loaded documents once).

Revision ID: 0010_documents
Revises: 0009_perf
Create Date: 2026-12-01

The SQL beside this file is frozen: it is what ``documents.documents_access_ddl`` produced at this
revision. The column privileges (the summary only for ``sapnhap_document_reader``) are granted by
``platform.ensure_roles`` after every migration.
"""

from __future__ import annotations

from pathlib import Path

from sapnhap.migrations.helpers import execute_sql_file

revision = "0010_documents"
down_revision = "0009_perf"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql_file(Path(__file__).with_suffix(".sql"))


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
