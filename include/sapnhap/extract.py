"""Extract: read new and changed rows from a legacy system into a Parquet file.

Every database goes through one path, SQLAlchemy Core (PostgreSQL, MySQL/MariaDB, SQLite, SQL
Server, Oracle): names quoted by the dialect, the cursor a bound parameter, the rows streamed
(server-side cursors, unbuffered MySQL cursors) chunk by chunk into Parquet row groups, so memory
does not grow with the size of the source. Access files stream through mdbtools, export files are
read whole per file. Values are kept as the legacy system's text: the raw backup is what the
source held, and parsing is the transform stage's job.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sqlite3
import subprocess
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sapnhap.engines import declared_columns
from sapnhap.sources import DatasetMapping, Source, SourceConfigError
from sapnhap.storage import sha256_file

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000
SOURCE_FILE_COLUMN = "_source_file"


class SourceUnavailableError(RuntimeError):
    """The legacy system cannot be reached or read; the message says which and why."""


class SourceSchemaError(ValueError):
    """The legacy table lacks columns the source file maps; the message lists them."""


@dataclass
class ExtractResult:
    """What one extract read: rows, the cursor range, the files consumed, the columns seen."""

    rows: int
    path: Path
    cursor_from: str | None
    cursor_to: str | None
    columns: list[str]
    files: list[dict[str, str]] = field(default_factory=list)
    unmapped_columns: list[str] = field(default_factory=list)
    # Export files that cannot be read: file_name, sha256, reason_vi, fix_vi (never their content).
    quarantined_files: list[dict[str, str]] = field(default_factory=list)


def _to_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and pd.isna(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "isoformat") and not isinstance(value, str):
        return value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat()
    return str(value)


def _timestamp_text(arr: pa.Array) -> pa.Array:
    """``datetime.isoformat(sep=" ")`` in Arrow: seconds always, microseconds only when not zero."""
    micros = arr.cast(pa.timestamp("us"))
    ints = pc.fill_null(micros.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    frac = np.mod(ints, 1_000_000)  # floor: before 1970 the fraction is still positive, as in Python
    seconds = pa.array((ints - frac) // 1_000_000, mask=pc.is_null(micros).to_numpy(zero_copy_only=False))
    text = pc.strftime(seconds.cast(pa.timestamp("s")), format="%Y-%m-%d %H:%M:%S")
    suffix = pc.if_else(pa.array(frac != 0), pc.utf8_lpad(pa.array(frac).cast(pa.string()), 6, "0"), "")
    suffix = pc.if_else(pc.equal(suffix, ""), "", pc.binary_join_element_wise(".", suffix, ""))
    return pc.binary_join_element_wise(text, suffix, "")


def _column_text(values: tuple) -> pa.Array:
    """One column of DB-API values as the legacy text (see :func:`_to_text`), converted in Arrow.

    Types whose Arrow text differs from Python's ``str()`` (floats, decimals, booleans, bytes,
    time zones, years outside 1000-9999) take the per-value path.
    """
    try:
        arr = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        arr = None
    if arr is not None:
        t = arr.type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t) or pa.types.is_null(t):
            return arr.cast(pa.string())
        if (pa.types.is_date32(t) or (pa.types.is_timestamp(t) and t.tz is None)) and arr.null_count < len(arr):
            years = pc.min_max(pc.year(arr))
            if 1000 <= years["min"].as_py() and years["max"].as_py() <= 9999:
                return arr.cast(pa.string()) if pa.types.is_date32(t) else _timestamp_text(arr)
    return pa.array([_to_text(v) for v in values], type=pa.string())


def chunk_to_table(columns: list[str], rows: list[tuple]) -> pa.Table:
    """DB-API rows as a table of legacy text: what the extract writes, and what verification hashes."""
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    return pa.Table.from_arrays([_column_text(col) for col in cols], names=columns)


def frame_to_table(frame: pd.DataFrame) -> pa.Table:
    """An export file's frame as a table of legacy text (as :func:`chunk_to_table` for database rows)."""
    frame = frame.astype(object).where(frame.notna(), None)
    arrays = [pa.array([_to_text(v) for v in frame[c]], type=pa.string()) for c in frame.columns]
    return pa.Table.from_arrays(arrays, names=[str(c) for c in frame.columns])


