"""Source-vs-platform verification: prove the platform holds what each legacy system holds.

The nightly reads rows by cursor. Rows behind the committed cursor (a legacy system restored
from its own backup, re-imported, back-dated beyond ``cursor_lookback``) and rows deleted in
the legacy system are never seen by it. This module compares, per source and dataset, the
legacy system's keys and row hashes with the platform's, the way AWS DMS validates a migration:

- The *legacy row hash* is the md5 of the legacy row's text (the mapped columns and the primary
  key, sorted by name, each ``<length>:<text>`` or ``-`` for NULL), as the extract writes it to
  the raw backup. The transform stores it on every core row (``legacy_row_hash``).
- Rows are grouped into chunks by the md5 of their ``source_key`` (a range of that hash: the
  first hex digits). Chunk digests (row count, sum of row hashes) are computed inside the legacy
  database (PostgreSQL, MariaDB/MySQL) and inside the platform; only chunks that differ are
  split further, and only the smallest differing chunks are read row by row. A clean
  million-row table costs one aggregate query on each side. Hash ranges instead of key ranges:
  both databases order text by their own collations, the md5 of the key is the same everywhere.
- SQLite, SQL Server and Oracle (through the extract's SQLAlchemy Core path), Access files
  (through the extract's mdbtools reader), export files and legacy columns of types whose text
  cannot be reproduced in SQL exactly are streamed once and hashed in Python with the extract's
  own text conversion: the same driver and the same conversion make the hashes identical.

Outcomes per (source, dataset): *missing* (in the source; not in core, not quarantined, not a
merged duplicate), *extra* (in core, no longer in the source), *different* (row hash differs).
Rows loaded before the platform kept legacy row hashes count as *unhashed* and are re-synced
once. Missing and different keys go to ``ops.resync_keys``: the next extract reads them in addition
to its cursor window, so they pass transform, validation, backup and load like any row.
Extra rows are flagged ``deleted_in_source_at`` (history keeps the version before the flag);
nothing is deleted. Results: ``ops.verifications`` (counts) and ``ops.verification_rows``
(keys only, no personal data).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg import sql

from sapnhap import storage
from sapnhap.engines import declared_columns, dialect_name
from sapnhap.extract import (
    CHUNK_ROWS,
    ENGINE_NAMES,
    SESSION_SQL,
    SOURCE_FILE_COLUMN,
    ExtractResult,
    SourceSchemaError,
    SourceUnavailableError,
    extract_to_parquet,
    folder_of,
    is_schema_error,
    used_columns,
)
from sapnhap.extract import chunk_to_table as _chunk_to_table
from sapnhap.extract import frame_to_table as _frame_to_table
from sapnhap.extract import read_export as _read_export
from sapnhap.services import Services
from sapnhap.sources import DatasetMapping, Source, SourceConfigError

log = logging.getLogger(__name__)

FIRST_PREFIX = 2  # 256 chunks: one aggregate query on each side for a clean table
PREFIX_STEP = 2  # a differing chunk splits into 256
MAX_PREFIX = 8
FETCH_ROWS = 2_000  # differing chunks holding at most this many rows are compared row by row
MASS_DELETE_RATIO = 0.5  # more "deleted" rows than this share of the platform's: refuse to flag
# Raw column of a requeued record: the legacy row hash of the version it was quarantined from.
CARRIED_HASH_COLUMN = "_legacy_row_hash"
# The message of a never-loaded dataset whose legacy side could not even be counted.
NOT_COUNTED = "never loaded, and the source could not be read to count its rows"
HASH_DIGITS = 15  # 60 bits of each row hash are summed per chunk (fits a signed 64-bit integer)

# Legacy column types whose text the database can produce exactly as the extract writes it.
_PG_TEXT = {25, 1043, 19}  # text, varchar, name
_PG_INT = {20, 21, 23}  # int8, int2, int4
_PG_BOOL, _PG_DATE, _PG_TIMESTAMP, _PG_UUID = 16, 1082, 1114, 2950
_MY_TEXT = {15, 253, 254, 247, 248}  # varchar, var_string, string, enum, set
_MY_BLOB = {249, 250, 251, 252}  # tiny/medium/long/blob: TEXT columns unless the charset is binary
_MY_INT = {1, 2, 3, 8, 9, 13}  # tiny, short, long, longlong, int24, year
_MY_DATE, _MY_NEWDATE, _MY_DATETIME, _MY_TIMESTAMP = 10, 14, 12, 7
_MY_BINARY_CHARSET = 63


class VerificationError(RuntimeError):
    """One or more datasets of a source could not be verified; the message names them and why."""


# -- the legacy row hash ----------------------------------------------------------------------


def hash_columns(mapping: DatasetMapping) -> list[str]:
    """The legacy columns a row hash covers, in hash order: mapped columns and primary key, by name."""
    return sorted(used_columns(mapping))


def row_digest(values: Iterable[str | None]) -> str:
    """md5 (hex) of one legacy row's text values: each ``<length>:<text>``, or ``-`` for NULL."""
    text = "".join("-" if v is None else f"{len(v)}:{v}" for v in values)
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - a checksum, not a secret


def legacy_row_hashes(raw: pd.DataFrame, mapping: DatasetMapping) -> list[str]:
    """The legacy row hash of every row of a raw extract (the text the extract wrote).

    A requeued record (owner's correction, data team's decision) keeps the hash of the legacy
    row it was quarantined from (``CARRIED_HASH_COLUMN``): the platform has seen that legacy
    version and corrected it on purpose; a later change in the legacy system still shows.
    """
    # row_digest in Arrow: only the md5 itself runs per row in Python.
    parts = []
    for c in hash_columns(mapping):
        text = pa.array(raw[c].to_numpy(dtype=object), type=pa.string(), from_pandas=True)
        length = pc.utf8_length(text).cast(pa.string())
        parts.append(pc.fill_null(pc.binary_join_element_wise(length, text, ":"), "-"))
    if not parts or not len(raw):
        return [row_digest([]) for _ in range(len(raw))]
    rows = pc.binary_join_element_wise(*parts, "").cast(pa.binary()).to_pylist()
    hashes = [hashlib.md5(b).hexdigest() for b in rows]  # noqa: S324 - a checksum, not a secret
    if CARRIED_HASH_COLUMN in raw:
        carried = raw[CARRIED_HASH_COLUMN].astype("object").where(raw[CARRIED_HASH_COLUMN].notna(), None).tolist()
        hashes = [c or h for c, h in zip(carried, hashes, strict=True)]
    return hashes


def _key_text(values: Iterable[str | None]) -> str:
    """The platform's ``source_key``: primary key texts joined by '|', NULL as '' (as the transform does)."""
    return "|".join("" if v is None else v for v in values)


def _bucket(key: str, prefix: int) -> str:
    return hashlib.md5(key.encode("utf-8")).hexdigest()[:prefix]  # noqa: S324


def _hash_value(row_hash: str | None) -> int:
    return int((row_hash or "")[:HASH_DIGITS] or "0", 16)


Digests = dict[str, tuple[int, int]]


