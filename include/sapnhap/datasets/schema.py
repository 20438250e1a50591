"""What a canonical dataset is: its columns, its key, its date; shared by every dataset file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnType = Literal["text", "date", "timestamp", "int", "code2", "code3", "code5", "citizen_id"]


@dataclass(frozen=True)
class Column:
    """One canonical column: its type, whether it must be present, whether it is personal data."""

    name: str
    type: ColumnType
    required: bool = False
    pii: bool = False
    description: str = ""
    # Derived by the sync, never mapped from a legacy column (the new agency of an old one, the
    # attachments' bucket keys): a source file cannot set it.
    derived: bool = False


@dataclass(frozen=True)
class Dataset:
    """A canonical dataset: natural key, the date that places a record in time, its columns."""

    name: str
    title_vi: str
    natural_key: tuple[str, ...]
    record_date: str
    columns: tuple[Column, ...]
    has_unit: bool = True
    parent: str | None = None
    statuses: tuple[str, ...] = field(default=())
    # Old agencies re-mapped through the province's agency crosswalk (sapnhap.agencies), each as
    # (old code column, date column(s) in order of preference, prefix of the derived columns).
    agency_roles: tuple[tuple[str, tuple[str, ...], str], ...] = field(default=())
    # False: a record of a split old commune stays under its old commune (its output allocates it:
    # indicator weights, the province portal's archive), neither queued for review nor quarantined.
    split_review: bool = True

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def source_column_names(self) -> list[str]:
        """The columns a legacy source maps (the derived ones are computed by the sync)."""
        return [c.name for c in self.columns if not c.derived]

    @property
    def pii_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.pii]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


# Accounts and mailboxes belong to an old commune or to an old district (its offices).
UNIT_LEVELS = ("commune", "district")


def agency_columns(prefix: str, what_vi: str) -> tuple[Column, ...]:
    """The new agency of an old one (sapnhap.agencies), kept beside the old code and name."""
    return (
        Column(f"{prefix}_new_agency_code", "text", derived=True, description=f"Mã {what_vi} theo cơ cấu mới"),
        Column(f"{prefix}_new_agency_name", "text", derived=True, description=f"Tên {what_vi} theo cơ cấu mới"),
        Column(f"{prefix}_agency_status", "text", derived=True,
               description="mapped (có dòng hiệu lực trong bảng chuyển đổi cơ quan) / unknown / missing"),
    )