def _write_chunks(chunks: Iterator[pa.Table], path: Path, columns: list[str]) -> int:
    schema = pa.schema([(c, pa.string()) for c in columns])
    rows = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for table in chunks:
            if table.num_rows:
                writer.write_table(table.select(columns).cast(schema))
                rows += table.num_rows
        if rows == 0:
            writer.write_table(schema.empty_table())
    return rows


# A plain identifier, optionally schema-qualified: letters (any script), digits, _ and $.
_IDENTIFIER_RE = re.compile(r"[^\W\d]\w*(?:\.[^\W\d]\w*)?")

# The engine each kind names in messages, and its default SQLAlchemy driver.
ENGINE_NAMES = {"postgres": "PostgreSQL", "mysql": "MySQL/MariaDB", "sqlite": "SQLite", "mssql": "SQL Server",
                "oracle": "Oracle"}
_DRIVERS = {"postgres": "postgresql+psycopg", "mysql": "mysql+pymysql", "sqlite": "sqlite+pysqlite",
            "mssql": "mssql+pymssql", "oracle": "oracle+oracledb"}
_BACKENDS = {"postgres": {"postgresql", "postgres"}, "mysql": {"mysql", "mariadb"}, "sqlite": {"sqlite"},
             "mssql": {"mssql"}, "oracle": {"oracle"}}

# Run first in the extract's transaction, per dialect: one snapshot, and no write possible where the
# engine has a read-only transaction. SQL Server has none: its login is granted db_datareader only,
# and text dates read year-month-day whatever the login's language. Oracle compares the text cursor
# with DATE/TIMESTAMP columns through the session's formats, set here to the extract's own.
SESSION_SQL: dict[str, tuple[str, ...]] = {
    "postgresql": ("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY",),
    "mysql": ("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",),
    "mariadb": ("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",),
    "sqlite": (),  # read-only by the driver: the file is opened mode=ro
    "mssql": ("SET DATEFORMAT ymd",),
    "oracle": (
        "ALTER SESSION SET NLS_DATE_FORMAT = 'YYYY-MM-DD HH24:MI:SS'",
        "ALTER SESSION SET NLS_TIMESTAMP_FORMAT = 'YYYY-MM-DD HH24:MI:SS.FF'",
        "SET TRANSACTION READ ONLY",
    ),
}
# The drivers' own paramstyles (SQLAlchemy reads them from the driver, which need not be installed to compile).
_PARAMSTYLES = {"pymssql": "pyformat", "oracledb": "named", "pymysql": "format", "psycopg": "pyformat", "pysqlite": "qmark"}
# Seconds to wait for the legacy server to answer a connection, per driver.
_CONNECT_TIMEOUT = {"pymysql": {"connect_timeout": 10}, "pymssql": {"login_timeout": 10},
                    "oracledb": {"tcp_connect_timeout": 10}}


@dataclass(frozen=True)
class ExtractStatements:
    """What the extract sends a legacy database: session statements, then one select and its bound values."""

    session: list[str]
    select: str
    params: dict[str, object]
    statement: object = field(repr=False, compare=False, default=None)  # the Core statement executed


def _plain_name(source: Source, dataset: str, field_name: str, name: str) -> list[str]:
    """The parts of a plain (schema.)name; anything else is refused, naming the file and field.

    A source file is input too: a name the extract cannot quote as one identifier would let it
    run any SQL on the legacy server.
    """
    if not _IDENTIFIER_RE.fullmatch(name.replace("$", "_")):
        raise SourceConfigError(
            f"{source.id}.yaml: datasets.{dataset}.{field_name} must be a plain (schema.)name of the legacy "
            "database (letters, digits, _); use query: for anything else"
        )
    return name.split(".")