# -- the two sides ------------------------------------------------------------------------------


class _Side:
    """One side of the comparison: chunk digests and, for differing chunks, keys with row hashes."""

    method = "streamed"

    def __init__(self) -> None:
        self.queries = 0
        self.rows_read = 0

    def digests(self, prefix: int, within: list[str] | None) -> Digests:
        raise NotImplementedError

    def rows(self, prefix: int, buckets: list[str]) -> dict[str, str | None]:
        raise NotImplementedError

    def close(self) -> None:
        return None


class _Streamed(_Side):
    """Rows hashed in Python (SQLite, export files, types SQL cannot render as the extract does)."""

    def __init__(self, rows: dict[str, str], queries: int) -> None:
        super().__init__()
        self._rows = rows
        self.queries = queries
        self.rows_read = len(rows)

    def digests(self, prefix: int, within: list[str] | None) -> Digests:
        out: dict[str, list[int]] = {}
        allowed, width = (set(within), _within_len(within)) if within else (None, 0)
        for key, h in self._rows.items():
            b = _bucket(key, prefix)
            if allowed is not None and b[:width] not in allowed:
                continue
            acc = out.setdefault(b, [0, 0])
            acc[0] += 1
            acc[1] += _hash_value(h)
        return {b: (c, s) for b, (c, s) in out.items()}

    def rows(self, prefix: int, buckets: list[str]) -> dict[str, str | None]:
        wanted = set(buckets)
        return {k: h for k, h in self._rows.items() if _bucket(k, prefix) in wanted}


def _within_len(within: list[str] | None) -> int:
    return len(within[0]) if within else 0


class _PostgresLegacy(_Side):
    """Digests and row hashes computed by the legacy PostgreSQL server itself."""

    method = "in_database"

    def __init__(self, conn: psycopg.Connection, base: str, key_exprs: list[str], row_exprs: list[str]) -> None:
        super().__init__()
        self._conn = conn
        row = " || ".join(f"coalesce(length({e})::text || ':' || {e}, '-')" for e in row_exprs)
        key = " || '|' || ".join(f"coalesce({e}, '')" for e in key_exprs)
        self._inner = (
            f"SELECT {key} AS k, md5(convert_to({row}, 'UTF8')) AS h FROM ({base}) AS src"
        )

    @staticmethod
    def _bucket_sql(prefix: int) -> str:
        return f"substr(md5(convert_to(k, 'UTF8')), 1, {int(prefix)})"

    def digests(self, prefix: int, within: list[str] | None) -> Digests:
        where = f"WHERE {self._bucket_sql(_within_len(within))} = ANY(%s)" if within else ""
        q = (
            f"SELECT {self._bucket_sql(prefix)} AS b, count(*), "
            f"sum(('x' || lpad(substr(h, 1, {HASH_DIGITS}), 16, '0'))::bit(64)::bigint) "
            f"FROM ({self._inner}) AS r {where} GROUP BY 1"
        )
        self.queries += 1
        rows = self._conn.execute(q, [within] if within else []).fetchall()
        return {b: (int(c), int(s or 0)) for b, c, s in rows}

    def rows(self, prefix: int, buckets: list[str]) -> dict[str, str | None]:
        q = f"SELECT k, h FROM ({self._inner}) AS r WHERE {self._bucket_sql(prefix)} = ANY(%s)"
        self.queries += 1
        out = dict(self._conn.execute(q, [buckets]).fetchall())
        self.rows_read += len(out)
        return out

    def close(self) -> None:
        self._conn.close()


class _MysqlLegacy(_Side):
    """Digests and row hashes computed by the legacy MariaDB/MySQL server itself."""

    method = "in_database"

    def __init__(self, conn, base: str, key_exprs: list[str], row_exprs: list[str]) -> None:  # noqa: ANN001
        super().__init__()
        self._conn = conn
        texts = [f"CONVERT({e} USING utf8mb4)" for e in row_exprs]
        row = "CONCAT(" + ", ".join(f"COALESCE(CONCAT(CHAR_LENGTH({t}), ':', {t}), '-')" for t in texts) + ")"
        key = "CONCAT_WS('|', " + ", ".join(f"COALESCE(CONVERT({e} USING utf8mb4), '')" for e in key_exprs) + ")"
        self._inner = f"SELECT {key} AS k, MD5({row}) AS h FROM ({base}) AS src"

    @staticmethod
    def _bucket_sql(prefix: int) -> str:
        return f"SUBSTR(MD5(k), 1, {int(prefix)})"

    def _run(self, q: str, args: list) -> list[tuple]:
        self.queries += 1
        with self._conn.cursor() as cur:
            cur.execute(q, args)
            return list(cur.fetchall())

    def digests(self, prefix: int, within: list[str] | None) -> Digests:
        where = ""
        if within:
            where = f"WHERE {self._bucket_sql(_within_len(within))} IN ({', '.join(['%s'] * len(within))})"
        q = (
            f"SELECT {self._bucket_sql(prefix)} AS b, COUNT(*), "
            f"SUM(CAST(CONV(SUBSTR(h, 1, {HASH_DIGITS}), 16, 10) AS UNSIGNED)) "
            f"FROM ({self._inner}) AS r {where} GROUP BY b"
        )
        return {b: (int(c), int(s or 0)) for b, c, s in self._run(q, list(within or []))}

    def rows(self, prefix: int, buckets: list[str]) -> dict[str, str | None]:
        q = (
            f"SELECT k, h FROM ({self._inner}) AS r "
            f"WHERE {self._bucket_sql(prefix)} IN ({', '.join(['%s'] * len(buckets))})"
        )
        out = dict(self._run(q, list(buckets)))
        self.rows_read += len(out)
        return out

    def close(self) -> None:
        self._conn.close()


class _Platform(_Side):
    """The platform's side: live core rows of one source, with the legacy row hash the load kept."""

    method = "in_database"

    def __init__(self, conn: psycopg.Connection, source_id: str, dataset: str) -> None:
        super().__init__()
        self._conn = conn
        self._source_id = source_id
        self._table = sql.Identifier("core", dataset)

    @staticmethod
    def _bucket_sql(prefix: int) -> sql.Composable:
        return sql.SQL("substr(md5(convert_to(source_key, 'UTF8')), 1, {})").format(sql.Literal(int(prefix)))

    def digests(self, prefix: int, within: list[str] | None) -> Digests:
        where = sql.SQL("")
        params: list = [self._source_id]
        if within:
            where = sql.SQL("AND {} = ANY(%s)").format(self._bucket_sql(_within_len(within)))
            params.append(within)
        q = sql.SQL(
            "SELECT {b}, count(*), sum(('x' || lpad(substr(coalesce(legacy_row_hash, ''), 1, {d}), 16, '0'))"
            "::bit(64)::bigint) FROM {t} WHERE source_id = %s AND deleted_in_source_at IS NULL {w} GROUP BY 1"
        ).format(b=self._bucket_sql(prefix), d=sql.Literal(HASH_DIGITS), t=self._table, w=where)
        self.queries += 1
        return {b: (int(c), int(s or 0)) for b, c, s in self._conn.execute(q, params).fetchall()}

    def rows(self, prefix: int, buckets: list[str], *, deleted: bool = False) -> dict[str, str | None]:
        q = sql.SQL(
            "SELECT source_key, legacy_row_hash FROM {t} WHERE source_id = %s AND deleted_in_source_at IS {n} NULL"
            " AND {b} = ANY(%s)"
        ).format(t=self._table, n=sql.SQL("NOT" if deleted else ""), b=self._bucket_sql(prefix))
        self.queries += 1
        out = dict(self._conn.execute(q, [self._source_id, buckets]).fetchall())
        self.rows_read += len(out)
        return out


