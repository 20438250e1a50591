"""Canonical target schemas of the datasets the platform consolidates.

Every legacy source maps its own column names onto these (see ``include/sources/*.yaml``).
Each dataset also carries lineage columns once transformed (see ``sapnhap.platform.LINEAGE_DDL``).
"""

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


DOSSIER_STATUSES = ("received", "processing", "completed", "returned", "cancelled")

DOSSIERS = Dataset(
    name="dossiers",
    title_vi="Hồ sơ thủ tục hành chính",
    natural_key=("dossier_code",),
    record_date="received_date",
    statuses=DOSSIER_STATUSES,
    columns=(
        Column("dossier_code", "text", required=True, description="Mã hồ sơ"),
        Column("procedure_code", "text", description="Mã thủ tục hành chính"),
        Column("procedure_name", "text", description="Tên thủ tục"),
        Column("applicant_name", "text", pii=True, description="Người nộp"),
        Column("applicant_citizen_id", "citizen_id", pii=True, description="Số CCCD người nộp"),
        Column("old_commune_code", "code5", description="Mã xã cũ nơi tiếp nhận"),
        Column("address_detail", "text", description="Thôn/xóm/tổ dân phố, đường phố"),
        Column("received_date", "date", required=True, description="Ngày tiếp nhận"),
        Column("due_date", "date", description="Ngày hẹn trả"),
        Column("completed_date", "date", description="Ngày trả kết quả"),
        Column("status", "text", required=True, description="Trạng thái"),
        Column("updated_at", "timestamp", description="Cập nhật lần cuối ở hệ thống cũ"),
    ),
)

DOSSIER_STEPS = Dataset(
    name="dossier_steps",
    title_vi="Quá trình xử lý hồ sơ",
    natural_key=("dossier_code", "step_no"),
    record_date="started_at",
    has_unit=False,
    parent="dossiers",
    columns=(
        Column("dossier_code", "text", required=True),
        Column("step_no", "int", required=True),
        Column("step_name", "text", required=True, description="Bước xử lý"),
        Column("handler", "text", pii=True, description="Cán bộ xử lý"),
        Column("started_at", "timestamp", required=True),
        Column("finished_at", "timestamp"),
        Column("updated_at", "timestamp"),
    ),
)

RESIDENTS = Dataset(
    name="residents",
    title_vi="Nhân khẩu",
    natural_key=("citizen_id",),
    record_date="registered_date",
    columns=(
        Column("citizen_id", "citizen_id", required=True, pii=True, description="Số CCCD 12 số"),
        Column("full_name", "text", required=True, pii=True, description="Họ và tên"),
        Column("birth_date", "date", required=True, description="Ngày sinh"),
        Column("gender", "text", required=True, description="Giới tính: nam/nu"),
        Column("household_code", "text", description="Mã hộ"),
        Column("relation_to_head", "text", description="Quan hệ với chủ hộ"),
        Column("old_commune_code", "code5", description="Mã xã cũ nơi thường trú"),
        Column("address_detail", "text", description="Thôn/xóm/tổ dân phố, đường phố"),
        Column("registered_date", "date", description="Ngày đăng ký thường trú"),
        Column("updated_at", "timestamp"),
    ),
)

HOUSEHOLDS = Dataset(
    name="households",
    title_vi="Hộ gia đình",
    natural_key=("household_code",),
    record_date="registered_date",
    columns=(
        Column("household_code", "text", required=True, description="Mã hộ"),
        Column("head_citizen_id", "citizen_id", pii=True, description="CCCD chủ hộ"),
        Column("old_commune_code", "code5", description="Mã xã cũ"),
        Column("address_detail", "text", description="Thôn/xóm/tổ dân phố, đường phố"),
        Column("registered_date", "date"),
        Column("updated_at", "timestamp"),
    ),
)

ACCOUNT_STATUSES = ("active", "locked", "disabled")
UNIT_LEVELS = ("commune", "district")