def _sqlite_path(connection: str) -> str:
    """The file of a SQLite source: a path, or ``sqlite://`` + the path (as the Airflow connection gives it)."""
    if not connection.startswith("sqlite"):
        return connection
    rest = unquote(connection.split("://", 1)[1]) if "://" in connection else ""
    return rest[1:] if rest.startswith("//") else rest


def legacy_url(source: Source, connection: str):  # noqa: ANN201 - sqlalchemy.URL, imported lazily
    """The SQLAlchemy URL of a legacy database connection; the kind's driver unless the URL names one.

    PostgreSQL also takes a libpq keyword DSN, SQLite a file path: their URL then only names the dialect.
    """
    import sqlalchemy as sa

    kind = source.kind
    if kind not in _DRIVERS:
        raise ValueError(f"{source.id}: kind {kind!r} is not a database")
    if kind == "sqlite" or (kind == "postgres" and "://" not in connection):
        return sa.make_url(f"{_DRIVERS[kind]}://")
    try:
        url = sa.make_url(connection)
    except sa.exc.ArgumentError as exc:
        raise SourceConfigError(f"{source.id}: connection {source.conn_id} is not a database URL: {exc}") from None
    backend = url.get_backend_name()
    if backend not in _BACKENDS[kind]:
        raise SourceConfigError(
            f"{source.id}: connection {source.conn_id} is a {backend} URL but the source file declares kind {kind}; "
            f"fix kind: in {source.id}.yaml or the connection"
        )
    if kind == "postgres":
        url = url.set(drivername=_DRIVERS[kind])  # psycopg connects (see legacy_engine), whatever the URL names
    elif "+" not in url.drivername:
        url = url.set(drivername=f"{backend}+{_DRIVERS[kind].split('+')[1]}")
    if kind == "mysql" and "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})
    return url


def legacy_dialect(source: Source, connection: str):  # noqa: ANN201 - sqlalchemy Dialect
    """The SQLAlchemy dialect of a legacy connection, without connecting (nor importing its driver)."""
    url = legacy_url(source, connection)
    return url.get_dialect()(paramstyle=_PARAMSTYLES.get(url.get_driver_name()))


