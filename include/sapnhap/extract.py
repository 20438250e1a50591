"""Extract: read new and changed rows from a legacy system into a Parquet file.

Rows are streamed in chunks (server-side cursors, unbuffered MySQL cursors, chunked CSV) and
written as Parquet row groups, so memory does not grow with the size of the source. Values are
kept as the legacy system's text: the raw backup is what the source held, and parsing is the
transform stage's job.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
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


def _chunk_to_table(columns: list[str], rows: list[tuple]) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    return pa.Table.from_arrays([_column_text(col) for col in cols], names=columns)


def _frame_to_table(frame: pd.DataFrame) -> pa.Table:
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


def _quoted(source: Source, dataset: str, field_name: str, name: str) -> str:
    """``name`` quoted by the dialect's own quoting (SQLAlchemy); anything but a plain identifier is refused.

    A source file is input too: an unquoted or hand-quoted name would let it run any SQL on the
    legacy server.
    """
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    if not _IDENTIFIER_RE.fullmatch(name.replace("$", "_")):
        raise SourceConfigError(
            f"{source.id}.yaml: datasets.{dataset}.{field_name} must be a plain (schema.)name of the legacy "
            "database (letters, digits, _); use query: for anything else"
        )
    dialect = {"postgres": postgresql, "mysql": mysql, "sqlite": sqlite}[source.kind].dialect()
    return ".".join(dialect.identifier_preparer.quote_identifier(part) for part in name.split("."))


def _select_sql(source: Source, dataset: str, cursor_value: str | None, param: str) -> tuple[str, list]:
    mapping = source.datasets[dataset]
    base = mapping.query or f"SELECT * FROM {_quoted(source, dataset, 'table', mapping.table or '')}"
    if mapping.cursor is None:
        return base, []
    col = _quoted(source, dataset, "cursor", mapping.cursor)
    sql = f"SELECT * FROM ({base}) AS src"
    params: list = []
    if cursor_value is not None:
        # Inclusive: the boundary is re-read so rows sharing the last cursor value are never skipped;
        # the load merges them, so re-reading doubles nothing.
        sql += f" WHERE {col} >= {param}"
        params.append(cursor_value)
    sql += f" ORDER BY {col}"
    return sql, params


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


def _db_rows(cur, fetch: int) -> Iterator[list[tuple]]:  # noqa: ANN001 - DB-API cursor
    while True:
        rows = cur.fetchmany(fetch)
        if not rows:
            return
        yield rows


def _stream_db(source: Source, dataset: str, uri: str, cursor_value: str | None, out: Path, chunk: int):
    """Open the legacy database, run the extract query and write Parquet; returns (rows, columns, last cursor)."""
    if source.kind == "postgres":
        import psycopg

        sql, params = _select_sql(source, dataset, cursor_value, "%s")
        try:
            conn = psycopg.connect(uri, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise SourceUnavailableError(f"{source.id}: cannot connect to legacy PostgreSQL: {exc}".strip()) from exc
        with conn, conn.transaction():
            # Repeatable read: one snapshot for the whole extract, so the cursor range is consistent.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            with conn.cursor(name="sapnhap_extract") as cur:
                cur.itersize = chunk
                cur.execute(sql, params)
                return _consume(source, dataset, cur, chunk, out, lambda d: d.name)
    if source.kind == "mysql":
        import pymysql
        import pymysql.cursors

        sql, params = _select_sql(source, dataset, cursor_value, "%s")
        p = urlparse(uri)
        try:
            conn = pymysql.connect(
                host=p.hostname or "127.0.0.1",
                port=p.port or 3306,
                user=unquote(p.username or "root"),
                password=unquote(p.password or ""),
                database=p.path.lstrip("/"),
                charset="utf8mb4",
                cursorclass=pymysql.cursors.SSCursor,
                connect_timeout=10,
            )
        except pymysql.err.OperationalError as exc:
            raise SourceUnavailableError(f"{source.id}: cannot connect to legacy MySQL/MariaDB: {exc}") from exc
        try:
            with conn.cursor() as cur:
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                cur.execute(sql, params)
                return _consume(source, dataset, cur, chunk, out, lambda d: d[0])
        finally:
            conn.close()
    if source.kind == "sqlite":
        path = unquote(urlparse(uri).path) if uri.startswith("sqlite:") else uri
        if not Path(path).exists():
            raise SourceUnavailableError(f"{source.id}: SQLite file not found: {path}")
        sql, params = _select_sql(source, dataset, cursor_value, "?")
        # Read-only by the driver: the extract can never write to the legacy file.
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
        try:
            cur = conn.execute(sql, params)
            return _consume(source, dataset, cur, chunk, out, lambda d: d[0])
        finally:
            conn.close()
    raise ValueError(f"{source.id}: kind {source.kind!r} is not a database")


def _consume(source: Source, dataset: str, cur, chunk: int, out: Path, name_of) -> tuple[int, list[str], str | None, list[str]]:  # noqa: ANN001
    mapping = source.datasets[dataset]
    columns = [name_of(d) for d in cur.description]
    unmapped = _check_columns(source, dataset, mapping, columns)
    last: dict[str, str | None] = {"cursor": None}
    cursor_idx = columns.index(mapping.cursor) if mapping.cursor else None

    def tables() -> Iterator[pa.Table]:
        for rows in _db_rows(cur, chunk):
            if cursor_idx is not None:
                last["cursor"] = _to_text(rows[-1][cursor_idx])
            yield _chunk_to_table(columns, rows)

    rows = _write_chunks(tables(), out, columns)
    return rows, columns, last["cursor"], unmapped


def _read_export(path: Path, mapping: DatasetMapping) -> pd.DataFrame:
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
            frame = _read_export(path, mapping)
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
    tables = (_frame_to_table(f.reindex(columns=columns)) for f in frames)
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
    try:
        rows, columns, last, unmapped = _stream_db(source, dataset, connection, read_from, out, chunk_rows)
    except _query_errors() as exc:
        # A table or column the source file names is not on the legacy server (renamed, dropped, no grant).
        raise SourceSchemaError(
            f"{source.id}/{dataset}: the legacy server refused the extract query: {str(exc).strip()}. "
            f"Check table/query and columns in {source.id}.yaml against the legacy system."
        ) from exc
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


def _query_errors() -> tuple[type[BaseException], ...]:
    """Driver errors meaning 'this query does not fit this database' (not 'the server is down')."""
    import psycopg
    import pymysql

    return (psycopg.errors.ProgrammingError, pymysql.err.ProgrammingError, sqlite3.OperationalError)


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
