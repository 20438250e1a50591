"""Legacy names as each database engine's SQLAlchemy dialect spells them.

Oracle keeps an unquoted name (``MAMVB``, ``ma_mvb``) in upper case in its catalogue, and
SQLAlchemy's Oracle dialect reports such case-insensitive names in lower case (``mamvb``): a
source file written from what the DBA sees (``MAMVB``) would otherwise not match the rows read.
Here a name declared in a source file is taken as Oracle takes it: written in one case (all upper
or all lower), it is the case-insensitive name; in mixed case (``MaMvb``), a quoted,
case-sensitive one. Result columns are renamed back to the declared spelling, so the raw backup,
the transform and the verification all see the names the source file declares. Engines whose
dialect reports names as the catalogue holds them (PostgreSQL, MySQL/MariaDB, SQLite, SQL Server)
are left as they are.
"""

from __future__ import annotations

from collections.abc import Iterable

from sapnhap.sources import DatasetMapping


def _normalizes(dialect) -> bool:  # noqa: ANN001 - sqlalchemy Dialect
    return bool(getattr(dialect, "requires_name_normalize", False))


def catalogue_name(dialect, name: str) -> str:  # noqa: ANN001 - sqlalchemy Dialect
    """The name as the engine's catalogue holds it (what the DBA sees): Oracle upper-cases a one-case name."""
    if not _normalizes(dialect):
        return name
    return name.upper() if name in (name.lower(), name.upper()) else name


def dialect_name(dialect, name: str) -> str:  # noqa: ANN001 - sqlalchemy Dialect
    """A declared legacy name as the dialect spells it: in result columns, and in SQL it quotes when needed.

    ``MAMVB`` and ``mamvb`` are ``mamvb`` on Oracle (rendered unquoted: the upper-case name);
    ``MaMvb`` stays quoted; a name Oracle only takes quoted in lower case (``LEVEL``) stays upper.
    """
    if not _normalizes(dialect):
        return name
    return str(dialect.normalize_name(catalogue_name(dialect, name)))


def declared_names(mapping: DatasetMapping) -> list[str]:
    """The legacy names a dataset declares: mapped columns, primary key and cursor."""
    names = [*mapping.columns.values(), *mapping.primary_key, *([mapping.cursor] if mapping.cursor else [])]
    return list(dict.fromkeys(names))


def declared_columns(mapping: DatasetMapping, dialect, keys: Iterable[str]) -> list[str]:  # noqa: ANN001
    """Result column names (as the dialect reports them) renamed to the source file's spelling.

    Columns the source file does not name keep the dialect's spelling (lower case on Oracle).
    """
    keys = [str(k) for k in keys]
    if not _normalizes(dialect):
        return keys
    spelled = {dialect_name(dialect, n): n for n in declared_names(mapping)}
    return [spelled.get(k, k) for k in keys]