def legacy_engine(source: Source, connection: str, dataset: str | None = None):  # noqa: ANN201 - sqlalchemy.Engine
    """An engine for one extract: no pool kept, connection time-outs, SQLite opened read-only by the driver."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    url = legacy_url(source, connection)
    if source.kind == "sqlite":
        path = Path(_sqlite_path(connection))
        if not path.exists():
            where = f"{source.id}/{dataset}" if dataset else source.id
            raise SourceUnavailableError(f"{where}: SQLite file not found: {path}")
        # Read-only by the driver: the extract can never write to the legacy file.
        target = path.resolve().as_uri() + "?mode=ro"
        return sa.create_engine(url, poolclass=NullPool, creator=lambda: sqlite3.connect(target, uri=True))
    if source.kind == "postgres":
        import psycopg

        from sapnhap.services import postgres_dsn_from_url

        dsn = postgres_dsn_from_url(connection) if "://" in connection else connection
        return sa.create_engine(url, poolclass=NullPool, creator=lambda: psycopg.connect(dsn, connect_timeout=10))
    return sa.create_engine(url, poolclass=NullPool, connect_args=_CONNECT_TIMEOUT.get(url.get_driver_name(), {}))


def extract_statements(source: Source, dataset: str, dialect, cursor_value: str | None) -> ExtractStatements:  # noqa: ANN001
    """The statements the extract runs for ``dataset`` on ``dialect`` (SQLAlchemy), compiled.

    Names are quoted by the dialect's own rules (SQLAlchemy Core), the cursor value is a bound
    parameter, a ``query:`` is a subquery whose text binds nothing. The select is ordered by the
    cursor, and reads from it inclusively: rows sharing the last cursor value are never skipped,
    and the load merges the re-read ones, so re-reading doubles nothing.
    """
    import sqlalchemy as sa

    mapping = source.datasets[dataset]
    cursor = _plain_name(source, dataset, "cursor", mapping.cursor)[0] if mapping.cursor else None
    if mapping.query:
        # Colons are text in a legacy query (casts, times), never parameters.
        text = sa.text(mapping.query.replace(":", "\\:"))
        origin = text.columns(sa.column(cursor)).subquery("src") if cursor else None
    else:
        *schema, name = _plain_name(source, dataset, "table", mapping.table or "")
        origin = sa.table(name, *([sa.column(cursor)] if cursor else []), schema=schema[0] if schema else None)
    stmt = text if origin is None else sa.select(sa.literal_column("*")).select_from(origin)
    if cursor is not None:
        col = origin.c[cursor]
        if cursor_value is not None:
            # Bound untyped: the server compares it as the cursor column's own type.
            stmt = stmt.where(col >= sa.bindparam("cursor_from", cursor_value, type_=sa.types.NullType()))
        stmt = stmt.order_by(col)
    compiled = stmt.compile(dialect=dialect)
    session = list(SESSION_SQL.get(dialect.name, ()))
    return ExtractStatements(session, str(compiled), dict(compiled.params), stmt)


def _check_columns(source: Source, dataset: str, mapping: DatasetMapping, columns: list[str]) -> list[str]:
    missing = sorted({v for v in [*mapping.columns.values(), *mapping.primary_key] if v not in columns})
    if missing:
        raise SourceSchemaError(
            f"{source.id}/{dataset}: legacy columns missing from the source: {missing}; "
            f"columns present: {columns}. Update columns: in {source.id}.yaml (renamed or dropped "
            "column) or fix the legacy export."
        )
    return _unmapped(mapping, columns)


def used_columns(mapping: DatasetMapping) -> set[str]:
    """Legacy columns the source file uses: mapped ones and the primary key."""
    return set(mapping.columns.values()) | set(mapping.primary_key)


def _unmapped(mapping: DatasetMapping, columns: list[str]) -> list[str]:
    """Legacy columns the source file does not use (kept in the raw backup and reported)."""
    return sorted(set(columns) - used_columns(mapping) - {SOURCE_FILE_COLUMN})


def is_schema_error(dialect_name: str, exc: Exception) -> bool:
    """Whether the legacy server refused the extract's select because a table or column is not there."""
    import sqlalchemy as sa

    orig = getattr(exc, "orig", exc)
    if isinstance(exc, sa.exc.ProgrammingError):
        return True
    if dialect_name == "sqlite":
        return isinstance(exc, sa.exc.OperationalError)  # no such table / column
    if dialect_name == "mssql":
        return bool(orig.args) and orig.args[0] in (207, 208)  # invalid column / object name
    if dialect_name == "oracle":
        return any(code in str(orig) for code in ("ORA-00942", "ORA-00904"))
    return False


