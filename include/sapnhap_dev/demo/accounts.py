"""Demo account and mail systems of the former districts Vị Xuyên (Hà Giang) and Sơn Dương (Tuyên Quang).

Three more legacy systems, described by ``include/sources/<source_id>.yaml``:

- ``hg_vixuyen_taikhoan``  PostgreSQL, shared user directory of the district's applications
  (one-stop shop ``MOTCUA``, document management ``QLVB``)
- ``tq_sonduong_taikhoan`` PostgreSQL, users of ``DVC`` and ``VANBAN`` and the district's own
  mail server (``hop_thu``)
- ``hg_thudientu``         CSV export of the old Hà Giang provincial mail directory

The SAME officials appear in several systems: with the same citizen ID, or without one but
with the same name, birth date and unit; a few are near-matches a human must decide (same
name and birth date in another unit; same name and unit without birth date). There are
district-level roles, dormant accounts, a duplicate account in one system, officials of a
split commune, and two different people named Nguyễn Văn An in one new commune.

Every record written is a ledger row (same columns as the generator's), and
:attr:`AccountSystems.people` is the truth the matching tests compare against.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ACCOUNT_SOURCE_IDS = ("hg_vixuyen_taikhoan", "tq_sonduong_taikhoan", "hg_thudientu")
# Who the district systems served: old district code -> (accounts source, its two applications).
DISTRICTS = {
    "030": ("hg_vixuyen_taikhoan", ("MOTCUA", "QLVB"), "hg_thudientu"),
    "076": ("tq_sonduong_taikhoan", ("DVC", "VANBAN"), "tq_sonduong_taikhoan"),
}
COMMUNE_ROLE_SETS = (
    ("chu_tich_xa",),
    ("tiep_nhan_ho_so", "xu_ly_ho_so"),
    ("dia_chinh_xa",),
    ("van_thu_xa",),
    ("ke_toan_ngan_sach_xa",),  # no re-mapping rule: the review lists it as orphaned
)
DISTRICT_ROLE_SETS = (
    ("chuyen_vien_huyen",),
    ("lanh_dao_phong",),
    ("chuyen_vien_huyen", "van_thu_huyen"),
    ("quan_tri_he_thong_huyen",),
)
DORMANT_DAYS = 180
COLLIDING_NAME = "Nguyễn Văn An"

# The legacy encodings of each system (what the source files map back).
_STATUS = {
    "hg_vixuyen_taikhoan": {"active": "HOAT_DONG", "locked": "KHOA", "disabled": "VO_HIEU"},
    "tq_sonduong_taikhoan": {"active": "Đang hoạt động", "locked": "Đã khóa", "disabled": "Ngừng sử dụng"},
}
_LEVEL = {
    "hg_vixuyen_taikhoan": {"commune": "XA", "district": "HUYEN"},
    "tq_sonduong_taikhoan": {"commune": "Xã", "district": "Huyện"},
    "hg_thudientu": {"commune": "Xã", "district": "Huyện"},
}
_UNKNOWN_STATUS = {"hg_vixuyen_taikhoan": "TAM_DUNG", "tq_sonduong_taikhoan": "Chờ duyệt"}
_MAIL_DOMAIN = {"030": "hagiang.gov.vn", "076": "sonduong.tuyenquang.gov.vn"}


@dataclass
class AccountSystems:
    """What was written: the ledger rows, the true people, and where the systems are."""

    ledger: pd.DataFrame
    people: pd.DataFrame  # person_no, full_name, citizen_id, birth_date, old_commune_code, district, level
    accounts: pd.DataFrame  # canonical account rows with person_no (truth)
    mail: pd.DataFrame  # canonical mailbox rows with person_no (truth)
    near_matches: pd.DataFrame = field(default_factory=pd.DataFrame)  # pairs a human must decide


def fold_ascii(text: str) -> str:
    """'Nguyễn Văn An' -> 'nguyen van an' (for demo usernames and addresses)."""
    text = unicodedata.normalize("NFD", text.replace("Đ", "D").replace("đ", "d"))
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def _initials_local(full_name: str) -> str:
    parts = fold_ascii(full_name).split()
    return parts[-1] + "".join(p[0] for p in parts[:-1])


def _person_pool(rng: np.random.Generator, communes: pd.DataFrame, district: str, province: str,
                 cids, size: int) -> pd.DataFrame:  # noqa: ANN001 - generator._Cids
    from sapnhap_dev.demo.generator import _dates, _people

    per_commune = 3 if size >= 100 else 2
    rows = []
    for code in communes["code"]:
        for k in range(per_commune):
            rows.append({"level": "commune", "old_commune_code": code, "role_set": (k + len(rows)) % len(COMMUNE_ROLE_SETS)})
    for k in range(4 if size >= 100 else 3):
        rows.append({"level": "district", "old_commune_code": None, "role_set": k % len(DISTRICT_ROLE_SETS)})
    frame = pd.DataFrame(rows)
    n = len(frame)
    birth = _dates(rng, n, "1965-01-01", "1998-12-31")
    people = _people(rng, cids, "0" + province, birth)
    for key, values in people.items():
        frame[key] = values
    frame["district"] = district
    frame["province"] = province
    return frame


def _collide(frame: pd.DataFrame, communes: pd.DataFrame) -> pd.DataFrame:
    """Two different Nguyễn Văn An in one new commune (two old communes merged into it)."""
    merged = communes[~communes["is_split"]].groupby("new_commune_code")["code"].agg(list)
    target = next(codes for codes in merged if len(codes) >= 2)
    for old in target[:2]:
        i = frame.index[(frame["old_commune_code"] == old)][0]
        frame.loc[i, ["full_name", "gender"]] = [COLLIDING_NAME, "nam"]
    return frame


def _username(system: str, frame: pd.DataFrame) -> pd.Series:
    local = frame["full_name"].map(_initials_local)
    unit = frame["old_commune_code"].fillna("h" + frame["district"])
    base = local + "." + unit if system in ("MOTCUA", "DVC") else local + "_" + unit.str[-3:]
    # Same base twice in one system: the second gets a digit, as legacy admins do.
    rank = base.groupby(base).cumcount()
    return base.where(rank == 0, base + (rank + 1).astype(str))


def _roles(frame: pd.DataFrame) -> pd.Series:
    sets = np.where(frame["level"] == "commune",
                    frame["role_set"].map(lambda k: ";".join(COMMUNE_ROLE_SETS[k])),
                    frame["role_set"].map(lambda k: ";".join(DISTRICT_ROLE_SETS[k % len(DISTRICT_ROLE_SETS)])))
    return pd.Series(sets, index=frame.index, dtype=object)


def _logins(rng: np.random.Generator, n: int, clock: datetime) -> np.ndarray:
    """Most logged in lately; about one in six is dormant (> 180 days); a few never logged in."""
    recent = rng.integers(1, 60 * 24 * 3600, n)
    dormant = rng.integers((DORMANT_DAYS + 10) * 24 * 3600, 700 * 24 * 3600, n)
    seconds = np.where(rng.random(n) < 0.17, dormant, recent)
    out = (np.datetime64(clock - timedelta(days=1), "s") - seconds.astype("timedelta64[s]")).astype(object)
    out[rng.random(n) < 0.04] = None
    return out


def _accounts_of(rng: np.random.Generator, people: pd.DataFrame, source_id: str, systems: tuple[str, str],
                 clock: datetime) -> pd.DataFrame:
    """Accounts of one district database: everybody in the first application, 60% in the second."""
    parts = []
    for s, system in enumerate(systems):
        take = np.ones(len(people), dtype=bool) if s == 0 else rng.random(len(people)) < 0.6
        sub = people[take].copy()
        # The second application often never asked for the citizen ID (matched on name + birth date + unit).
        keep_cid = rng.random(len(sub)) < (0.9 if s == 0 else (0.5 if source_id.startswith("hg") else 0.0))
        sub["citizen_id"] = sub["citizen_id"].where(keep_cid, None)
        sub["system"] = system
        sub["username"] = _username(system, sub).to_numpy()
        parts.append(sub)
    accounts = pd.concat(parts, ignore_index=True)
    n = len(accounts)
    accounts["roles"] = _roles(accounts)
    accounts["status"] = np.where(rng.random(n) < 0.08, "locked", "active")
    accounts["last_login"] = _logins(rng, n, clock)
    accounts["created_date"] = pd.to_datetime("2012-01-01") + pd.to_timedelta(rng.integers(0, 4500, n), unit="D")
    accounts["updated_at"] = [clock - timedelta(days=2, seconds=int(x)) for x in rng.integers(0, 86_000, n)]
    accounts["_defect"] = None
    accounts["_related"] = None
    # A second account of the same official in the first application (same citizen ID): merged later.
    first = accounts.index[(accounts["system"] == systems[0]) & accounts["citizen_id"].notna()][:2]
    dup = accounts.loc[first].copy()
    dup["username"] = dup["username"] + "_cu"
    dup["last_login"] = None
    dup["_related"] = dup["system"] + "|" + accounts.loc[first, "username"]
    accounts = pd.concat([accounts, dup], ignore_index=True)
    # Counted defects: one unmapped legacy status (quarantined), one 11-digit citizen ID (warned).
    clean = accounts.index[accounts["_defect"].isna() & accounts["_related"].isna()]
    accounts.loc[clean[3], ["status", "_defect"]] = ["__unknown__", "unknown_status"]
    with_cid = accounts.index[accounts["citizen_id"].notna() & accounts["_defect"].isna() & accounts["_related"].isna()
                              & (accounts["full_name"] != COLLIDING_NAME)]
    i = with_cid[5]
    accounts.loc[i, ["citizen_id", "_defect"]] = [accounts.loc[i, "citizen_id"][:-1], "bad_citizen_id"]
    # Officials of a split commune: which new commune they serve is a decision, not a lookup.
    split = accounts["old_commune_code"].isin(people.attrs.get("split_codes", [])) & accounts["_defect"].isna()
    accounts.loc[split, "_defect"] = "split_no_rule"
    return accounts


def _mail_of(rng: np.random.Generator, people: pd.DataFrame, district: str) -> pd.DataFrame:
    """Mailboxes of 85% of the officials; citizen ID in 40-60%, birth date in 70%."""
    take = rng.random(len(people)) < 0.85
    take[people["full_name"].to_numpy() == COLLIDING_NAME] = True
    mail = people[take].copy()
    n = len(mail)
    forced = mail["full_name"].to_numpy() == COLLIDING_NAME
    mail["citizen_id"] = mail["citizen_id"].where((rng.random(n) < 0.5) | forced, None)
    mail["birth_date"] = mail["birth_date"].where((rng.random(n) < 0.7) | mail["citizen_id"].notna() | forced, None)
    # Without citizen ID or birth date a mailbox could not be matched: such mailboxes keep their birth date,
    # except for the near-misses added below.
    no_key = mail["citizen_id"].isna() & mail["birth_date"].isna()
    mail.loc[no_key, "birth_date"] = people.loc[mail.index[no_key], "birth_date"]
    local = mail["full_name"].map(_initials_local)
    unit = mail["old_commune_code"].fillna("h" + district).str[-3:]
    address = local + "." + unit + "@" + _MAIL_DOMAIN[district]
    rank = address.groupby(address).cumcount()
    mail["address"] = address.where(rank == 0, local + (rank + 1).astype(str) + "." + unit + "@" + _MAIL_DOMAIN[district])
    mail["aliases"] = np.where(rng.random(n) < 0.3, local + "@" + _MAIL_DOMAIN[district], None)
    # An alias used by two mailboxes is refused by any mail server: keep the first only.
    dup_alias = pd.Series(mail["aliases"]).duplicated() & pd.Series(mail["aliases"]).notna()
    mail.loc[dup_alias.to_numpy(), "aliases"] = None
    mail["created_date"] = pd.to_datetime("2010-01-01") + pd.to_timedelta(rng.integers(0, 5000, n), unit="D")
    mail["_defect"] = None
    mail["_related"] = None
    return mail


def _near_matches(people: pd.DataFrame, district: str) -> tuple[pd.DataFrame, list[dict]]:
    """Add mailboxes a human must decide on; return the new rows and the pairs (truth)."""
    pairs = []
    commune_people = people[(people["level"] == "commune") & (people["full_name"] != COLLIDING_NAME)]
    # (1) Same name and birth date, another commune: an official who moved, or a namesake. No citizen ID.
    a = commune_people.iloc[1]
    other = commune_people[commune_people["old_commune_code"] != a["old_commune_code"]].iloc[-1]
    moved = a.copy()
    moved["old_commune_code"] = other["old_commune_code"]
    moved["citizen_id"] = None
    # (2) Same name and commune, no birth date and no citizen ID.
    b = commune_people.iloc[4]
    nodob = b.copy()
    nodob["birth_date"] = None
    nodob["citizen_id"] = None
    extra = pd.DataFrame([moved, nodob])
    local = extra["full_name"].map(_initials_local)
    extra["address"] = local + ".cu" + extra["old_commune_code"].str[-3:] + "@" + _MAIL_DOMAIN[district]
    extra["aliases"] = None
    extra["created_date"] = pd.Timestamp("2016-05-01")
    extra["_defect"] = None
    extra["_related"] = None
    pairs.append({"kind": "same_name_birth_other_unit", "person_no": a["person_no"], "address": extra["address"].iloc[0]})
    pairs.append({"kind": "same_name_unit_no_birth", "person_no": b["person_no"], "address": extra["address"].iloc[1]})
    return extra.reset_index(drop=True), pairs


def _render_accounts(source_id: str, accounts: pd.DataFrame) -> pd.DataFrame:
    status = accounts["status"].map(_STATUS[source_id]).fillna(_UNKNOWN_STATUS[source_id])
    level = accounts["level"].map(_LEVEL[source_id])
    if source_id == "hg_vixuyen_taikhoan":
        return pd.DataFrame({
            "he_thong": accounts["system"], "ten_dang_nhap": accounts["username"], "so_cccd": accounts["citizen_id"],
            "ho_ten": accounts["full_name"], "ngay_sinh": _fmt(accounts["birth_date"], "%d/%m/%Y"),
            "cap_don_vi": level, "ma_xa": accounts["old_commune_code"], "ma_huyen": accounts["district"],
            "vai_tro": accounts["roles"], "trang_thai": status, "dang_nhap_cuoi": accounts["last_login"],
            "ngay_tao": _fmt(accounts["created_date"], "%d/%m/%Y"), "ngay_cap_nhat": accounts["updated_at"],
        })
    return pd.DataFrame({
        "ung_dung": accounts["system"], "username": accounts["username"], "cccd": accounts["citizen_id"],
        "hoten": accounts["full_name"], "ngaysinh": _fmt(accounts["birth_date"], "%Y-%m-%d"),
        "cap": level, "maxa": accounts["old_commune_code"], "mahuyen": accounts["district"],
        "quyen": accounts["roles"], "trangthai": status, "lastlogin": accounts["last_login"],
        "ngaytao": _fmt(accounts["created_date"], "%Y-%m-%d"), "capnhat": accounts["updated_at"],
    })


def _render_mail(source_id: str, mail: pd.DataFrame) -> pd.DataFrame:
    level = mail["level"].map(_LEVEL[source_id])
    if source_id == "hg_thudientu":
        return pd.DataFrame({
            "Địa chỉ thư": mail["address"], "Họ và tên": mail["full_name"], "Số CCCD": mail["citizen_id"],
            "Ngày sinh": _fmt(mail["birth_date"], "%d/%m/%Y"), "Cấp đơn vị": level, "Mã xã": mail["old_commune_code"],
            "Mã huyện": mail["district"], "Bí danh": mail["aliases"], "Ngày tạo": _fmt(mail["created_date"], "%d/%m/%Y"),
            "Ngày cập nhật": _fmt(mail["updated_at"], "%d/%m/%Y %H:%M:%S"),
        })
    return pd.DataFrame({
        "dia_chi": mail["address"], "chu_hop_thu": mail["full_name"], "cccd": mail["citizen_id"],
        "ngay_sinh": _fmt(mail["birth_date"], "%Y-%m-%d"), "cap": level, "ma_xa": mail["old_commune_code"],
        "ma_huyen": mail["district"], "bi_danh": mail["aliases"], "ngay_tao": _fmt(mail["created_date"], "%Y-%m-%d"),
        "cap_nhat": mail["updated_at"],
    })


def _fmt(values: pd.Series, fmt: str) -> pd.Series:
    text = pd.to_datetime(values).dt.strftime(fmt)
    return text.astype(object).where(text.notna(), None)


def _write_pg(uri: str, table: str, frame: pd.DataFrame, key: list[str], typed: dict[str, str]) -> None:
    import psycopg

    cols = ", ".join(f'"{c}" {typed.get(c, "TEXT")}' for c in frame.columns)
    pk = ", ".join(f'"{c}"' for c in key)
    with psycopg.connect(uri) as conn:
        conn.execute(f'CREATE TABLE "{table}" ({cols}, PRIMARY KEY ({pk}))')
        names_sql = ", ".join(f'"{c}"' for c in frame.columns)
        with conn.cursor() as cur, cur.copy(f'COPY "{table}" ({names_sql}) FROM STDIN') as copy:
            for row in frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None):
                copy.write_row(row)


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(frame.columns)
    writer.writerows(frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None))
    path.write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8"))


def _ledger(source_id: str, dataset: str, keys: pd.Series, natural: pd.Series, frame: pd.DataFrame,
            location: str, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "source_id": source_id, "dataset": dataset, "source_key": keys.to_numpy(dtype=object),
        "natural_key": natural.to_numpy(dtype=object), "defect": frame["_defect"].to_numpy(dtype=object),
        "detail": None, "old_commune_code": frame["old_commune_code"].to_numpy(dtype=object),
        "expected_new_commune_code": None, "related_key": frame["_related"].to_numpy(dtype=object),
        "location": location,
    }, columns=columns).astype(object)


def generate_account_systems(world, seed: int, size: int, cids) -> AccountSystems:  # noqa: ANN001 - generator types
    """Write the three account/mail systems of the demo world; register their connections.

    Called by :func:`sapnhap_dev.demo.generator.generate_world`; adds connections and databases to
    ``world`` and returns what was written (the caller appends the ledger).
    """
    import psycopg

    from sapnhap_dev.demo.generator import CLOCK_START, LEDGER_COLUMNS, _db_uri, _source, _substream, _units

    units = _units().communes
    clock = CLOCK_START
    all_people, all_accounts, all_mail, near = [], [], [], []
    ledgers = []
    for source_id in ACCOUNT_SOURCE_IDS:
        source = _source(source_id)
        if source.kind == "postgres":
            db = f"{world.db_prefix}_{source_id}"
            world.databases[source_id] = db
            world.connections[source.conn_id] = _db_uri(world.pg_dsn, db)
            with psycopg.connect(world.pg_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{db}"')
        else:
            folder = world.root / source_id
            folder.mkdir(parents=True, exist_ok=True)
            for f in folder.iterdir():
                f.unlink()
            world.connections[source.conn_id] = json.dumps({"conn_type": "fs", "extra": {"path": str(folder)}})
    person_no = 0
    for district, (acc_source, systems, mail_source) in DISTRICTS.items():
        rng = _substream(seed, "accounts", district)
        communes = units[units["district_code"] == district].reset_index(drop=True)
        province = communes["province_code"].iloc[0]
        people = _person_pool(rng, communes, district, province, cids, size)
        people = _collide(people, communes)
        people["person_no"] = np.arange(person_no, person_no + len(people))
        person_no += len(people)
        people.attrs["split_codes"] = communes.loc[communes["is_split"], "code"].tolist()
        accounts = _accounts_of(rng, people, acc_source, systems, clock)
        mail = _mail_of(rng, people, district)
        extra, pairs = _near_matches(people, district)
        extra["person_no"] = [-(len(near) + k + 1) for k in range(len(extra))]
        for p in pairs:
            near.append({**p, "district": district})
        mail = pd.concat([mail, extra], ignore_index=True)
        mail["updated_at"] = [clock - timedelta(days=3, seconds=int(x)) for x in rng.integers(0, 86_000, len(mail))]
        mail["_defect"] = None

        # Accounts of the district database.
        legacy = _render_accounts(acc_source, accounts)
        mapping = _source(acc_source).datasets["accounts"]
        typed = {c: "TIMESTAMP" for c in (mapping.columns["last_login"], mapping.columns["updated_at"])}
        _write_pg(world.connections[_source(acc_source).conn_id], mapping.table, legacy, mapping.primary_key, typed)
        keys = accounts["system"] + "|" + accounts["username"]
        natural = accounts["system"].map(_source(acc_source).datasets["accounts"].values["system_code"]) + "|" + accounts["username"]
        ledgers.append(_ledger(acc_source, "accounts", keys, natural, accounts, mapping.table, LEDGER_COLUMNS))

        # Mailboxes: a CSV export (Hà Giang) or a table of the district database (Sơn Dương).
        mail_source_obj = _source(mail_source)
        mapping = mail_source_obj.datasets["mail_directory"]
        legacy = _render_mail(mail_source, mail)
        if mail_source_obj.kind == "files":
            name = "danh_ba_" + (clock - timedelta(days=1)).strftime("%Y%m%d") + ".csv"
            _write_csv(world.root / mail_source / name, legacy)
            location = name
        else:
            _write_pg(world.connections[mail_source_obj.conn_id], mapping.table, legacy, mapping.primary_key,
                      {mapping.columns["updated_at"]: "TIMESTAMP"})
            location = mapping.table
        ledgers.append(_ledger(mail_source, "mail_directory", mail["address"], mail["address"], mail, location, LEDGER_COLUMNS))
        all_people.append(people)
        all_accounts.append(accounts.assign(source_id=acc_source))
        all_mail.append(mail.assign(source_id=mail_source))
    return AccountSystems(
        ledger=pd.concat(ledgers, ignore_index=True),
        people=pd.concat(all_people, ignore_index=True),
        accounts=pd.concat(all_accounts, ignore_index=True),
        mail=pd.concat(all_mail, ignore_index=True),
        near_matches=pd.DataFrame(near),
    )


__all__ = ["ACCOUNT_SOURCE_IDS", "AccountSystems", "fold_ascii", "generate_account_systems"]