# -- opening the legacy side --------------------------------------------------------------------


def _base_query(mapping: DatasetMapping, quote: str) -> str:
    return mapping.query or f"SELECT * FROM {quote}{mapping.table}{quote}"


def _require_columns(source: Source, dataset: str, mapping: DatasetMapping, present: list[str]) -> None:
    missing = sorted(set(used_columns(mapping)) - set(present))
    if missing:
        raise SourceSchemaError(
            f"{source.id}/{dataset}: legacy columns missing from the source: {missing}. "
            f"Update columns: in {source.id}.yaml or fix the legacy system."
        )


def _hash_table(table: pa.Table, mapping: DatasetMapping, out: dict[str, str]) -> None:
    """Add key -> legacy row hash for every row of a table of legacy text (as the extract writes it)."""
    names = hash_columns(mapping)
    values = {c: table.column(c).to_pylist() for c in set(names) | set(mapping.primary_key)}
    for i in range(table.num_rows):
        out[_key_text(values[c][i] for c in mapping.primary_key)] = row_digest(values[c][i] for c in names)


def _stream_hashes(rows: Iterator[list[tuple]], columns: list[str], mapping: DatasetMapping) -> dict[str, str]:
    """key -> legacy row hash of streamed DB-API rows, converted to text as the extract converts them."""
    out: dict[str, str] = {}
    for chunk in rows:
        _hash_table(_chunk_to_table(columns, chunk), mapping, out)
    return out


def _fetch_chunks(cur) -> Iterator[list[tuple]]:  # noqa: ANN001 - DB-API cursor
    while True:
        rows = cur.fetchmany(CHUNK_ROWS)
        if not rows:
            return
        yield rows


def _pg_expr(col: str, type_oid: int) -> str | None:
    e = 'src."' + col.replace('"', '""') + '"'
    if type_oid in _PG_TEXT:
        return f"{e}::text"
    if type_oid in _PG_INT or type_oid == _PG_UUID:
        return f"{e}::text"
    if type_oid == _PG_BOOL:
        return f"CASE WHEN {e} THEN 'True' WHEN NOT {e} THEN 'False' END"
    if type_oid == _PG_DATE:
        return f"to_char({e}, 'YYYY-MM-DD')"
    if type_oid == _PG_TIMESTAMP:
        # datetime.isoformat(sep=" "): microseconds only when not zero.
        return (f"to_char({e}, 'YYYY-MM-DD HH24:MI:SS') || "
                f"CASE WHEN to_char({e}, 'US') = '000000' THEN '' ELSE '.' || to_char({e}, 'US') END")
    return None


def _mysql_expr(col: str, type_code: int, charsetnr: int | None) -> str | None:
    e = "src.`" + col.replace("`", "``") + "`"
    if type_code in _MY_TEXT or (type_code in _MY_BLOB and charsetnr not in (None, _MY_BINARY_CHARSET)):
        return None if charsetnr == _MY_BINARY_CHARSET else e
    if type_code in _MY_INT:
        return f"CAST({e} AS CHAR)"
    if type_code in (_MY_DATE, _MY_NEWDATE):
        return f"DATE_FORMAT({e}, '%%Y-%%m-%%d')"
    if type_code in (_MY_DATETIME, _MY_TIMESTAMP):
        return (f"CONCAT(DATE_FORMAT({e}, '%%Y-%%m-%%d %%H:%%i:%%s'), "
                f"IF(MICROSECOND({e}) = 0, '', CONCAT('.', DATE_FORMAT({e}, '%%f'))))")
    return None


