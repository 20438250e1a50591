"""ops.batch_leases (one lease per source and dataset, taken by the extract, released by the
load's commit) and an index of every dataset by (source_id, source_key) for the merge.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

From the schema-change blocks of branch ``keys`` in ``platform.py``.
"""

from __future__ import annotations

from sapnhap.migrations.helpers import dataset_tables, execute_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql("""
CREATE TABLE IF NOT EXISTS ops.batch_leases (
    source_id text NOT NULL,
    dataset text NOT NULL,
    run_id text NOT NULL,
    batch_id text NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (source_id, dataset)
);
""")
    for t in dataset_tables():
        execute_sql(f"CREATE INDEX IF NOT EXISTS {t}_record ON core.{t} (source_id, source_key);")


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