# An account is unique per legacy application, not per source database (one district database
# often holds the users of several applications). ``system_code`` names the application with a
# province-wide code (the source file maps the legacy value onto it), so (system_code, username)
# is a global natural key and no two districts' "admin" accounts collide on the platform.
ACCOUNTS = Dataset(
    name="accounts",
    title_vi="Tài khoản người dùng và phân quyền",
    natural_key=("system_code", "username"),
    record_date="created_date",
    statuses=ACCOUNT_STATUSES,
    columns=(
        Column("system_code", "text", required=True, description="Mã ứng dụng cũ (duy nhất toàn tỉnh)"),
        Column("username", "text", required=True, description="Tên đăng nhập"),
        Column("citizen_id", "citizen_id", pii=True, description="Số CCCD của cán bộ (nếu có)"),
        Column("full_name", "text", required=True, pii=True, description="Họ và tên"),
        Column("birth_date", "date", description="Ngày sinh"),
        Column("unit_level", "text", required=True, description="Cấp đơn vị: commune/district"),
        Column("old_commune_code", "code5", description="Mã xã cũ của đơn vị (trống nếu cấp huyện)"),
        Column("unit_district_code", "code3", description="Mã huyện cũ của đơn vị"),
        # Where the official works (thôn/tổ dân phố): lets the split-commune rules place the account.
        Column("address_detail", "text", description="Nơi làm việc: thôn/tổ dân phố (nếu có)"),
        Column("roles", "text", description="Vai trò/quyền, phân cách bằng ';'"),
        Column("status", "text", required=True, description="Trạng thái: active/locked/disabled"),
        Column("last_login", "timestamp", description="Lần đăng nhập cuối"),
        Column("created_date", "date", required=True, description="Ngày tạo tài khoản"),
        Column("updated_at", "timestamp"),
    ),
)

MAIL_DIRECTORY = Dataset(
    name="mail_directory",
    title_vi="Danh bạ thư điện tử công vụ",
    natural_key=("address",),
    record_date="created_date",
    columns=(
        Column("address", "text", required=True, description="Địa chỉ thư điện tử"),
        Column("owner_full_name", "text", required=True, pii=True, description="Họ và tên chủ hộp thư"),
        Column("owner_citizen_id", "citizen_id", pii=True, description="Số CCCD chủ hộp thư (nếu có)"),
        Column("owner_birth_date", "date", description="Ngày sinh chủ hộp thư (nếu có)"),
        Column("unit_level", "text", required=True, description="Cấp đơn vị: commune/district"),
        Column("old_commune_code", "code5", description="Mã xã cũ của đơn vị (trống nếu cấp huyện)"),
        Column("unit_district_code", "code3", description="Mã huyện cũ của đơn vị"),
        Column("address_detail", "text", description="Nơi làm việc: thôn/tổ dân phố (nếu có)"),
        Column("aliases", "text", description="Bí danh, phân cách bằng ';'"),
        Column("created_date", "date", required=True, description="Ngày tạo hộp thư"),
        Column("updated_at", "timestamp"),
    ),
)

DOCUMENT_DIRECTIONS = ("incoming", "outgoing")
SECURITY_LEVELS = ("normal", "confidential", "secret", "top_secret")
DOCUMENT_STATUSES = ("registered", "processing", "completed", "archived", "withdrawn")


def _agency_columns(prefix: str, what_vi: str) -> tuple[Column, ...]:
    """The new agency of an old one (sapnhap.agencies), kept beside the old code and name."""
    return (
        Column(f"{prefix}_new_agency_code", "text", derived=True, description=f"Mã {what_vi} theo cơ cấu mới"),
        Column(f"{prefix}_new_agency_name", "text", derived=True, description=f"Tên {what_vi} theo cơ cấu mới"),
        Column(f"{prefix}_agency_status", "text", derived=True,
               description="mapped (có dòng hiệu lực trong bảng chuyển đổi cơ quan) / unknown / missing"),
    )