def _connect_postgres(source: Source, uri: str) -> psycopg.Connection:
    try:
        conn = psycopg.connect(uri, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise SourceUnavailableError(f"{source.id}: cannot connect to legacy PostgreSQL: {exc}".strip()) from exc
    # One snapshot for every query of the verification, as the extract does.
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    return conn


def _connect_mysql(source: Source, uri: str):  # noqa: ANN202
    import pymysql

    p = urlparse(uri)
    try:
        conn = pymysql.connect(
            host=p.hostname or "127.0.0.1", port=p.port or 3306, user=unquote(p.username or "root"),
            password=unquote(p.password or ""), database=p.path.lstrip("/"), charset="utf8mb4", connect_timeout=10,
        )
    except pymysql.err.OperationalError as exc:
        raise SourceUnavailableError(f"{source.id}: cannot connect to legacy MySQL/MariaDB: {exc}") from exc
    with conn.cursor() as cur:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    return conn


def _open_postgres(source: Source, dataset: str, uri: str) -> _Side:
    mapping = source.datasets[dataset]
    base = _base_query(mapping, '"')
    conn = _connect_postgres(source, uri)
    try:
        desc = conn.execute(f"SELECT * FROM ({base}) AS src LIMIT 0").description or []
        types = {d.name: d.type_code for d in desc}
        _require_columns(source, dataset, mapping, list(types))
        exprs = {c: _pg_expr(c, types[c]) for c in used_columns(mapping)}
        if all(exprs.values()):
            return _PostgresLegacy(conn, base, [exprs[c] for c in mapping.primary_key],
                                   [exprs[c] for c in hash_columns(mapping)])
        cols = hash_columns(mapping)
        select = ", ".join('"' + c.replace('"', '""') + '"' for c in cols)
        with conn.cursor(name="sapnhap_verify") as cur:
            cur.itersize = CHUNK_ROWS
            cur.execute(f"SELECT {select} FROM ({base}) AS src")
            rows = _stream_hashes(_fetch_chunks(cur), cols, mapping)
        conn.close()
        return _Streamed(rows, queries=2)
    except BaseException:
        conn.close()
        raise


def _open_mysql(source: Source, dataset: str, uri: str) -> _Side:
    mapping = source.datasets[dataset]
    base = _base_query(mapping, "`")
    conn = _connect_mysql(source, uri)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM ({base}) AS src LIMIT 0")
            fields = getattr(getattr(cur, "_result", None), "fields", None) or []
            charsets = {f.name: f.charsetnr for f in fields}
            types = {d[0]: d[1] for d in cur.description or []}
        _require_columns(source, dataset, mapping, list(types))
        exprs = {c: _mysql_expr(c, types[c], charsets.get(c)) for c in used_columns(mapping)}
        if all(exprs.values()):
            return _MysqlLegacy(conn, base, [exprs[c] for c in mapping.primary_key],
                                [exprs[c] for c in hash_columns(mapping)])
        cols = hash_columns(mapping)
        import pymysql.cursors

        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute(f"SELECT {', '.join('`' + c + '`' for c in cols)} FROM ({base}) AS src")
            rows = _stream_hashes(_fetch_chunks(cur), cols, mapping)
        conn.close()
        return _Streamed(rows, queries=2)
    except BaseException:
        conn.close()
        raise


# -- SQLite, SQL Server, Oracle: the extract's SQLAlchemy Core path, hashed in Python ----------------


@dataclass(frozen=True)
class LegacyStatements:
    """What verification sends a legacy database through SQLAlchemy Core, compiled for its dialect.

    ``probe`` reads no row (the columns the source has), ``hashes`` streams the hashed columns of
    every row, ``rows`` every column of every row (the rows of keys queued for re-sync).
    """

    session: list[str]
    probe: str
    hashes: str
    rows: str
    statements: dict = field(repr=False, compare=False, default_factory=dict)


def legacy_statements(source: Source, dataset: str, dialect) -> LegacyStatements:  # noqa: ANN001 - sqlalchemy Dialect
    """The statements verification runs for ``dataset`` on ``dialect``: the extract's session, names
    quoted by the dialect (Oracle's as the DBA sees them, see :mod:`sapnhap.engines`), a ``query:``
    as a subquery whose text binds nothing."""
    import sqlalchemy as sa

    mapping = source.datasets[dataset]

    def columns() -> list:
        return [sa.column(dialect_name(dialect, c)) for c in hash_columns(mapping)]

    if mapping.query:
        text = sa.text(mapping.query.replace(":", "\\:"))  # colons are the query's text, never parameters
        whole, hashed, every = text.columns().subquery("src"), text.columns(*columns()).subquery("src"), text
    else:
        *schema, name = (mapping.table or "").split(".")
        owner = dialect_name(dialect, schema[0]) if schema else None
        whole = hashed = sa.table(dialect_name(dialect, name), *columns(), schema=owner)
        every = sa.select(sa.literal_column("*")).select_from(whole)
    statements = {
        "probe": sa.select(sa.literal_column("*")).select_from(whole).where(sa.text("1 = 0")),
        "hashes": sa.select(*hashed.c),
        "rows": every,
    }
    compiled = {k: str(v.compile(dialect=dialect)) for k, v in statements.items()}
    return LegacyStatements(list(SESSION_SQL.get(dialect.name, ())), compiled["probe"], compiled["hashes"],
                            compiled["rows"], statements)


@contextmanager
def _core_connection(source: Source, dataset: str, connection: str) -> Iterator:
    """A connection to the legacy database as the extract opens it (its engine, its session
    statements: one snapshot, read-only where the engine has it); driver errors named."""
    import sqlalchemy as sa

    from sapnhap import extract

    where = f"{source.id}/{dataset}"
    engine = extract.legacy_engine(source, connection, dataset)
    name = ENGINE_NAMES.get(source.kind, engine.dialect.name)
    try:
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as exc:
            raise SourceUnavailableError(f"{where}: cannot connect to legacy {name}: {str(exc.orig).strip()}") from exc
        with conn, conn.begin():
            for statement in SESSION_SQL.get(engine.dialect.name, ()):
                conn.exec_driver_sql(statement)
            yield conn
    except sa.exc.DBAPIError as exc:
        if is_schema_error(engine.dialect.name, exc):
            raise SourceSchemaError(
                f"{where}: the legacy server refused the verification query: {str(exc.orig).strip()}. "
                f"Check table/query and columns in {source.id}.yaml against the legacy system."
            ) from exc
        raise SourceUnavailableError(f"{where}: legacy {name} failed while being read: {str(exc.orig).strip()}") from exc
    finally:
        engine.dispose()


_STREAM = {"stream_results": True, "yield_per": CHUNK_ROWS}


def _open_core(source: Source, dataset: str, connection: str) -> _Side:
    """Stream the hashed columns through the extract's SQLAlchemy Core path; hash them in Python.

    SQL Server and Oracle: the hash must be the md5 of the UTF-8 text the extract writes, which
    their SQL cannot produce for every version and type (SQL Server hashes UTF-16 before 2019,
    Oracle's STANDARD_HASH the database character set, up to 4000 bytes); the same driver and the
    extract's own conversion (:func:`sapnhap.extract.chunk_to_table`) make the hashes identical
    by construction. SQLite is read the same way.
    """
    mapping = source.datasets[dataset]
    with _core_connection(source, dataset, connection) as conn:
        stmts = legacy_statements(source, dataset, conn.dialect)
        probe = conn.execute(stmts.statements["probe"])
        present = declared_columns(mapping, conn.dialect, probe.keys())
        probe.close()
        _require_columns(source, dataset, mapping, present)
        result = conn.execute(stmts.statements["hashes"], execution_options=_STREAM)
        rows = _stream_hashes((list(part) for part in result.partitions()), hash_columns(mapping), mapping)
    return _Streamed(rows, queries=2)


# -- Access files: the extract's reader (mdbtools) -------------------------------------------------------


@contextmanager
def _access_extract(source: Source, dataset: str, connection: str) -> Iterator[ExtractResult]:
    """The whole table as the extract reads it (mdbtools, the extract's text), in a temporary Parquet file."""
    with tempfile.TemporaryDirectory(prefix="sapnhap-verify-") as tmp:
        yield extract_to_parquet(source, dataset, connection, Path(tmp) / "access.parquet")


def _open_access(source: Source, dataset: str, connection: str) -> _Side:
    mapping = source.datasets[dataset]
    rows: dict[str, str] = {}
    with _access_extract(source, dataset, connection) as result:
        for batch in pq.ParquetFile(result.path).iter_batches(batch_size=CHUNK_ROWS, columns=hash_columns(mapping)):
            _hash_table(pa.Table.from_batches([batch]), mapping, rows)
    return _Streamed(rows, queries=1)


def _open_files(source: Source, dataset: str, connection: str) -> _Side:
    mapping = source.datasets[dataset]
    folder = folder_of(connection)
    if not folder.is_dir():
        raise SourceUnavailableError(f"{source.id}: export folder not found: {folder}")
    rows: dict[str, str] = {}
    files = sorted(p for p in folder.glob(mapping.file_pattern or "*") if p.is_file())
    for path in files:  # a later export of a key replaces an earlier one, as the nightly loads them
        frame = _read_export(path, mapping)
        _require_columns(source, dataset, mapping, list(frame.columns))
        _hash_table(_frame_to_table(frame.reindex(columns=hash_columns(mapping))), mapping, rows)
    return _Streamed(rows, queries=len(files))


def open_legacy(source: Source, dataset: str, connection: str) -> _Side:
    """The legacy side of ``source``/``dataset``: in-database digests where the types allow it."""
    opener = {"postgres": _open_postgres, "mysql": _open_mysql, "sqlite": _open_core, "mssql": _open_core,
              "oracle": _open_core, "access": _open_access, "files": _open_files}
    return opener[source.kind](source, dataset, connection)


# -- comparing ------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Keys found missing, extra or different, and what the comparison cost."""

    source_rows: int = 0
    platform_rows: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    # Loaded before the platform kept legacy row hashes: re-synced once to set the baseline.
    unhashed: list[str] = field(default_factory=list)
    accounted: int = 0  # in the source, quarantined or merged into another record: not missing
    reappeared: list[str] = field(default_factory=list)  # flagged deleted, back in the source
    chunks_compared: int = 0
    chunks_differing: int = 0


def _differing(a: Digests, b: Digests) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k, (0, 0)) != b.get(k, (0, 0)))