def _stream_db(source: Source, dataset: str, uri: str, cursor_value: str | None, out: Path, chunk: int):
    """Open the legacy database, run the extract query and write Parquet; returns (rows, columns, last cursor).

    One path for every engine (SQLAlchemy Core): rows are streamed (``yield_per``: a server-side
    cursor on PostgreSQL and Oracle, an unbuffered cursor on MySQL/MariaDB) chunk by chunk into
    Parquet row groups. Driver errors other than 'cannot connect' and 'not in the legacy schema'
    are raised as the driver's own.
    """
    import sqlalchemy as sa

    where = f"{source.id}/{dataset}"
    engine = legacy_engine(source, uri, dataset)
    statements = extract_statements(source, dataset, engine.dialect, cursor_value)
    try:
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as exc:
            raise SourceUnavailableError(
                f"{where}: cannot connect to legacy {ENGINE_NAMES[source.kind]}: {str(exc.orig).strip()}"
            ) from exc
        with conn, conn.begin():
            try:
                for sql in statements.session:
                    conn.exec_driver_sql(sql)
                result = conn.execute(statements.statement, execution_options={"stream_results": True, "yield_per": chunk})
            except sa.exc.DBAPIError as exc:
                if is_schema_error(engine.dialect.name, exc):
                    # A table or column the source file names is not on the legacy server (renamed, dropped, no grant).
                    raise SourceSchemaError(
                        f"{where}: the legacy server refused the extract query: {str(exc.orig).strip()}. "
                        f"Check table/query and columns in {source.id}.yaml against the legacy system."
                    ) from exc
                raise exc.orig from exc
            try:
                return _consume(source, dataset, result, out, chunk)
            except sa.exc.DBAPIError as exc:
                raise exc.orig from exc
    finally:
        engine.dispose()


def _consume(source: Source, dataset: str, result, out: Path, chunk: int) -> tuple[int, list[str], str | None, list[str]]:  # noqa: ANN001
    mapping = source.datasets[dataset]
    columns = declared_columns(mapping, result.context.dialect, result.keys())  # Oracle: MAMVB or mamvb
    unmapped = _check_columns(source, dataset, mapping, columns)
    last: dict[str, str | None] = {"cursor": None}
    cursor_idx = columns.index(mapping.cursor) if mapping.cursor else None

    def tables() -> Iterator[pa.Table]:
        for rows in result.partitions(chunk):
            if cursor_idx is not None:
                last["cursor"] = _to_text(rows[-1][cursor_idx])
            yield chunk_to_table(columns, rows)

    rows = _write_chunks(tables(), out, columns)
    return rows, columns, last["cursor"], unmapped


# mdbtools (Debian's package; `make install` installs it): the reader of Access files. It reads
# Jet 3 (Access 97) to ACE (.accdb) files, Access's compressed Unicode text included.
ACCESS_TOOLS = ("mdb-tables", "mdb-export", "mdb-json")


