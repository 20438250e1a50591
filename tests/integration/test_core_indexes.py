"""Every index of a core table earns its cost on each load: no two cover the same columns."""

from __future__ import annotations

import psycopg
import pytest

pytestmark = pytest.mark.integration


def test_no_core_table_has_two_indexes_on_the_same_columns(platform_dsn: str) -> None:
    with psycopg.connect(platform_dsn) as conn:
        rows = conn.execute(
            """SELECT c.relname, array_agg(i.relname ORDER BY i.relname)
               FROM pg_index x
               JOIN pg_class c ON c.oid = x.indrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_class i ON i.oid = x.indexrelid
               WHERE n.nspname = 'core' AND x.indpred IS NULL
               GROUP BY c.relname, x.indkey::text
               HAVING count(*) > 1"""
        ).fetchall()
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'core'").fetchone()[0]
    assert tables > 0
    assert rows == []
