"""ops.outbox (every owner email stored before it is sent, sent once) and ops.warnings (one row per
record and warn check of a batch).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

From the schema-change blocks of branch ``outbox`` in ``platform.py``.
"""

from __future__ import annotations

from sapnhap.migrations.helpers import execute_sql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_sql("""
-- every owner email is stored before it is sent, and sent once
CREATE TABLE IF NOT EXISTS ops.outbox (
    outbox_id bigserial PRIMARY KEY,
    kind text NOT NULL,
    dedup_key text NOT NULL UNIQUE,
    run_id text NOT NULL,
    recipient text NOT NULL,
    message_id text NOT NULL UNIQUE,
    subject text NOT NULL,
    message bytea,
    batch_ids text[] NOT NULL DEFAULT '{}',
    meta jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    sent_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_pending ON ops.outbox (created_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbox_recipient ON ops.outbox (kind, recipient);
-- one row per (record, warn check) of a batch; the record still loads
CREATE TABLE IF NOT EXISTS ops.warnings (
    warning_id bigserial PRIMARY KEY,
    batch_id text NOT NULL,
    source_id text NOT NULL,
    dataset text NOT NULL,
    source_key text NOT NULL,
    expectation text NOT NULL,
    column_name text,
    value_masked text,
    reason_vi text NOT NULL,
    fix_vi text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (batch_id, source_key, expectation, column_name)
);
CREATE INDEX IF NOT EXISTS warnings_source ON ops.warnings (source_id, dataset);
""")


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