def _mdbtool(where: str, name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SourceUnavailableError(
            f"{where}: {name} not found: Access files are read with mdbtools (apt-get install mdbtools; make install does)"
        )
    return found


def _access_tables(where: str, path: Path) -> list[str]:
    proc = subprocess.run([_mdbtool(where, "mdb-tables"), "-1", str(path)], capture_output=True, timeout=300,
                          check=False)
    if proc.returncode != 0:
        raise SourceUnavailableError(
            f"{where}: {path.name} is not an Access file mdbtools can open "
            f"({proc.stderr.decode('utf-8', 'replace').strip()}); send the .mdb/.accdb file again"
        )
    return [line for line in proc.stdout.decode("utf-8").splitlines() if line]


def _access_columns(where: str, path: Path, table: str) -> list[str]:
    """The table's column names, in order: mdb-export's header line (the rows it would write are not read)."""
    cmd = [_mdbtool(where, "mdb-export"), "-d", "\x1f", str(path), table]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        header = proc.stdout.readline()
        proc.kill()
    return header.decode("utf-8").rstrip("\r\n").split("\x1f")


def _stream_access(source: Source, dataset: str, connection: str, cursor_value: str | None, out: Path, chunk: int):
    """Read one table of an Access file with mdbtools, streamed row by row into Parquet row groups.

    ``mdb-json`` writes one JSON object per row (numbers as numbers, dates as ISO text, NULL
    columns left out), so values reach :func:`chunk_to_table` as a database driver's would. An
    Access file has no query engine here: the cursor is applied while streaming (rows from it on),
    and the rows keep the file's order.
    """
    mapping = source.datasets[dataset]
    where = f"{source.id}/{dataset}"
    if mapping.query or not mapping.table:
        raise SourceConfigError(
            f"{source.id}.yaml: datasets.{dataset}.query: an Access source reads a table: give table: "
            "(the file's saved queries are not run)"
        )
    path = folder_of(connection)
    if not path.is_file():
        raise SourceUnavailableError(f"{where}: Access file not found: {path}")
    tables = _access_tables(where, path)
    if mapping.table not in tables:
        raise SourceSchemaError(
            f"{where}: the Access file has no table {mapping.table!r}; its tables: {tables}. "
            f"Check table: in {source.id}.yaml against the file."
        )
    columns = _access_columns(where, path, mapping.table)
    unmapped = _check_columns(source, dataset, mapping, columns)
    cmd = [_mdbtool(where, "mdb-json"), "-D", "%Y-%m-%d", "-T", "%Y-%m-%d %H:%M:%S", str(path), mapping.table]
    last: dict[str, str | None] = {"cursor": None}

    def tables_of(lines: Iterator[bytes]) -> Iterator[pa.Table]:
        batch: list[tuple] = []
        for line in lines:
            record = json.loads(line)
            if mapping.cursor is not None:
                value = _to_text(record.get(mapping.cursor))
                if cursor_value is not None and (value is None or later_cursor(value, cursor_value) != value):
                    continue
                last["cursor"] = later_cursor(last["cursor"], value)
            batch.append(tuple(record.get(c) for c in columns))
            if len(batch) >= chunk:
                yield chunk_to_table(columns, batch)
                batch = []
        if batch:
            yield chunk_to_table(columns, batch)

    with tempfile.TemporaryFile() as errors:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors) as proc:
            try:
                rows = _write_chunks(tables_of(proc.stdout), out, columns)
            finally:
                proc.stdout.close()
        if proc.returncode != 0:
            errors.seek(0)
            raise SourceUnavailableError(
                f"{where}: mdbtools could not read table {mapping.table!r} of {path.name}: "
                f"{errors.read().decode('utf-8', 'replace').strip()}"
            )
    return rows, columns, last["cursor"], unmapped


def read_export(path: Path, mapping: DatasetMapping) -> pd.DataFrame:
    """One export file (CSV in the declared encoding, or Excel), every value as text, headers NFC."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        frame = pd.read_excel(path, sheet_name=mapping.sheet or 0, dtype=str, engine="openpyxl")
    else:
        frame = pd.read_csv(path, dtype=str, encoding=mapping.encoding, keep_default_na=False, na_values=[""])
    # Headers written by tools that emit decomposed Unicode must still match the source file's names.
    frame.columns = [unicodedata.normalize("NFC", str(c)).strip() for c in frame.columns]
    return frame


def _unreadable_reason(exc: Exception, path: Path, source: Source, mapping: DatasetMapping) -> tuple[str, str]:
    """(reason_vi, fix_vi) for an export file the reader refused; from the error's type, never its text."""
    yaml_name = f"{source.id}.yaml"
    if isinstance(exc, UnicodeError | LookupError):
        return (
            f"Tệp không đọc được theo bảng mã {mapping.encoding} đã khai báo.",
            f"Lưu lại tệp theo bảng mã {mapping.encoding} (thường là UTF-8), hoặc khai báo encoding: đúng trong {yaml_name}.",
        )
    if isinstance(exc, pd.errors.EmptyDataError):
        return "Tệp rỗng, không có dữ liệu.", "Xuất lại tệp từ hệ thống cũ."
    if isinstance(exc, pd.errors.ParserError):
        return (
            "Tệp CSV sai cấu trúc: số cột không đều giữa các dòng (thường do dấu phẩy hoặc xuống dòng trong giá trị).",
            "Xuất lại tệp với các giá trị có dấu phẩy được đặt trong dấu ngoặc kép.",
        )
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        sheet = f" hoặc không có trang tính {mapping.sheet}" if mapping.sheet else ""
        return f"Tệp Excel không mở được{sheet}.", "Lưu lại tệp bằng Excel (định dạng .xlsx) và gửi lại."
    return f"Tệp không đọc được ({type(exc).__name__}).", "Xuất lại tệp từ hệ thống cũ và gửi lại."