# Văn bản đến/đi (R16). document_code is the province-wide key the source file builds (system
# prefix + the legacy id): one outgoing document received by three communes is three records.
DOCUMENTS = Dataset(
    name="documents",
    title_vi="Văn bản đến/đi",
    natural_key=("document_code",),
    record_date="issued_date",
    has_unit=False,
    statuses=DOCUMENT_STATUSES,
    agency_roles=(
        ("issuer_code", ("issued_date",), "issuer"),
        ("receiver_code", ("received_date", "issued_date"), "receiver"),
    ),
    columns=(
        Column("document_code", "text", required=True, description="Mã văn bản (duy nhất toàn tỉnh)"),
        Column("direction", "text", required=True, description="Văn bản đến (incoming) / đi (outgoing)"),
        Column("number_symbol", "text", required=True, description="Số, ký hiệu văn bản"),
        Column("document_type", "text", required=True, description="Loại văn bản (Quyết định, Công văn...)"),
        Column("issuer_code", "text", required=True, description="Mã cơ quan ban hành (cơ cấu cũ)"),
        Column("issuer_name", "text", description="Tên cơ quan ban hành (cơ cấu cũ)"),
        Column("receiver_code", "text", description="Mã nơi nhận (cơ cấu cũ)"),
        Column("receiver_name", "text", description="Tên nơi nhận (cơ cấu cũ)"),
        Column("issued_date", "date", required=True, description="Ngày ban hành"),
        Column("received_date", "date", description="Ngày đến (văn bản đến)"),
        Column("summary", "text", required=True, description="Trích yếu nội dung"),
        Column("signer", "text", pii=True, description="Người ký"),
        Column("security_level", "text", required=True, description="Độ mật: normal/confidential/secret/top_secret"),
        Column("status", "text", required=True, description="Trạng thái xử lý"),
        Column("attachment_paths", "text", description="Tệp đính kèm ở hệ thống cũ (đường dẫn, phân cách bằng ';')"),
        Column("updated_at", "timestamp", description="Cập nhật lần cuối ở hệ thống cũ"),
        *_agency_columns("issuer", "cơ quan ban hành"),
        *_agency_columns("receiver", "nơi nhận"),
        Column("agency_crosswalk_version", "text", derived=True, description="Phiên bản bảng chuyển đổi cơ quan"),
        Column("attachments", "text", derived=True,
               description="Tệp đính kèm đã sao lưu: JSON [{path, key, sha256, bytes}] (khoá trong kho lưu trữ)"),
    ),
)

# The processing history of a document (R16: kept for lookup and follow-up of direction).
DOCUMENT_STEPS = Dataset(
    name="document_steps",
    title_vi="Quá trình xử lý văn bản",
    natural_key=("document_code", "step_no"),
    record_date="acted_at",
    has_unit=False,
    parent="documents",
    agency_roles=(("unit_code", ("acted_at",), "unit"),),
    columns=(
        Column("document_code", "text", required=True),
        Column("step_no", "int", required=True),
        Column("unit_code", "text", required=True, description="Đơn vị xử lý (mã cơ cấu cũ)"),
        Column("unit_name", "text", description="Tên đơn vị xử lý (cơ cấu cũ)"),
        Column("handler", "text", pii=True, description="Người xử lý"),
        Column("action", "text", required=True, description="Hành động: tiếp nhận, chuyển xử lý, ký, ban hành..."),
        Column("acted_at", "timestamp", required=True, description="Thời điểm"),
        Column("updated_at", "timestamp"),
        *_agency_columns("unit", "đơn vị xử lý"),
        Column("agency_crosswalk_version", "text", derived=True, description="Phiên bản bảng chuyển đổi cơ quan"),
    ),
)

DATASETS: dict[str, Dataset] = {
    d.name: d for d in (DOSSIERS, DOSSIER_STEPS, RESIDENTS, HOUSEHOLDS, ACCOUNTS, MAIL_DIRECTORY, DOCUMENTS,
                        DOCUMENT_STEPS)
}


def get_dataset(name: str) -> Dataset:
    """Return the canonical dataset called ``name`` or raise a clear error."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None
