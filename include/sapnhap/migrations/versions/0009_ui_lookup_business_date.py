"""The lookup functions answer "as of" by the record's business date; ``known_at`` keeps the load-time view.

Revision ID: 0009_ui
Revises: 0008
Create Date: 2026-12-01

``core.find_<t>_by_old_unit(code, as_of)`` (and ``_by_new_unit``, ``_by_old_unit_name``) used to
return what the platform held at the end of ``as_of``: the README's own example,
``find_residents_by_old_unit('02494', '2024-12-31')``, found nothing on a platform loaded in 2026.
Now ``as_of`` selects the records that existed then by their business date (registered,
received, created), and a third argument ``known_at`` picks the version the platform held at
that moment (default: the current rows). The two-argument functions are dropped (see ``lookup_functions_sql``).
"""

from __future__ import annotations

from sapnhap.migrations.helpers import dataset_tables, refresh_dataset_functions, table_columns

revision = "0009_ui"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in dataset_tables():
        columns = table_columns("core", table)
        if "old_commune_code" in columns and "new_commune_code" in columns:
            refresh_dataset_functions(table)


def downgrade() -> None:
    raise NotImplementedError("the platform is not migrated down: restore it from the backups (docs/backup-restore.md)")
