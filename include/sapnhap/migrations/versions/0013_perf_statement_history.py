"""History kept by statement-level triggers (one INSERT per statement from its transition table,
not one per changed row), and ops.batches.data_docs_key (only a batch with failures has Data Docs).

Revision ID: 0009_perf
Revises: 0009_lead
Create Date: 2026-12-01

From the schema-change blocks of branch ``perf`` in ``platform.py``. History rows keep the same
content: the previous version of every updated or deleted row, valid until the statement's
transaction time, with the change ('update' / 'delete').
"""

from __future__ import annotations

from sapnhap.migrations.helpers import dataset_tables, execute_sql, table_columns
from sapnhap.platform import history_function_sql, history_triggers_sql

revision = "0009_perf"
down_revision = "0009_lead"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for t in dataset_tables():
        # The function first, then the triggers that call it, in the migration's one transaction.
        execute_sql(history_function_sql(t, table_columns("core", t)) + history_triggers_sql(t))
    execute_sql("""
ALTER TABLE ops.batches ADD COLUMN IF NOT EXISTS data_docs_key text;
-- Until now every backed-up batch had its Data Docs beside its manifest.
UPDATE ops.batches SET data_docs_key = regexp_replace(manifest_key, '[^/]*$', '') || 'data_docs/index.html'
WHERE manifest_key IS NOT NULL AND data_docs_key IS NULL;
""")


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
