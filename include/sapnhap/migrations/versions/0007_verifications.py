"""Source-vs-platform verification: ops.verifications, ops.verification_rows, ops.resync_keys, and
the lineage columns legacy_row_hash and deleted_in_source_at on every dataset (core and history),
and its index by (source_id, source_key).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

From the schema-change blocks of branch ``verify`` in ``platform.py``.
"""

from __future__ import annotations

from sapnhap.migrations.helpers import add_dataset_column, dataset_tables, execute_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql("""
CREATE TABLE IF NOT EXISTS ops.verifications (
    verification_id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    source_id text NOT NULL,
    dataset text NOT NULL,
    status text NOT NULL,
    method text,
    source_rows integer,
    platform_rows integer,
    missing integer,
    extra integer,
    different integer,
    unhashed integer,
    accounted integer,
    flagged_deleted integer,
    reappeared integer,
    resync_requested integer,
    legacy_queries integer,
    platform_queries integer,
    rows_read integer,
    chunks_compared integer,
    chunks_differing integer,
    message text,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS verifications_source ON ops.verifications (source_id, dataset, finished_at);
CREATE TABLE IF NOT EXISTS ops.verification_rows (
    verification_id bigint NOT NULL REFERENCES ops.verifications (verification_id),
    source_id text NOT NULL,
    dataset text NOT NULL,
    source_key text NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('missing', 'extra', 'different')),
    PRIMARY KEY (verification_id, source_key, outcome)
);
CREATE TABLE IF NOT EXISTS ops.resync_keys (
    source_id text NOT NULL,
    dataset text NOT NULL,
    source_key text NOT NULL,
    verification_id bigint NOT NULL REFERENCES ops.verifications (verification_id),
    requested_at timestamptz NOT NULL DEFAULT now(),
    batch_id text,
    read_at timestamptz,
    PRIMARY KEY (source_id, dataset, source_key, verification_id)
);
CREATE INDEX IF NOT EXISTS resync_keys_pending ON ops.resync_keys (source_id, dataset) WHERE batch_id IS NULL;
""")
    for t in dataset_tables():
        execute_sql(f"CREATE INDEX IF NOT EXISTS {t}_source_key ON core.{t} (source_id, source_key);")
        # Appended after the lineage columns, as platform.py lists them; history and the lookup
        # functions follow (add_dataset_column recreates them from the table's columns).
        add_dataset_column(t, "legacy_row_hash", "text")
        add_dataset_column(t, "deleted_in_source_at", "timestamptz")


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
