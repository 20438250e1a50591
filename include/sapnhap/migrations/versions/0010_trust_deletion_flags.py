"""ops.deletion_flag_backups: the signed, write-once object in which each verification backed up
the deletion flags (``deleted_in_source_at``) of one source's dataset; a restore applies them.
ops.merged_duplicates.legacy_row_hash: the version of the legacy row that was merged, so
verification accounts for a merged key only while its legacy row is still that version.

Revision ID: 0009_trust
Revises: 0009_ui
Create Date: 2026-12-01

From the schema-change block of branch ``trust`` in ``platform.py``.
"""

from __future__ import annotations

from sapnhap.migrations.helpers import execute_sql

revision = "0009_trust"
down_revision = "0009_ui"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql("""
CREATE TABLE IF NOT EXISTS ops.deletion_flag_backups (
    object_key text PRIMARY KEY,
    verification_id bigint NOT NULL REFERENCES ops.verifications (verification_id),
    source_id text NOT NULL,
    dataset text NOT NULL,
    sha256 text NOT NULL,
    flagged integer NOT NULL,
    taken_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS deletion_flag_backups_dataset ON ops.deletion_flag_backups (dataset, source_id, taken_at);
ALTER TABLE ops.merged_duplicates ADD COLUMN IF NOT EXISTS legacy_row_hash text;
""")


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
