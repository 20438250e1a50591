"""ops.loaded_backups: the backup attempt each committed load came from (restore replays these).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

From the schema-change block of branch ``restore`` in ``platform.py``.
"""

from __future__ import annotations

from sapnhap.migrations.helpers import execute_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql("""
CREATE TABLE IF NOT EXISTS ops.loaded_backups (
    manifest_key text PRIMARY KEY,
    batch_id text NOT NULL,
    run_id text NOT NULL,
    source_id text NOT NULL,
    dataset text NOT NULL,
    status text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS loaded_backups_dataset ON ops.loaded_backups (dataset, source_id, loaded_at);
""")


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