def _columns_problem(source: Source, mapping: DatasetMapping, columns: list[str]) -> tuple[str, str] | None:
    """(reason_vi, fix_vi) when a file lacks the legacy columns the source file maps, else None.

    The header is not quoted: a file without one has a data row in its place.
    """
    needed = sorted(used_columns(mapping))
    missing = [c for c in needed if c not in columns]
    if not missing:
        return None
    if len(missing) == len(needed) and len(columns) == 1 and any(sep in columns[0] for sep in ";\t|"):
        return (
            "Tệp dùng dấu chấm phẩy, tab hoặc | để phân cách cột; hệ thống chỉ đọc tệp CSV phân cách bằng dấu phẩy.",
            "Xuất lại tệp dạng CSV phân cách bằng dấu phẩy (UTF-8).",
        )
    if len(missing) == len(needed):
        return (
            "Tệp không có dòng tiêu đề (tên cột) đúng như cấu hình: không tìm thấy cột nào cần dùng.",
            f"Xuất lại tệp với dòng đầu tiên là tên cột: {', '.join(needed)}.",
        )
    return (
        f"Tệp thiếu các cột: {', '.join(missing)}.",
        f"Xuất lại tệp có đủ các cột, hoặc cập nhật columns: trong {source.id}.yaml nếu hệ thống cũ đã đổi tên cột.",
    )


def _confined(folder: Path, pattern: str, source: Source, dataset: str) -> list[Path]:
    """The files ``pattern`` matches, all inside ``folder``; a pattern reaching out is a settings error."""
    if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
        raise SourceConfigError(
            f"{source.id}.yaml: datasets.{dataset}.file_pattern must be a pattern inside the connection's folder "
            "(no absolute path, no '..')"
        )
    root = folder.resolve()
    matched = sorted(p for p in folder.glob(pattern) if p.is_file())
    outside = [p for p in matched if not p.resolve().is_relative_to(root)]
    if outside:
        raise SourceConfigError(
            f"{source.id}.yaml: datasets.{dataset}.file_pattern matches {len(outside)} file(s) outside the "
            "connection's folder (a link pointing out); only files inside it are read"
        )
    return matched


def _stream_files(
    source: Source, dataset: str, folder: Path, seen_sha256: set[str], out: Path
) -> tuple[int, list[str], list[dict[str, str]], list[str], list[dict[str, str]]]:
    mapping = source.datasets[dataset]
    if not folder.is_dir():
        raise SourceUnavailableError(f"{source.id}: export folder not found: {folder}")
    files = _confined(folder, mapping.file_pattern or "*", source, dataset)
    new_files: list[dict[str, str]] = []
    quarantined: list[dict[str, str]] = []
    frames: list[pd.DataFrame] = []
    for path in files:
        sha = sha256_file(path)
        if sha in seen_sha256:
            continue
        try:
            frame = read_export(path, mapping)
        except OSError:
            raise  # the share is unreachable: the source waits, its files are not judged
        except Exception as exc:  # noqa: BLE001 - any unreadable file is quarantined, the others load
            problem: tuple[str, str] | None = _unreadable_reason(exc, path, source, mapping)
        else:
            problem = _columns_problem(source, mapping, list(frame.columns))
        if problem is not None:
            # Only the file name and the reason: the content may be personal data.
            log.warning("%s/%s: file %s quarantined: %s", source.id, dataset, path.name, problem[0])
            quarantined.append({"file_name": path.name, "sha256": sha, "reason_vi": problem[0], "fix_vi": problem[1]})
            continue
        frame[SOURCE_FILE_COLUMN] = path.name
        frames.append(frame)
        new_files.append({"file_name": path.name, "sha256": sha, "rows": str(len(frame))})
    columns = sorted({c for f in frames for c in f.columns}) or sorted(used_columns(mapping) | {SOURCE_FILE_COLUMN})
    unmapped = _unmapped(mapping, columns)
    tables = (frame_to_table(f.reindex(columns=columns)) for f in frames)
    rows = _write_chunks(tables, out, columns)
    return rows, columns, new_files, unmapped, quarantined


