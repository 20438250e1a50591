"""What platform migrations use: run SQL as written, add a canonical column to a dataset.

Migrations are frozen: they act on the schema the database holds (its columns, read back),
never on what ``datasets.py`` says today.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import op
from psycopg import sql

from sapnhap.platform import history_function_sql, lookup_functions_sql


def _driver() -> psycopg.Connection:
    # The migration's own transaction; psycopg runs a parameterless script as written ($$, %, ::).
    return op.get_bind().connection.driver_connection


def execute_sql(script: str) -> None:
    """Run a SQL script (several statements) in the migration's transaction."""
    _driver().execute(script)


def execute_sql_file(path: Path) -> None:
    """Run a ``.sql`` file kept beside a migration."""
    execute_sql(path.read_text(encoding="utf-8"))


def table_columns(schema: str, table: str) -> list[str]:
    """Columns of a table in their order (the table's row type)."""
    rows = _driver().execute(
        """SELECT attname FROM pg_attribute
           WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum""",
        (f"{schema}.{table}",),
    ).fetchall()
    return [r[0] for r in rows]


def dataset_tables() -> list[str]:
    """The datasets the platform holds: tables in ``core`` with a ``history`` twin, by name."""
    rows = _driver().execute(
        """SELECT c.table_name FROM information_schema.tables c
           JOIN information_schema.tables h ON h.table_schema = 'history' AND h.table_name = c.table_name
           WHERE c.table_schema = 'core' AND c.table_type = 'BASE TABLE' ORDER BY 1"""
    ).fetchall()
    return [r[0] for r in rows]


# The column that places a record of each dataset in time (its business date), as of migration
# 0009: what "as of" means in the lookup functions. A dataset added later names its own.
RECORD_DATES = {"dossiers": "received_date", "residents": "registered_date", "households": "registered_date",
                "accounts": "created_date", "mail_directory": "created_date"}


def record_date_of(table: str) -> str | None:
    """The business-date column of ``core.<table>``: frozen above, else the dataset's declaration."""
    if table in RECORD_DATES:
        return RECORD_DATES[table]
    from sapnhap.datasets import DATASETS

    ds = DATASETS.get(table)
    return ds.record_date if ds is not None else None


def refresh_dataset_functions(table: str) -> None:
    """Recreate the history trigger function and the lookup functions of ``core.<table>``.

    Both list the table's columns: after a column is added they must be recreated, or history
    rows lose the column and the lookup functions no longer match the row type.
    """
    columns = table_columns("core", table)
    # Before 0009 the history trigger is a row trigger: the function keeps the shape its trigger calls.
    per_row = _driver().execute(
        "SELECT coalesce(bool_or(tgtype & 1 = 1), false) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = 'keep_history'",
        (f"core.{table}",),
    ).fetchone()[0]
    script = history_function_sql(table, columns, per_row=per_row)
    if "old_commune_code" in columns and "new_commune_code" in columns:
        script += lookup_functions_sql(table, columns, record_date_of(table))
    execute_sql(script)


def add_dataset_column(table: str, column: str, pg_type: str) -> None:
    """Add a canonical column to ``core.<table>`` and ``history.<table>`` (nullable), then refresh functions."""
    conn = _driver()
    for schema in ("core", "history"):
        conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
            sql.Identifier(schema, table), sql.Identifier(column), sql.SQL(pg_type)))
    refresh_dataset_functions(table)