def compare(legacy: _Side, platform: _Platform, accounted_keys: dict[str, set[str | None]]) -> Comparison:
    """Compare chunk digests, descend only into differing chunks, classify the differing rows."""
    out = Comparison()
    prefix = FIRST_PREFIX
    src, plat = legacy.digests(prefix, None), platform.digests(prefix, None)
    out.source_rows = sum(c for c, _ in src.values())
    out.platform_rows = sum(c for c, _ in plat.values())
    out.chunks_compared = len(set(src) | set(plat))
    diff = _differing(src, plat)
    out.chunks_differing = len(diff)
    while diff:
        rows_in_diff = sum(src.get(b, (0, 0))[0] + plat.get(b, (0, 0))[0] for b in diff)
        if rows_in_diff <= FETCH_ROWS or prefix >= MAX_PREFIX:
            break
        prefix += PREFIX_STEP
        src, plat = legacy.digests(prefix, diff), platform.digests(prefix, diff)
        out.chunks_compared += len(set(src) | set(plat))
        diff = _differing(src, plat)
    if not diff:
        return out
    src_rows = legacy.rows(prefix, diff)
    plat_rows = platform.rows(prefix, diff)
    flagged = platform.rows(prefix, diff, deleted=True)
    for key, h in src_rows.items():
        if key in plat_rows:
            if plat_rows[key] is None:
                out.unhashed.append(key)
            elif plat_rows[key] != h:
                out.different.append(key)
        elif key in flagged:
            out.reappeared.append(key)
            if flagged[key] != h:
                out.different.append(key)
        elif key in accounted_keys:
            # Accounted for by the version the platform saw: a quarantined row fixed in place, or a
            # merged duplicate changed, behind the cursor, is a difference to re-sync like any row.
            versions = accounted_keys[key]
            if None in versions or h in versions:
                out.accounted += 1
            else:
                out.different.append(key)
        else:
            out.missing.append(key)
    out.extra = sorted(k for k in plat_rows if k not in src_rows)
    out.missing.sort()
    out.different.sort()
    return out


def _accounted_keys(conn: psycopg.Connection, source_id: str, dataset: str) -> dict[str, set[str | None]]:
    """Keys of the source that are not in core on purpose (open quarantine, merged duplicates), each
    with the legacy row hashes of the versions the platform saw (None: a version it kept no hash of)."""
    rows = conn.execute(
        """SELECT source_key, payload->>'legacy_row_hash' FROM ops.quarantine
           WHERE source_id = %s AND dataset = %s AND status = 'open'
           UNION SELECT source_key, legacy_row_hash FROM ops.merged_duplicates WHERE source_id = %s AND dataset = %s""",
        (source_id, dataset, source_id, dataset),
    ).fetchall()
    out: dict[str, set[str | None]] = {}
    for key, h in rows:
        out.setdefault(key, set()).add(h)
    return out


# -- one verification ----------------------------------------------------------------------------


@dataclass
class VerificationResult:
    """The outcome of verifying one dataset of one source (counts; keys are in ``ops``)."""

    verification_id: int
    run_id: str
    source_id: str
    dataset: str
    method: str
    status: str
    source_rows: int
    platform_rows: int
    missing: int
    extra: int
    different: int
    unhashed: int
    accounted: int
    flagged_deleted: int
    reappeared: int
    resync_requested: int
    legacy_queries: int
    platform_queries: int
    rows_read: int
    chunks_compared: int
    chunks_differing: int
    message: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _mark_keys(conn: psycopg.Connection, vid: int, source_id: str, dataset: str, outcome: str, keys: list[str]) -> None:
    if not keys:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO ops.verification_rows (verification_id, source_id, dataset, source_key, outcome)
               VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
            [(vid, source_id, dataset, k, outcome) for k in keys],
        )


def _flag_deleted(conn: psycopg.Connection, dataset: str, source_id: str, keys: list[str], *, deleted: bool) -> int:
    """Set or clear ``deleted_in_source_at``; the history trigger keeps the version before the change."""
    if not keys:
        return 0
    # valid_from moves with the flag: the history row closes the previous version at the same moment.
    q = sql.SQL(
        "UPDATE {t} SET deleted_in_source_at = {v}, valid_from = now() WHERE source_id = %s AND source_key = ANY(%s)"
        " AND deleted_in_source_at IS {n} NULL"
    ).format(t=sql.Identifier("core", dataset), v=sql.SQL("now()" if deleted else "NULL"),
             n=sql.SQL("" if deleted else "NOT"))
    return conn.execute(q, (source_id, keys)).rowcount


def _not_loaded(conn: psycopg.Connection, source: Source, dataset: str, connection: str,
                run_id: str) -> VerificationResult:
    """A dataset no batch ever loaded: nothing to compare row by row, but the source's rows are
    counted (one aggregate query). The first nightly reads every row; a dataset whose every batch
    is blocked holds rows the platform does not, and that must show (``source_rows``)."""
    vid = conn.execute(
        """INSERT INTO ops.verifications (run_id, source_id, dataset, status) VALUES (%s, %s, %s, 'running')
           RETURNING verification_id""",
        (run_id, source.id, dataset),
    ).fetchone()[0]
    conn.commit()
    legacy: _Side | None = None
    source_rows: int | None = None
    unreadable = None
    try:
        legacy = open_legacy(source, dataset, connection)
        source_rows = sum(c for c, _ in legacy.digests(FIRST_PREFIX, None).values())
    except (SourceUnavailableError, SourceSchemaError, psycopg.Error, OSError, ValueError) as exc:
        # Not an error of the verification: a dataset the legacy system does not have (yet) is
        # recorded as such; the nightly's extract says the same, loudly.
        unreadable = f"{NOT_COUNTED}: {exc}"[:2000]
    finally:
        if legacy is not None:
            legacy.close()
    blocked = conn.execute(
        "SELECT count(*) FROM ops.batches WHERE source_id = %s AND dataset = %s AND status = 'blocked'",
        (source.id, dataset),
    ).fetchone()[0]
    message = unreadable or (
        f"never loaded: {source_rows} rows in the source, none on the platform"
        + (f" ({blocked} batches blocked by their quality gate)" if blocked else "")
        + ("; the next nightly sync reads every row" if source_rows else ""))
    method = legacy.method if legacy is not None and unreadable is None else "none"
    queries = legacy.queries if legacy is not None else 0
    conn.execute(
        """UPDATE ops.verifications SET status = 'not_loaded', method = %s, source_rows = %s, platform_rows = 0,
               legacy_queries = %s, message = %s, finished_at = now() WHERE verification_id = %s""",
        (method, source_rows, queries, message, vid),
    )
    counts = {f.name: 0 for f in fields(VerificationResult) if f.type == "int" and f.name != "verification_id"}
    counts.update(source_rows=source_rows or 0, legacy_queries=queries,
                  rows_read=legacy.rows_read if legacy is not None else 0)
    log.info("verified %s/%s: never loaded, %s", source.id, dataset, message)
    return VerificationResult(verification_id=vid, run_id=run_id, source_id=source.id, dataset=dataset,
                              method=method, status="not_loaded", message=message, **counts)


