"""Every UPDATE or DELETE the code runs on ``ops`` is one the loader role is granted (sapnhap.platform).

The nightly, the accounts, verify and restore DAGs connect as the loader: a statement on a column
or table it may not change fails there (permission denied), while the tests, which connect as
the server's admin, would not notice. A table not granted here is append-only for the loader.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sapnhap.platform import LOADER_OPS_DELETES, LOADER_OPS_UPDATES

ROOT = Path(__file__).resolve().parents[2]
# The owner's code (migrations) and the demo's legacy systems are not the loader's.
SKIP = ("include/sapnhap/migrations/", "include/sapnhap_dev/demo/", "include/sapnhap/platform.py")

UPDATE_RE = re.compile(r"\bUPDATE\s+ops\.(\w+)(?:\s+(?!SET\b)\w+)?\s+SET\s+(.*?)(?=\bWHERE\b|\bRETURNING\b|$)",
                       re.IGNORECASE | re.DOTALL)
UPSERT_RE = re.compile(r"\bINSERT\s+INTO\s+ops\.(\w+).*?\bDO\s+UPDATE\s+SET\s+(.*?)(?=\bWHERE\b|\bRETURNING\b|$)",
                       re.IGNORECASE | re.DOTALL)
DELETE_RE = re.compile(r"\bDELETE\s+FROM\s+ops\.(\w+)", re.IGNORECASE)
ASSIGNED_RE = re.compile(r"(?:^|,)\s*(\w+)\s*=(?!=)")


def _sql_strings() -> list[tuple[str, str]]:
    """Every string literal (f-strings: their literal parts) of the code the DAGs run, with its file."""
    out = []
    files = [*(ROOT / "include" / "sapnhap").rglob("*.py"), *(ROOT / "dags").glob("*.py"),
             *(ROOT / "plugins").rglob("*.py")]
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(SKIP):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append((rel, node.value))
            elif isinstance(node, ast.JoinedStr):
                out.append((rel, "".join(v.value for v in node.values if isinstance(v, ast.Constant))))
    return out


def _assigned(set_clause: str) -> set[str]:
    # Strip string literals and nested parentheses so "concat_ws(' | ', a, b)" adds no column.
    text = re.sub(r"'[^']*'", "''", set_clause)
    while re.search(r"\([^()]*\)", text):
        text = re.sub(r"\([^()]*\)", "", text)
    return set(ASSIGNED_RE.findall(text))


def test_the_scan_sees_the_statements_it_checks() -> None:
    found = {t for _, s in _sql_strings() for t, _ in UPDATE_RE.findall(s)}
    assert {"batches", "runs", "quarantine"} <= found  # the scan is not silently empty
    assert _assigned("status = %s, message = concat_ws(' | ', message, %(why)s::text), attempts = attempts + 1") == {
        "status", "message", "attempts"}


def test_every_ops_update_and_delete_is_granted_to_the_loader() -> None:
    missing = []
    for rel, sql in _sql_strings():
        for table, set_clause in [*UPDATE_RE.findall(sql), *UPSERT_RE.findall(sql)]:
            cols = _assigned(set_clause) - set(LOADER_OPS_UPDATES.get(table, ()))
            if cols:
                missing.append(f"{rel}: UPDATE ops.{table} {sorted(cols)}")
        for table in DELETE_RE.findall(sql):
            if table not in LOADER_OPS_DELETES:
                missing.append(f"{rel}: DELETE FROM ops.{table}")
    assert missing == [], "grant these in sapnhap.platform (LOADER_OPS_UPDATES/DELETES), or keep the table append-only"