def extract_to_parquet(
    source: Source,
    dataset: str,
    connection: str,
    out: Path,
    *,
    cursor_value: str | None = None,
    seen_file_sha256: set[str] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ExtractResult:
    """Extract one dataset of one source into ``out`` (Parquet, all columns as text).

    ``connection`` is a database URI, or for ``files`` sources a folder path or the JSON of an
    Airflow ``fs`` connection. Raises :class:`SourceUnavailableError` when the source cannot be
    reached and :class:`SourceSchemaError` when mapped columns are missing.
    """
    if dataset not in source.datasets:
        raise KeyError(f"{source.id} has no dataset {dataset!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if source.kind == "files":
        folder = folder_of(connection)
        rows, columns, files, unmapped, quarantined = _stream_files(source, dataset, folder, seen_file_sha256 or set(), out)
        return ExtractResult(rows, out, None, None, columns, files, unmapped, quarantined)
    mapping = source.datasets[dataset]
    read_from = lookback_cursor(cursor_value, mapping.cursor_lookback)
    stream = _stream_access if source.kind == "access" else _stream_db
    rows, columns, last, unmapped = stream(source, dataset, connection, read_from, out, chunk_rows)
    # The committed cursor never moves back, even when only the look-back window had rows.
    return ExtractResult(rows, out, cursor_value, later_cursor(last, cursor_value), columns, [], unmapped)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _as_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def lookback_cursor(cursor_value: str | None, lookback: str | None) -> str | None:
    """The lower bound to read from: the committed cursor minus the source's ``cursor_lookback``.

    Timestamp cursors (ISO text, as extracted) move back by a duration; numeric cursors by a number.
    """
    if cursor_value is None or not lookback:
        return cursor_value
    amount, unit = (int(lookback[:-1]), lookback[-1]) if lookback[-1] in _UNITS else (int(lookback), None)
    number = _as_number(cursor_value)
    if number is not None and unit is None:
        return str(int(number - amount)) if number.is_integer() else str(number - amount)
    try:
        stamp = datetime.fromisoformat(cursor_value)
    except ValueError:
        raise SourceSchemaError(
            f"cursor_lookback {lookback!r} needs an ISO date/time or numeric cursor; the committed cursor is "
            f"{cursor_value!r}. Remove cursor_lookback or use a timestamp cursor column."
        ) from None
    earlier = stamp - timedelta(seconds=amount * _UNITS[unit or "s"])
    return earlier.isoformat(sep=" ") if " " in cursor_value or "T" in cursor_value else earlier.date().isoformat()


def later_cursor(a: str | None, b: str | None) -> str | None:
    """The later of two cursor values (numeric or ISO text compare as such)."""
    if a is None or b is None:
        return a if b is None else b
    na, nb = _as_number(a), _as_number(b)
    if na is not None and nb is not None:
        return a if na >= nb else b
    try:
        return a if datetime.fromisoformat(a) >= datetime.fromisoformat(b) else b
    except (ValueError, TypeError):
        return max(a, b)


def folder_of(connection: str) -> Path:
    """The folder of a ``files`` source: a plain path, ``file://`` URL or Airflow fs-connection JSON."""
    text = connection.strip()
    if text.startswith("{"):
        body = json.loads(text)
        extra = body.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra)
        return Path(extra.get("path") or body.get("host") or "")
    if text.startswith("file://"):
        return Path(urlparse(text).path)
    return Path(text)