DELETION_FLAGS_PREFIX = "deletions/"
DELETION_FLAGS_KIND = "sapnhap deletion flags"


def back_up_deletion_flags(services: Services, conn: psycopg.Connection, source_id: str, dataset: str, *,
                           verification_id: int, run_id: str) -> dict:
    """Back up every deletion flag of ``source_id``'s rows of ``dataset`` as they stand in this transaction.

    The flags are not in any batch's backup (verification sets them, not a load). Each verification
    writes the complete set (source key -> ``deleted_in_source_at``) as a signed, write-once JSON
    object under ``deletions/<source>/<dataset>/`` and lists it in ``ops.deletion_flag_backups``
    with its sha256 and the moment it was taken (under the source/dataset lock the load takes too,
    so it orders with the loads). A restore applies each in that order between the batches
    (:mod:`sapnhap.restore`). A full set, not the changes: flags set before this existed are
    backed up by the next verification, and one object says the whole state.
    """
    rows = conn.execute(
        sql.SQL("SELECT source_key, deleted_in_source_at FROM {} WHERE source_id = %s AND deleted_in_source_at IS NOT NULL"
                " ORDER BY source_key").format(sql.Identifier("core", dataset)),
        (source_id,),
    ).fetchall()
    taken_at = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    payload = {
        "kind": DELETION_FLAGS_KIND, "source_id": source_id, "dataset": dataset,
        "verification_id": verification_id, "run_id": run_id, "taken_at": taken_at.isoformat(),
        "flagged": {k: at.isoformat() for k, at in rows}, "complete": True,
    }
    signed = storage.sign_manifest(payload, services.signing_key)
    key = (f"{DELETION_FLAGS_PREFIX}{source_id}/{dataset}/"
           f"{verification_id}-{storage.new_attempt_id()}.json")
    stored = storage.put_json(services.s3, key, signed, once=True)
    storage.verify_object(services.s3, stored.as_dict())
    conn.execute(
        """INSERT INTO ops.deletion_flag_backups (object_key, verification_id, source_id, dataset, sha256, flagged, taken_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (key, verification_id, source_id, dataset, stored.sha256, len(rows), taken_at),
    )
    return {"key": key, "sha256": stored.sha256, "flagged": len(rows)}


def verify_dataset(
    services: Services,
    source: Source,
    dataset: str,
    connection: str,
    *,
    run_id: str,
    resync: bool = True,
    flag_deleted: bool = True,
    allow_mass_delete: bool = False,
) -> VerificationResult:
    """Verify one dataset of one source against the platform; store the result in ``ops``.

    Missing and different keys are queued for re-sync (``resync``); extra rows are flagged
    deleted (``flag_deleted``; database sources only: an export folder may hold only recent
    files). More extra rows than ``MASS_DELETE_RATIO`` of the platform's rows are reported but
    not flagged unless ``allow_mass_delete``: an empty or wrong legacy table must not mark a
    whole dataset deleted.
    """
    if dataset not in source.datasets:
        raise KeyError(f"{source.id} has no dataset {dataset!r}")
    with psycopg.connect(services.platform_dsn) as conn:
        loaded = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM ops.batches WHERE source_id = %s AND dataset = %s AND status = 'loaded')",
            (source.id, dataset),
        ).fetchone()[0]
        if not loaded:
            return _not_loaded(conn, source, dataset, connection, run_id)
        vid = conn.execute(
            """INSERT INTO ops.verifications (run_id, source_id, dataset, status) VALUES (%s, %s, %s, 'running')
               RETURNING verification_id""",
            (run_id, source.id, dataset),
        ).fetchone()[0]
    legacy: _Side | None = None
    try:
        with psycopg.connect(services.platform_dsn) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            # The platform's snapshot is taken before the legacy one: a row a nightly loads meanwhile
            # can then only look missing (and is re-read), never extra (and wrongly flagged deleted).
            accounted = _accounted_keys(conn, source.id, dataset)
            platform = _Platform(conn, source.id, dataset)
            legacy = open_legacy(source, dataset, connection)
            result = compare(legacy, platform, accounted)
    except Exception as exc:
        with psycopg.connect(services.platform_dsn) as conn:
            conn.execute(
                "UPDATE ops.verifications SET status = 'failed', message = %s, finished_at = now() WHERE verification_id = %s",
                (str(exc)[:2000], vid),
            )
        raise
    finally:
        if legacy is not None:
            legacy.close()

    message = None
    flag = flag_deleted and source.kind != "files"
    if flag and result.extra and not allow_mass_delete and len(result.extra) > MASS_DELETE_RATIO * max(result.platform_rows, 1):
        flag = False
        message = (f"{len(result.extra)} of {result.platform_rows} platform rows are not in the source: "
                   "not flagged deleted (more than the safety share); check the legacy connection, then "
                   "rerun with allow_mass_delete")
    resync_keys = sorted(set(result.missing) | set(result.different) | set(result.unhashed)) if resync else []
    try:
        with psycopg.connect(services.platform_dsn) as conn, conn.transaction():
            # The load's lock of this source/dataset: flags are never set in the middle of a batch's merge.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{source.id}/{dataset}",))
            flagged = _flag_deleted(conn, dataset, source.id, result.extra, deleted=True) if flag else 0
            reappeared = _flag_deleted(conn, dataset, source.id, result.reappeared, deleted=False)
            # Before the commit: flags the backups do not hold are never set.
            back_up_deletion_flags(services, conn, source.id, dataset, verification_id=vid, run_id=run_id)
            for outcome, keys in (("missing", result.missing), ("extra", result.extra), ("different", result.different)):
                _mark_keys(conn, vid, source.id, dataset, outcome, keys)
            if resync_keys:
                with conn.cursor() as cur:
                    cur.executemany(
                        """INSERT INTO ops.resync_keys (source_id, dataset, source_key, verification_id)
                           VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                        [(source.id, dataset, k, vid) for k in resync_keys],
                    )
            status = "ok" if not (result.missing or result.extra or result.different) else "differences"
            if status == "ok" and result.unhashed:
                status = "baseline"  # nothing differs that can be seen yet; the re-sync sets the hashes
            out = VerificationResult(
                verification_id=vid, run_id=run_id, source_id=source.id, dataset=dataset, method=legacy.method,
                status=status, source_rows=result.source_rows, platform_rows=result.platform_rows,
                missing=len(result.missing), extra=len(result.extra), different=len(result.different),
                unhashed=len(result.unhashed),
                accounted=result.accounted, flagged_deleted=flagged, reappeared=reappeared,
                resync_requested=len(resync_keys), legacy_queries=legacy.queries, platform_queries=platform.queries,
                rows_read=legacy.rows_read + platform.rows_read, chunks_compared=result.chunks_compared,
                chunks_differing=result.chunks_differing, message=message,
            )
            conn.execute(
                """UPDATE ops.verifications SET status = %s, method = %s, source_rows = %s, platform_rows = %s,
                       missing = %s, extra = %s, different = %s, unhashed = %s, accounted = %s, flagged_deleted = %s, reappeared = %s,
                       resync_requested = %s, legacy_queries = %s, platform_queries = %s, rows_read = %s,
                       chunks_compared = %s, chunks_differing = %s, message = %s, finished_at = now()
                   WHERE verification_id = %s""",
                (out.status, out.method, out.source_rows, out.platform_rows, out.missing, out.extra, out.different,
                 out.unhashed,
                 out.accounted, out.flagged_deleted, out.reappeared, out.resync_requested, out.legacy_queries,
                 out.platform_queries, out.rows_read, out.chunks_compared, out.chunks_differing, out.message, vid),
            )
    except Exception as exc:
        # Flags not backed up (the bucket unreachable), or the platform lost: nothing of it committed.
        with psycopg.connect(services.platform_dsn) as conn:
            conn.execute(
                "UPDATE ops.verifications SET status = 'failed', message = %s, finished_at = now() WHERE verification_id = %s",
                (f"{type(exc).__name__}: {exc}"[:2000], vid),
            )
        raise
    log.info(
        "verified %s/%s: %d source rows, %d platform rows, missing %d, extra %d, different %d, "
        "flagged deleted %d, re-sync %d (%s, %d legacy queries)",
        source.id, dataset, out.source_rows, out.platform_rows, out.missing, out.extra, out.different,
        out.flagged_deleted, out.resync_requested, out.method, out.legacy_queries,
    )
    return out


