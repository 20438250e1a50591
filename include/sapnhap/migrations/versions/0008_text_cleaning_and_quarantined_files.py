"""Text cleaning counts on ops.batches, and ops.quarantined_files (files that cannot be read,
quarantined as a whole with a reason for their owner).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

From the schema-change blocks of branch ``input`` in ``platform.py``.
"""

from __future__ import annotations

from sapnhap.migrations.helpers import execute_sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql("""
-- rows whose text was cleaned / repaired (mojibake) in the batch
ALTER TABLE ops.batches ADD COLUMN IF NOT EXISTS text_cleaned integer NOT NULL DEFAULT 0;
ALTER TABLE ops.batches ADD COLUMN IF NOT EXISTS text_repaired integer NOT NULL DEFAULT 0;
-- files that cannot be read (export files, returned correction files),
-- quarantined as a whole with a reason for their owner; their content is never stored here.
CREATE TABLE IF NOT EXISTS ops.quarantined_files (
    source_id text NOT NULL,
    dataset text NOT NULL,
    kind text NOT NULL,
    file_name text NOT NULL,
    sha256 text NOT NULL,
    reason_vi text NOT NULL,
    fix_vi text,
    status text NOT NULL DEFAULT 'open',
    first_batch_id text NOT NULL,
    last_batch_id text NOT NULL,
    resolved_batch_id text,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, dataset, sha256)
);
CREATE INDEX IF NOT EXISTS quarantined_files_open ON ops.quarantined_files (source_id) WHERE status = 'open';
""")


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
