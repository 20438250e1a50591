"""The source registry: one declarative YAML file per legacy system.

The registry doubles as the inventory of legacy information systems (R20). Adding a legacy
system is adding a file under the sources directory; the DAGs are generated from it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sapnhap.datasets import DATASETS

SourceKind = Literal["postgres", "mysql", "sqlite", "mssql", "oracle", "access", "files"]

DEFAULT_SOURCES_DIR = Path(__file__).resolve().parent.parent / "sources"
# libyaml when PyYAML has it (its wheels do): every task instance reads the whole registry when
# Airflow parses the nightly, and the pure Python parser is ~10x slower (1.4 s for 300 files).
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ID_RE = re.compile(r"^[a-z][a-z0-9_]{2,62}$")
_NAME = r"[^\W\d]\w{0,62}"  # a SQL identifier: a letter (Vietnamese too) or _, then letters, digits, _
_TABLE_RE = re.compile(rf"{_NAME}(\.{_NAME})?")
# An Access table name is a program argument, never SQL: spaces allowed (commune tools use them).
_ACCESS_TABLE_RE = re.compile(r"[^\W\d][\w ]{0,63}")
_COLUMN_RE = re.compile(_NAME)


# The legacy Vietnamese font encodings (sapnhap.codecs_vn registers them as Python codecs).
LEGACY_ENCODINGS = ("tcvn3", "vni")


def _codec(name: str) -> str:
    return name.strip().lower().replace("-", "_")


class SourceConfigError(ValueError):
    """A source file is invalid; the message names the file and the field."""


class QualityThresholds(BaseModel):
    """Share of failing rows above which the owner is warned, and above which the load is blocked."""

    model_config = ConfigDict(extra="forbid")
    warn_ratio: float = Field(0.0, ge=0, le=1)
    block_ratio: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> QualityThresholds:
        if self.warn_ratio > self.block_ratio:
            raise ValueError("warn_ratio must not exceed block_ratio")
        return self


class DatasetMapping(BaseModel):
    """How one legacy table (or query, or file pattern) maps onto a canonical dataset."""

    model_config = ConfigDict(extra="forbid")
    table: str | None = None
    query: str | None = None
    file_pattern: str | None = None
    sheet: str | None = None
    primary_key: list[str]
    cursor: str | None = None
    # Re-read this window below the committed cursor ("90m", "2h", "1d"; a plain number for a
    # numeric cursor): a writer whose transaction stamped its rows before the newest row we saw,
    # but committed after our snapshot, would otherwise be skipped. Re-read rows merge, never double.
    cursor_lookback: str | None = Field(None, pattern=r"^\d+[smhd]?$")
    date_format: str = "%d/%m/%Y"
    timestamp_format: str = "%d/%m/%Y %H:%M:%S"
    encoding: str = "utf-8"
    columns: dict[str, str]
    values: dict[str, dict[str, str]] = Field(default_factory=dict)
    # Per canonical column: "tcvn3"/"vni" when that column holds a legacy font's bytes shown as Latin
    # text (by the database driver, or by the file's encoding), "utf-8" when it is Unicode although
    # the dataset's encoding is a legacy one. Decoded rows are flagged "<column>:decoded".
    column_encodings: dict[str, str] = Field(default_factory=dict)
    # The Airflow fs connection of the folder holding the files ``attachment_paths`` names
    # (documents): copied to the bucket by the backup stage (sapnhap.documents).
    attachments: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")

    @field_validator("table")
    @classmethod
    def _table_name(cls, v: str | None) -> str | None:
        # A name, never SQL: the extract puts it in a statement (R4, the legacy server's data).
        if v is not None and not (_TABLE_RE.fullmatch(v) or _ACCESS_TABLE_RE.fullmatch(v)):
            raise ValueError("a table name ([schema.]table: letters, digits, _), not SQL")
        return v

    @field_validator("file_pattern")
    @classmethod
    def _inside_the_folder(cls, v: str | None) -> str | None:
        # Another source's exports must not load as this source's: the pattern stays in its folder.
        if v is not None and (v.startswith(("/", "~")) or "\\" in v or ".." in Path(v).parts or ":" in v):
            raise ValueError("a file name pattern inside the connection's folder (no '..', no absolute path)")
        return v

    @model_validator(mode="after")
    def _column_encodings(self) -> DatasetMapping:
        for name, codec in self.column_encodings.items():
            if name not in self.columns:
                raise ValueError(f"column_encodings: {name} is not a mapped column (columns:)")
            if _codec(codec) not in (*LEGACY_ENCODINGS, "utf_8"):
                raise ValueError(f"column_encodings.{name}: tcvn3, vni or utf-8, not {codec!r}")
        return self

    def legacy_codecs(self, kind: str) -> dict[str, str]:
        """Legacy column -> the codec its text is decoded with (``tcvn3``/``vni``); columns without one are absent.

        A database returns a legacy font's bytes as Latin text, so the dataset's ``encoding`` applies
        to its columns; a file is already decoded with it, so only ``column_encodings`` apply there.
        """
        dataset_codec = _codec(self.encoding) if kind != "files" and _codec(self.encoding) in LEGACY_ENCODINGS else None
        codecs = {legacy: _codec(self.column_encodings.get(canonical, "")) or dataset_codec
                  for canonical, legacy in self.columns.items()}
        return {legacy: c for legacy, c in codecs.items() if c in LEGACY_ENCODINGS}

    @model_validator(mode="after")
    def _one_origin(self) -> DatasetMapping:
        origins = [x for x in (self.table, self.query, self.file_pattern) if x]
        if len(origins) != 1:
            raise ValueError("give exactly one of table, query or file_pattern")
        return self


class OldUnits(BaseModel):
    """The old (pre-2025-07-01) units a legacy system served.

    One old province (``province: "02"``) or several: a provincial system or an export spanning
    old Tuyên Quang and old Hà Giang gives ``province: ["08", "02"]`` (or ``provinces:``). Each
    record's own old codes decide its mapping; these say what the system is expected to hold.
    """

    model_config = ConfigDict(extra="forbid")
    province: str = ""
    provinces: list[str] = Field(default_factory=list)
    districts: list[str] = Field(default_factory=list)
    communes: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _several(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("province"), list):
            listed = [str(x) for x in data["province"]]
            data = {**data, "province": listed[0] if listed else "", "provinces": [*listed, *data.get("provinces", [])]}
        return data

    @field_validator("province")
    @classmethod
    def _province_code(cls, v: str) -> str:
        if v and not re.fullmatch(r"\d{2}", v):
            raise ValueError("old province code has 2 digits")
        return v

    @field_validator("provinces")
    @classmethod
    def _province_codes(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if not re.fullmatch(r"\d{2}", x)]
        if bad:
            raise ValueError(f"old province code has 2 digits: {bad}")
        return v

    @model_validator(mode="after")
    def _one_list(self) -> OldUnits:
        every = list(dict.fromkeys([p for p in (self.province, *self.provinces) if p]))
        if not every:
            raise ValueError("province: give the old province code (or a list of them)")
        self.province, self.provinces = every[0], every
        return self


class LocalConnection(BaseModel):
    """Where a ``files``, ``sqlite`` or ``access`` source's data is, declared beside it (no secrets).

    The embedded default (``make demo ARGS="--sources-dir DIR"``) turns it into the Airflow
    connection ``conn_id``; a deployment's own Airflow connection of that id is used instead.
    """

    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="the export folder (files) or database file (sqlite, access), relative to the YAML file")


class Source(BaseModel):
    """One legacy information system."""

    model_config = ConfigDict(extra="forbid")
    id: str
    name: str
    kind: SourceKind
    conn_id: str
    old_units: OldUnits
    owners: list[str]
    system_owner_vi: str = ""
    daily_confirmation: bool = False
    pool_slots: int = Field(1, ge=1, description="legacy-server connections this source may use")
    server_pool: str | None = Field(None, description="Airflow pool shared by sources on one legacy server")
    quality: QualityThresholds = Field(default_factory=QualityThresholds)
    datasets: dict[str, DatasetMapping]
    connection: LocalConnection | None = None
    path: str | None = None

    @model_validator(mode="after")
    def _sql_names(self) -> Source:
        if self.kind not in ("files", "access"):
            for name, mapping in self.datasets.items():
                if mapping.table is not None and not _TABLE_RE.fullmatch(mapping.table):
                    raise ValueError(f"{name}.table: a table name ([schema.]table: letters, digits, _), not SQL")
                if mapping.cursor is not None and not _COLUMN_RE.fullmatch(mapping.cursor):
                    raise ValueError(f"{name}.cursor: a column name (letters, digits, _), not SQL")
        return self

    @model_validator(mode="after")
    def _local_connection_kind(self) -> Source:
        if self.connection is not None and self.kind not in ("files", "sqlite", "access"):
            raise ValueError("connection: only files, sqlite and access sources declare their data here; a database's "
                             "connection (with its password) is an Airflow connection")
        return self

    def local_connection(self) -> str | None:
        """The Airflow connection (URI or JSON) the ``connection:`` block declares, or None."""
        if self.connection is None:
            return None
        base = Path(self.path).parent if self.path else Path.cwd()
        target = (base / self.connection.path).resolve()
        if self.kind == "sqlite":
            return f"sqlite:///{target}"
        return json.dumps({"conn_type": "fs", "extra": {"path": str(target)}})

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError("id is lower-case letters, digits and _ (3-63 chars), starting with a letter")
        return v

    @field_validator("owners")
    @classmethod
    def _owners(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one owner email is required")
        bad = [x for x in v if "@" not in x]
        if bad:
            raise ValueError(f"not an email address: {bad}")
        return v

    @field_validator("datasets")
    @classmethod
    def _datasets(cls, v: dict[str, DatasetMapping]) -> dict[str, DatasetMapping]:
        for name, mapping in v.items():
            if name not in DATASETS:
                raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
            ds = DATASETS[name]
            unknown = set(mapping.columns) - set(ds.source_column_names)
            if unknown:
                raise ValueError(f"{name}: unknown canonical columns {sorted(unknown)}")
            missing = [k for k in ds.natural_key if k not in mapping.columns]
            if missing:
                raise ValueError(f"{name}: natural key columns not mapped: {missing}")
        return v

    @property
    def pool(self) -> str:
        """Airflow pool limiting concurrent connections to this legacy server."""
        return self.server_pool or f"pool_{self.conn_id}"


def sources_dir() -> Path:
    """Where source files live: ``SAPNHAP_SOURCES_DIR`` (its first folder) or ``include/sources``."""
    return source_dirs()[0]


def source_dirs() -> list[Path]:
    """Every folder of source files: ``SAPNHAP_SOURCES_DIR`` (folders joined by ``os.pathsep``) or ``include/sources``.

    Several folders let the data team try its own sources beside the demo's (``--sources-dir``).
    """
    value = os.environ.get("SAPNHAP_SOURCES_DIR") or ""
    dirs = [Path(p) for p in value.split(os.pathsep) if p]
    return dirs or [DEFAULT_SOURCES_DIR]


def _read_yaml(path: Path) -> object:
    """A source file's YAML, read with :data:`YAML_LOADER` (a safe loader)."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)  # noqa: S506 - a safe loader