def verify_source(
    services: Services,
    source: Source,
    connection: str,
    *,
    run_id: str,
    datasets: list[str] | None = None,
    resync: bool = True,
    flag_deleted: bool = True,
    allow_mass_delete: bool = False,
) -> list[dict]:
    """Verify the datasets of one source (all, or those named); return one result dict per dataset.

    A dataset that cannot be verified (recorded as ``failed`` in ``ops.verifications``) does not
    stop the others; the error is raised once they are done.
    """
    chosen = [d for d in source.datasets if not datasets or d in datasets]
    results, failures = [], []
    for d in chosen:
        try:
            results.append(verify_dataset(services, source, d, connection, run_id=run_id, resync=resync,
                                          flag_deleted=flag_deleted, allow_mass_delete=allow_mass_delete).as_dict())
        except (SourceUnavailableError, SourceSchemaError, SourceConfigError, psycopg.Error,
                storage.BackupError) as exc:
            log.error("%s/%s: verification failed: %s", source.id, d, exc)
            failures.append(f"{d}: {exc}")
    if failures:
        raise VerificationError(f"{source.id}: verification failed for {len(failures)} dataset(s): {'; '.join(failures)}")
    return results


# -- re-sync through the nightly spine -------------------------------------------------------------


def pending_resync_keys(conn: psycopg.Connection, source_id: str, dataset: str) -> list[str]:
    """Keys queued for re-sync whose batch has not loaded yet (never read, or its batch failed)."""
    rows = conn.execute(
        """SELECT DISTINCT r.source_key FROM ops.resync_keys r
           WHERE r.source_id = %s AND r.dataset = %s
             AND NOT EXISTS (SELECT 1 FROM ops.batches b WHERE b.batch_id = r.batch_id AND b.status = 'loaded')
           ORDER BY 1""",
        (source_id, dataset),
    ).fetchall()
    return [r[0] for r in rows]


def _canonical_int(text: str) -> bool:
    """Whether ``text`` is an integer exactly as the extract writes one (so it can be compared as a number)."""
    try:
        return str(int(text)) == text
    except ValueError:
        return False


def _legacy_rows_by_key(source: Source, dataset: str, connection: str, keys: set[str]) -> tuple[list[str], list[tuple]]:
    """The legacy rows (all columns, as ``SELECT *``) whose source_key is in ``keys``."""
    mapping = source.datasets[dataset]
    pk = mapping.primary_key

    def pick(columns: list[str], chunks: Iterator[list[tuple]]) -> list[tuple]:
        idx = [columns.index(c) for c in pk]
        found = []
        for chunk in chunks:
            table = _chunk_to_table(columns, chunk)
            texts = [table.column(i).to_pylist() for i in idx]
            found += [row for row, *parts in zip(chunk, *texts, strict=True) if _key_text(parts) in keys]
        return found

    if source.kind == "postgres":
        conn = _connect_postgres(source, connection)
        try:
            base = _base_query(mapping, '"')
            desc = conn.execute(f"SELECT * FROM ({base}) AS src LIMIT 0").description or []
            types = {d.name: d.type_code for d in desc}
            exprs = [_pg_expr(c, types.get(c, 0)) for c in pk]
            with conn.cursor(name="sapnhap_resync") as cur:
                single = pk[0] if len(pk) == 1 else None
                column = 'src."' + (single or "").replace('"', '""') + '"'
                if single and types.get(single) in _PG_TEXT:
                    # The key column itself (not an expression of it): the legacy primary key index serves it.
                    cur.execute(f"SELECT src.* FROM ({base}) AS src WHERE {column} = ANY(%s)", [sorted(keys)])
                elif single and types.get(single) in _PG_INT and all(_canonical_int(k) for k in keys):
                    cur.execute(f"SELECT src.* FROM ({base}) AS src WHERE {column} = ANY(%s::bigint[])",
                                [sorted(int(k) for k in keys)])
                elif all(exprs):
                    key = " || '|' || ".join(f"coalesce({e}, '')" for e in exprs)
                    cur.execute(f"SELECT src.* FROM ({base}) AS src WHERE {key} = ANY(%s)", [sorted(keys)])
                else:
                    cur.execute(f"SELECT * FROM ({base}) AS src")
                rows = pick([d.name for d in cur.description], _fetch_chunks(cur))
                return [d.name for d in cur.description], rows
        finally:
            conn.close()
    if source.kind == "mysql":
        import pymysql.cursors

        conn = _connect_mysql(source, connection)
        base = _base_query(mapping, "`")
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM ({base}) AS src LIMIT 0")
                types = {d[0]: d[1] for d in cur.description or []}
            single = pk[0] if len(pk) == 1 else None
            by_column = single is not None and (
                types.get(single) in _MY_TEXT or (types.get(single) in _MY_INT and all(_canonical_int(k) for k in keys))
            )
            if by_column:
                # The key column itself (the legacy primary key index), in chunks of keys; the extract's
                # text of each row is still compared with the queued key by pick().
                column = "src.`" + str(single).replace("`", "``") + "`"
                ordered = sorted(keys)
                columns: list[str] = []
                found: list[tuple] = []
                with conn.cursor() as cur:
                    for start in range(0, len(ordered), 1000):
                        part = ordered[start:start + 1000]
                        cur.execute(f"SELECT * FROM ({base}) AS src WHERE {column} IN ({', '.join(['%s'] * len(part))})",
                                    part)
                        columns = [d[0] for d in cur.description]
                        found += pick(columns, iter([list(cur.fetchall())]))
                return columns or list(types), found
            with conn.cursor(pymysql.cursors.SSCursor) as cur:
                cur.execute(f"SELECT * FROM ({base}) AS src")
                columns = [d[0] for d in cur.description]
                return columns, pick(columns, _fetch_chunks(cur))
        finally:
            conn.close()
    if source.kind in ("sqlite", "mssql", "oracle"):
        # The extract's path; every row is read (no key column of known type to filter on) and picked.
        with _core_connection(source, dataset, connection) as conn:
            result = conn.execute(legacy_statements(source, dataset, conn.dialect).statements["rows"],
                                  execution_options=_STREAM)
            columns = declared_columns(mapping, conn.dialect, result.keys())
            return columns, [tuple(r) for r in pick(columns, (list(part) for part in result.partitions()))]
    if source.kind == "access":
        with _access_extract(source, dataset, connection) as result:
            columns, found = result.columns, []
            for batch in pq.ParquetFile(result.path).iter_batches(batch_size=CHUNK_ROWS):
                table = pa.Table.from_batches([batch])
                batch_keys = [_key_text(p) for p in zip(*(table.column(c).to_pylist() for c in pk), strict=True)]
                rows = zip(*(table.column(c).to_pylist() for c in columns), strict=True)
                found += [row for key, row in zip(batch_keys, rows, strict=True) if key in keys]
            return columns, found
    # Export files: every file of the folder is read again, the last export of a key wins.
    folder = folder_of(connection)
    if not folder.is_dir():
        raise SourceUnavailableError(f"{source.id}: export folder not found: {folder}")
    latest: dict[str, dict] = {}
    for path in sorted(p for p in folder.glob(mapping.file_pattern or "*") if p.is_file()):
        frame = _read_export(path, mapping)
        frame[SOURCE_FILE_COLUMN] = path.name
        table = _frame_to_table(frame)
        for row in table.to_pylist():
            key = _key_text(row.get(c) for c in pk)
            if key in keys:
                latest[key] = row
    columns = sorted({c for row in latest.values() for c in row})
    return columns, [tuple(row.get(c) for c in columns) for row in latest.values()]


