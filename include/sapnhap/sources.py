"""The source registry: one declarative YAML file per legacy system.

The registry doubles as the inventory of legacy information systems (R20). Adding a legacy
system is adding a file under the sources directory; the DAGs are generated from it.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sapnhap.datasets import DATASETS

SourceKind = Literal["postgres", "mysql", "sqlite", "files"]

DEFAULT_SOURCES_DIR = Path(__file__).resolve().parent.parent / "sources"
_ID_RE = re.compile(r"^[a-z][a-z0-9_]{2,62}$")


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

    @model_validator(mode="after")
    def _one_origin(self) -> DatasetMapping:
        origins = [x for x in (self.table, self.query, self.file_pattern) if x]
        if len(origins) != 1:
            raise ValueError("give exactly one of table, query or file_pattern")
        return self


class OldUnits(BaseModel):
    """The old (pre-2025-07-01) units a legacy system served."""

    model_config = ConfigDict(extra="forbid")
    province: str
    districts: list[str] = Field(default_factory=list)
    communes: list[str] = Field(default_factory=list)

    @field_validator("province")
    @classmethod
    def _province_code(cls, v: str) -> str:
        if not re.fullmatch(r"\d{2}", v):
            raise ValueError("old province code has 2 digits")
        return v


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
    path: str | None = None

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
            unknown = set(mapping.columns) - set(ds.column_names)
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
    """Where source files live: ``SAPNHAP_SOURCES_DIR`` or ``include/sources``."""
    return Path(os.environ.get("SAPNHAP_SOURCES_DIR") or DEFAULT_SOURCES_DIR)


def parse_source(path: Path) -> Source:
    """Parse and validate one source file; raise :class:`SourceConfigError` naming file and field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SourceConfigError(f"{path}: not valid YAML: {exc}") from None
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


@lru_cache(maxsize=8)
def _load(directory: str) -> tuple[Source, ...]:
    files = sorted(Path(directory).glob("*.yaml"))
    return tuple(parse_source(f) for f in files)


def load_sources(directory: Path | None = None) -> list[Source]:
    """All sources of the registry, sorted by id."""
    return list(_load(str(directory or sources_dir())))


def get_source(source_id: str, directory: Path | None = None) -> Source:
    """The source with this id, or a clear error."""
    for s in load_sources(directory):
        if s.id == source_id:
            return s
    raise SourceConfigError(f"no source {source_id!r} in {directory or sources_dir()}")