def parse_source(path: Path) -> Source:
    """Parse and validate one source file; raise :class:`SourceConfigError` naming file and field."""
    try:
        raw = _read_yaml(path)
    except yaml.YAMLError as exc:
        raise SourceConfigError(f"{path}: not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceConfigError(f"{path}: cannot be read: {type(exc).__name__}") from None
    if not isinstance(raw, dict):
        raise SourceConfigError(f"{path}: expected a mapping at the top level")
    try:
        source = Source.model_validate({**raw, "path": str(path)})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SourceConfigError(f"{path}: {problems}") from None
    if path.stem != source.id:
        raise SourceConfigError(f"{path}: file name must be the source id ({source.id}.yaml)")
    return source


@dataclass(frozen=True)
class InvalidSource:
    """A source file that does not validate: that source is disabled, the others run."""

    path: Path
    message: str
    owners: tuple[str, ...] = ()
    # Airflow-safe and unique in the DAG: the file stem, where the source's task group would be.
    group_id: str = ""


@dataclass(frozen=True)
class Registry:
    """The valid sources (sorted by id) and the files that were disabled, with why."""

    sources: tuple[Source, ...]
    invalid: tuple[InvalidSource, ...] = field(default_factory=tuple)


def readable_owners(path: Path) -> tuple[str, ...]:
    """The owner addresses a broken file still lets us read (empty if none can be read)."""
    try:
        raw = _read_yaml(path)
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return ()
    owners = raw.get("owners") if isinstance(raw, dict) else None
    if not isinstance(owners, list):
        return ()
    return tuple(o.strip() for o in owners if isinstance(o, str) and re.fullmatch(r"[^@\s]+@[^@\s]+", o.strip()))


@lru_cache(maxsize=8)
def _load(directories: tuple[str, ...]) -> Registry:
    valid: dict[str, Source] = {}
    invalid: list[InvalidSource] = []
    for directory in directories:
        for path in sorted(Path(directory).glob("*.yaml")):
            try:
                source = parse_source(path)
            except SourceConfigError as exc:
                invalid.append(InvalidSource(path, str(exc), readable_owners(path)))
                continue
            if source.id in valid:
                invalid.append(InvalidSource(
                    path, f"{path}: id: source {source.id!r} is already defined in {valid[source.id].path}",
                    tuple(source.owners),
                ))
                continue
            valid[source.id] = source
    taken = set(valid)
    named = []
    for bad in invalid:
        group_id = re.sub(r"[^A-Za-z0-9_-]", "_", bad.path.stem) or "unnamed"
        while group_id in taken:
            group_id += "_invalid"
        taken.add(group_id)
        named.append(InvalidSource(bad.path, bad.message, bad.owners, group_id))
    return Registry(tuple(sorted(valid.values(), key=lambda s: s.id)), tuple(named))


def _dirs(directory: Path | None) -> tuple[str, ...]:
    return (str(directory),) if directory is not None else tuple(str(d) for d in source_dirs())


def load_registry(directory: Path | None = None) -> Registry:
    """Every source file of the registry: the valid sources and the invalid files, never an exception.

    One broken file disables that source only (the nightly shows a failing task for it and tells
    its owners); the other sources run.
    """
    return _load(_dirs(directory))


def load_sources(directory: Path | None = None) -> list[Source]:
    """The valid sources of the registry, sorted by id (see :func:`load_registry` for the invalid files)."""
    return list(load_registry(directory).sources)


def get_source(source_id: str, directory: Path | None = None) -> Source:
    """The source with this id, or a clear error (the file's own error when that file is invalid)."""
    registry = load_registry(directory)
    for s in registry.sources:
        if s.id == source_id:
            return s
    for bad in registry.invalid:
        if bad.path.stem == source_id:
            raise SourceConfigError(bad.message)
    raise SourceConfigError(f"no source {source_id!r} in {', '.join(_dirs(directory))}")


def invalid_source_error(path: str | Path) -> SourceConfigError:
    """The clear error of a source file that does not validate (file and field named)."""
    path = Path(path)
    try:
        source = parse_source(path)
    except SourceConfigError as exc:
        return exc
    return SourceConfigError(
        f"{path}: the file of source {source.id!r} was invalid when the DAG was parsed; it is valid now, "
        "the source runs from the next parse"
    )


DATA_TEAM_EMAIL_ENV = "SAPNHAP_DATA_TEAM_EMAIL"


def data_team_address(fallback: str) -> str:
    """Where mail goes when a source file names no readable owner: ``SAPNHAP_DATA_TEAM_EMAIL`` or ``fallback``."""
    return os.environ.get(DATA_TEAM_EMAIL_ENV) or fallback


def fail_invalid_source(services, path: str | Path, *, run_id: str | None = None) -> None:  # noqa: ANN001 - Services
    """The nightly task of an invalid source file: tell its owners, then raise the file/field error.

    The owners are those the broken file still names; if none can be read, the data team
    (``SAPNHAP_DATA_TEAM_EMAIL``, else the sender address). A mail server that cannot be reached
    does not hide the configuration error: both are in the raised message.
    """
    from sapnhap.reports.mail import new_message
    from sapnhap.reports.send import ReportDeliveryError, send_messages

    path = Path(path)
    error = invalid_source_error(path)
    owners = list(readable_owners(path)) or [data_team_address(services.smtp.from_addr)]
    msg = new_message(
        f"[sapnhap] Tệp cấu hình nguồn {path.name} không hợp lệ: nguồn này tạm dừng đồng bộ",
        services.smtp.from_addr, ", ".join(owners), run_id=run_id,
    )
    msg.set_content(
        f"Tệp cấu hình nguồn dữ liệu {path.name} không hợp lệ nên nguồn này không được đồng bộ trong đêm nay.\n"
        "Các nguồn khác vẫn đồng bộ bình thường.\n\n"
        f"Lỗi (tệp và trường cần sửa):\n{error}\n\n"
        "Cách sửa: sửa trường nêu trên trong tệp YAML, rồi chạy lại; nguồn sẽ được đồng bộ từ lần chạy sau.\n"
    )
    try:
        send_messages(services.smtp, [msg], what="invalid-source notices")
    except ReportDeliveryError as exc:
        raise SourceConfigError(f"{error} (the owners could not be told: {exc})") from None
    raise error