def append_resync_rows(
    services: Services, source: Source, dataset: str, connection: str, raw_path: Path, batch_id: str
) -> int:
    """Append the legacy rows of pending re-sync keys to an extract's Parquet; return rows appended.

    Keys the cursor window already read are not read twice. Every pending key is marked with
    ``batch_id``; it stays pending until that batch loads. Export-file sources re-read every file
    in the folder for those keys (the last export of a key wins).
    """
    with psycopg.connect(services.platform_dsn) as conn:
        pending = pending_resync_keys(conn, source.id, dataset)
    if not pending:
        return 0
    mapping = source.datasets[dataset]
    table = pq.read_table(raw_path)
    have = table.select(mapping.primary_key).to_pylist() if table.num_rows else []
    already = {_key_text(r[c] for c in mapping.primary_key) for r in have}
    wanted = set(pending) - already
    appended = 0
    if wanted:
        columns, rows = _legacy_rows_by_key(source, dataset, connection, wanted)
        if rows:
            extra = _chunk_to_table(columns, rows)
            # Columns only one side has (an export file with an extra column) are kept, empty on the other.
            names = list(dict.fromkeys([*table.column_names, *extra.column_names]))

            def aligned(t: pa.Table) -> pa.Table:
                return pa.Table.from_arrays(
                    [t.column(n).cast(pa.string()) if n in t.column_names else pa.nulls(t.num_rows, pa.string())
                     for n in names], names=names)

            pq.write_table(pa.concat_tables([aligned(table), aligned(extra)]), raw_path, compression="zstd")
            appended = extra.num_rows
    with psycopg.connect(services.platform_dsn) as conn:
        conn.execute(
            """UPDATE ops.resync_keys r SET batch_id = %s, read_at = now()
               WHERE r.source_id = %s AND r.dataset = %s AND r.source_key = ANY(%s)
                 AND NOT EXISTS (SELECT 1 FROM ops.batches b WHERE b.batch_id = r.batch_id AND b.status = 'loaded')""",
            (batch_id, source.id, dataset, pending),
        )
    log.info("%s/%s: %d rows re-read for %d keys queued by verification", source.id, dataset, appended, len(pending))
    return appended


# -- what the owners' report shows -----------------------------------------------------------------


def verification_summary(conn: psycopg.Connection, source_ids: list[str]) -> list[dict]:
    """The latest finished verification of every dataset of these sources (counts, status, when).

    One dict per (source_id, dataset): ``source_rows``, ``platform_rows``, ``missing``, ``extra``,
    ``different``, ``flagged_deleted``, ``resync_requested``, ``status``, ``finished_at`` and a
    Vietnamese sentence ``summary_vi`` for the owners' report.
    """
    rows = conn.execute(
        """SELECT DISTINCT ON (source_id, dataset) source_id, dataset, status, source_rows, platform_rows,
                  missing, extra, different, flagged_deleted, resync_requested, finished_at, run_id
           FROM ops.verifications
           WHERE source_id = ANY(%s) AND finished_at IS NOT NULL
           ORDER BY source_id, dataset, finished_at DESC, verification_id DESC""",
        (list(source_ids),),
    ).fetchall()
    names = ["source_id", "dataset", "status", "source_rows", "platform_rows", "missing", "extra", "different",
             "flagged_deleted", "resync_requested", "finished_at", "run_id"]
    out = []
    for row in rows:
        item = dict(zip(names, row, strict=True))
        if item["status"] == "failed":
            item["summary_vi"] = "Không đối chiếu được với hệ thống cũ (xem nhật ký của nhóm dữ liệu)."
        elif item["status"] == "ok":
            item["summary_vi"] = f"Khớp hoàn toàn: {item['source_rows']} bản ghi ở hệ thống cũ đều có trên nền tảng."
        elif item["status"] == "not_loaded":
            item["summary_vi"] = "Chưa đối chiếu: bộ dữ liệu chưa được đồng bộ lần nào."
            if item["source_rows"]:
                item["summary_vi"] += f" Hệ thống cũ có {item['source_rows']} bản ghi, nền tảng chưa nạp bản ghi nào."
        elif item["status"] == "baseline":
            item["summary_vi"] = (
                f"Lần đối chiếu đầu tiên: {item['resync_requested']} bản ghi sẽ được đọc lại một lần "
                "trong lần chạy tới để lập dấu đối chiếu."
            )
        else:
            item["summary_vi"] = (
                f"Thiếu {item['missing']}, thừa {item['extra']} (đã đánh dấu đã xóa ở hệ thống cũ: "
                f"{item['flagged_deleted']}), khác nội dung {item['different']}; "
                f"{item['resync_requested']} bản ghi sẽ được đồng bộ lại trong lần chạy tới."
            )
        out.append(item)
    return out
