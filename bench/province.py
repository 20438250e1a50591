"""A province-scale legacy landscape for the benchmark: hundreds of legacy systems on a few servers.

The demo generator models four hand-written systems with every defect the data team has met;
it does not scale to 300 sources. Here every legacy system is one PostgreSQL schema
(``src_NNN``: ``nhan_khau`` residents, ``ho_so`` dossiers) generated inside the server with
``generate_series`` (no row crosses the client), spread over a few databases that stand for
the legacy servers. Each system serves one real old district, so codes map through the
crosswalk; a small share of rows carry the defects the quality stage must catch (unknown
commune code, decomposed Unicode, a CCCD whose gender digit disagrees).

Row ``i`` of a source is fully determined by the global row number, so a rerun with the
same sizes produces the same landscape; the per-source YAML files go to a temp directory.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import yaml
from psycopg import sql

from sapnhap.services import libpq_dsn

GENERATOR_VERSION = "1"
SURNAMES = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý", "Ma", "Triệu", "Giàng"]
MIDDLE = ["Văn", "Thị", "Đức", "Minh", "Ngọc", "Thu", "Quang", "Hữu", "Thanh", "Xuân"]
GIVEN = ["An", "Bình", "Cường", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hương", "Khánh", "Lan", "Linh", "Mai",
         "Nam", "Nga", "Phúc", "Quỳnh", "Sơn", "Thảo", "Trung", "Tuấn", "Vân", "Yến", "Ánh"]
VILLAGES = ["Thôn Bản Mán", "Thôn Nà Chang", "Tổ dân phố 3", "Thôn Khuổi Lặng", "Xóm Đồng Tâm", "Thôn Tân Lập",
            "Tổ dân phố Phan Thiết", "Thôn Làng Khẻ", "Bản Phìn Ngan", "Xóm Cầu Chéo"]
RELATIONS = ["Chủ hộ", "Vợ", "Chồng", "Con", "Cháu", "Bố", "Mẹ"]
PROCEDURES = [("1.001193", "Đăng ký khai sinh"), ("1.000656", "Đăng ký thường trú"), ("2.000908", "Chứng thực bản sao"),
              ("1.004227", "Cấp giấy phép xây dựng"), ("1.001612", "Đăng ký kết hôn"), ("2.002162", "Trợ cấp xã hội")]
STATUSES = ["Đã tiếp nhận", "Đang xử lý", "Đã trả kết quả", "Trả lại", "Hủy"]


@dataclass(frozen=True)
class LegacySource:
    """One generated legacy system: where it lives and how many rows it holds."""

    source_id: str
    server: str  # the database standing for one legacy server
    schema: str
    district: str
    province: str
    communes: tuple[str, ...]
    first_row: int  # global row number of its first resident / dossier
    residents: int
    dossiers: int


@dataclass
class Landscape:
    """All generated legacy systems, their source files and their connection strings."""

    sources: list[LegacySource]
    sources_dir: Path
    connections: dict[str, str]  # conn_id -> libpq DSN of the source's own login (its schema first on its search_path)
    logins: dict[str, tuple[str, str]]  # source_id -> (login, password)

    @property
    def servers(self) -> list[str]:
        return sorted({s.server for s in self.sources})


def _districts(n: int) -> list[tuple[str, str, tuple[str, ...]]]:
    """``n`` old districts whose communes all map one-to-one (no split needs a rule)."""
    from sapnhap.reference import load_reference

    targets = load_reference().old_commune_targets
    ok = targets.groupby("old_district_code").filter(lambda g: not g["is_split"].any() and len(g) >= 5)
    districts = []
    for district, group in ok.groupby("old_district_code", sort=True):
        districts.append((district, str(group["old_province_code"].iloc[0]), tuple(sorted(group["old_commune_code"]))))
    if not districts:
        raise RuntimeError("no unsplit old district in the reference data")
    # Recycled districts get distinct source ids; codes stay valid.
    return [districts[i % len(districts)] for i in range(n)]


def plan(residents: int, dossiers: int, sources: int, servers: int, prefix: str = "sapnhap_bench") -> list[LegacySource]:
    """Split the rows evenly over ``sources`` systems on ``servers`` legacy servers (databases ``<prefix>_srv_NN``)."""
    out = []
    first = 0
    for i, (district, province, communes) in enumerate(_districts(sources)):
        n_r = residents // sources + (1 if i < residents % sources else 0)
        n_d = dossiers // sources + (1 if i < dossiers % sources else 0)
        out.append(LegacySource(
            source_id=f"bench_src_{i:03d}", server=f"{prefix}_srv_{i % servers:02d}", schema=f"src_{i:03d}",
            district=district, province=province, communes=communes, first_row=first,
            residents=n_r, dossiers=n_d,
        ))
        first += max(n_r, n_d)
    return out


def _arr(values: list[str]) -> sql.Composable:
    return sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(sql.Literal(v) for v in values))


RESIDENTS_SQL = """
CREATE TABLE {schema}.nhan_khau (
    id_nhan_khau bigint PRIMARY KEY, so_dinh_danh text, ho_ten text, ngay_sinh date, gioi_tinh text, ma_ho text,
    quan_he_chu_ho text, ma_xa_thuong_tru text, dia_chi text, ngay_dang_ky date, thoi_diem_cap_nhat timestamp
);
INSERT INTO {schema}.nhan_khau
SELECT g,
       -- CCCD: '0' + province of birth, century/gender digit, 2-digit birth year, 6 digits (unique by g)
       CASE WHEN g % 997 = 5 THEN '0' || {province} || ((1 - g % 2)::text) || lpad((g % 80 + 20)::text, 2, '0')
            ELSE '0' || {province} || ((g % 2)::text) || lpad((g % 80 + 20)::text, 2, '0') END
         || lpad(((g / 80) % 1000000)::text, 6, '0'),
       CASE WHEN g % 10 = 3 THEN normalize(n, NFD) ELSE n END,
       make_date(1900 + g % 80 + 20, 1 + g % 12, 1 + g % 28),
       CASE WHEN g % 2 = 0 THEN 'Nam' ELSE 'Nữ' END,
       'HK' || {sid} || '-' || (g / 4)::text,
       ({relations})[1 + g % 7],
       CASE WHEN g % 503 = 7 THEN '99999' ELSE ({communes})[1 + (g / 4) % {n_communes}] END,
       ({villages})[1 + (g / 4) % 10],
       DATE '2010-01-01' + (g % 5000),
       TIMESTAMP '2024-01-01 00:00:00' + make_interval(secs => (g - {first}) * 7)
FROM generate_series({first}::int, {last}::int) AS g,
     LATERAL (SELECT ({surnames})[1 + g % 16] || ' ' || ({middle})[1 + (g / 16) % 10] || ' '
                     || ({given})[1 + (g / 160) % 24] AS n) AS name;
CREATE INDEX ON {schema}.nhan_khau (thoi_diem_cap_nhat);
"""

DOSSIERS_SQL = """
CREATE TABLE {schema}.ho_so (
    id bigint PRIMARY KEY, ma_ho_so text, ma_thu_tuc text, ten_thu_tuc text, nguoi_nop text, so_cccd text,
    ma_xa text, dia_chi_chi_tiet text, ngay_nhan date, ngay_hen_tra date, ngay_tra date, trang_thai text,
    ngay_cap_nhat timestamp
);
INSERT INTO {schema}.ho_so
SELECT g,
       'HS-' || {sid} || '-' || g::text,
       ({proc_codes})[1 + g % 6],
       ({proc_names})[1 + g % 6],
       ({surnames})[1 + g % 16] || ' ' || ({middle})[1 + (g / 16) % 10] || ' ' || ({given})[1 + (g / 160) % 24],
       '0' || {province} || ((g % 2)::text) || lpad((g % 80 + 20)::text, 2, '0') || lpad(((g / 80) % 1000000)::text, 6, '0'),
       CASE WHEN g % 509 = 11 THEN '99999' ELSE ({communes})[1 + g % {n_communes}] END,
       ({villages})[1 + g % 10],
       DATE '2023-01-01' + (g % 900),
       DATE '2023-01-01' + (g % 900) + 15,
       CASE WHEN g % 5 = 2 THEN DATE '2023-01-01' + (g % 900) + 10 END,
       ({statuses})[1 + g % 5],
       TIMESTAMP '2024-01-01 00:00:00' + make_interval(secs => (g - {first}) * 11)
FROM generate_series({first}::int, {last}::int) AS g;
CREATE INDEX ON {schema}.ho_so (ngay_cap_nhat);
"""


def _generate_source(admin: dict, src: LegacySource) -> None:
    params = dict(
        schema=sql.Identifier(src.schema), sid=sql.Literal(src.schema.removeprefix("src_")),
        province=sql.Literal(src.province), communes=_arr(list(src.communes)), n_communes=sql.Literal(len(src.communes)),
        villages=_arr(VILLAGES), relations=_arr(RELATIONS), surnames=_arr(SURNAMES), middle=_arr(MIDDLE),
        given=_arr(GIVEN), proc_codes=_arr([c for c, _ in PROCEDURES]), proc_names=_arr([n for _, n in PROCEDURES]),
        statuses=_arr(STATUSES), first=sql.Literal(src.first_row),
    )
    with psycopg.connect(libpq_dsn(dbname=src.server, **admin), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(params["schema"]))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(params["schema"]))
        conn.execute(sql.SQL(RESIDENTS_SQL).format(**params, last=sql.Literal(src.first_row + src.residents - 1)))
        conn.execute(sql.SQL(DOSSIERS_SQL).format(**params, last=sql.Literal(src.first_row + src.dossiers - 1)))
        conn.execute(sql.SQL("ANALYZE {0}.nhan_khau; ANALYZE {0}.ho_so").format(params["schema"]))


def _source_yaml(src: LegacySource) -> dict:
    return {
        "id": src.source_id,
        "name": f"Hệ thống dân cư và một cửa (mô phỏng) huyện {src.district}",
        "kind": "postgres",
        "conn_id": f"legacy_{src.source_id}",
        # Systems on one legacy server share its connection limit (see bench_pipeline.py).
        "server_pool": f"pool_{src.server}",
        "pool_slots": 1,
        "old_units": {"province": src.province, "districts": [src.district], "communes": list(src.communes)},
        "owners": [f"it.{src.source_id}@province.gov.vn.example"],
        "quality": {"warn_ratio": 0.05, "block_ratio": 0.5},
        "datasets": {
            "residents": {
                "table": "nhan_khau", "primary_key": ["id_nhan_khau"], "cursor": "thoi_diem_cap_nhat",
                "date_format": "%Y-%m-%d", "timestamp_format": "%Y-%m-%d %H:%M:%S",
                "columns": {
                    "citizen_id": "so_dinh_danh", "full_name": "ho_ten", "birth_date": "ngay_sinh",
                    "gender": "gioi_tinh", "household_code": "ma_ho", "relation_to_head": "quan_he_chu_ho",
                    "old_commune_code": "ma_xa_thuong_tru", "address_detail": "dia_chi",
                    "registered_date": "ngay_dang_ky", "updated_at": "thoi_diem_cap_nhat",
                },
                "values": {"gender": {"Nam": "nam", "Nữ": "nu"}},
            },
            "dossiers": {
                "table": "ho_so", "primary_key": ["id"], "cursor": "ngay_cap_nhat",
                "date_format": "%Y-%m-%d", "timestamp_format": "%Y-%m-%d %H:%M:%S",
                "columns": {
                    "dossier_code": "ma_ho_so", "procedure_code": "ma_thu_tuc", "procedure_name": "ten_thu_tuc",
                    "applicant_name": "nguoi_nop", "applicant_citizen_id": "so_cccd", "old_commune_code": "ma_xa",
                    "address_detail": "dia_chi_chi_tiet", "received_date": "ngay_nhan", "due_date": "ngay_hen_tra",
                    "completed_date": "ngay_tra", "status": "trang_thai", "updated_at": "ngay_cap_nhat",
                },
                "values": {"status": {"Đã tiếp nhận": "received", "Đang xử lý": "processing",
                                      "Đã trả kết quả": "completed", "Trả lại": "returned", "Hủy": "cancelled"}},
            },
        },
    }


def _marker(sources: list[LegacySource]) -> str:
    return json.dumps({"v": GENERATOR_VERSION, "sources": [s.__dict__ for s in sources]}, sort_keys=True)


def _prefix(sources: list[LegacySource]) -> str:
    return sources[0].server.rsplit("_srv_", 1)[0]


def login_of(src: LegacySource) -> str:
    """The legacy system's own login: it reads its schema, which comes first on its search_path."""
    return f"{src.server.rsplit('_srv_', 1)[0]}_{src.schema}"


def _logins(admin: dict, sources: list[LegacySource]) -> dict[str, tuple[str, str]]:
    import secrets

    out = {}
    with psycopg.connect(libpq_dsn(dbname="postgres", **admin), autocommit=True) as conn:
        for s in sources:
            name, password = login_of(s), secrets.token_urlsafe(16)
            ident = sql.Identifier(name)
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(password)))
            conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}").format(
                ident, sql.Identifier(s.server), sql.Identifier(s.schema)))
            out[s.source_id] = (name, password)
    by_server: dict[str, list[LegacySource]] = {}
    for s in sources:
        by_server.setdefault(s.server, []).append(s)
    for server, group in by_server.items():
        with psycopg.connect(libpq_dsn(dbname=server, **admin), autocommit=True) as conn:
            for s in group:
                ident, schema = sql.Identifier(login_of(s)), sql.Identifier(s.schema)
                conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(server), ident))
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, ident))
                conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, ident))
    return out


def build(admin: dict, sources: list[LegacySource], sources_dir: Path, *, reuse: bool = True, jobs: int = 2,
          log=print) -> Landscape:  # noqa: ANN001
    """Create the legacy servers' databases, schemas and logins (data kept when an identical landscape exists).

    ``admin`` holds host/port/user/password of the PostgreSQL server standing for all legacy
    servers. Writes one YAML file per source to ``sources_dir``.
    """
    servers = sorted({s.server for s in sources})
    marker = _marker(sources)
    with psycopg.connect(libpq_dsn(dbname="postgres", **admin), autocommit=True) as conn:
        existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                               (_prefix(sources).replace("_", r"\_") + r"\_srv\_%",))}
        same = reuse and set(servers) <= existing
        if same:
            with psycopg.connect(libpq_dsn(dbname=servers[0], **admin)) as first:
                row = first.execute("SELECT obj_description('public'::regnamespace)").fetchone()
            same = bool(row and row[0] == marker)
        if not same:
            for db in sorted(existing):
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
            for db in servers:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    if same:
        log(f"[bench] reusing the generated legacy landscape ({len(sources)} sources on {len(servers)} servers)")
    else:
        log(f"[bench] generating {len(sources)} legacy sources on {len(servers)} servers ...")
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(lambda s: _generate_source(admin, s), sources))
        with psycopg.connect(libpq_dsn(dbname=servers[0], **admin), autocommit=True) as first:
            first.execute(sql.SQL("COMMENT ON SCHEMA public IS {}").format(sql.Literal(marker)))
    logins = _logins(admin, sources)
    sources_dir.mkdir(parents=True, exist_ok=True)
    for old in sources_dir.glob("*.yaml"):
        old.unlink()
    connections = {}
    for s in sources:
        (sources_dir / f"{s.source_id}.yaml").write_text(
            yaml.safe_dump(_source_yaml(s), allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
        user, password = logins[s.source_id]
        connections[f"legacy_{s.source_id}"] = libpq_dsn(admin["host"], admin.get("port"), user, password, s.server)
    return Landscape(sources, sources_dir, connections, logins)


def drop(admin: dict, prefix: str) -> None:
    """Drop every database (``<prefix>_*``) and login (``<prefix>_src_*``) a landscape and its runs made."""
    like = prefix.replace("_", r"\_") + r"\_%"
    with psycopg.connect(libpq_dsn(dbname="postgres", **admin), autocommit=True) as conn:
        for (db,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (like,)).fetchall():
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
        for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
                                    (prefix.replace("_", r"\_") + r"\_src\_%",)).fetchall():
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def mutate(admin: dict, sources: list[LegacySource], fraction: float) -> int:
    """Change ``fraction`` of every source's rows (address and update time); return rows changed."""
    every = max(1, round(1 / fraction))
    changed = 0
    by_server: dict[str, list[LegacySource]] = {}
    for s in sources:
        by_server.setdefault(s.server, []).append(s)
    for server, group in by_server.items():
        with psycopg.connect(libpq_dsn(dbname=server, **admin), autocommit=True) as conn:
            for s in group:
                schema = sql.Identifier(s.schema)
                for table, key, addr, stamp in (("nhan_khau", "id_nhan_khau", "dia_chi", "thoi_diem_cap_nhat"),
                                                ("ho_so", "id", "dia_chi_chi_tiet", "ngay_cap_nhat")):
                    cur = conn.execute(
                        sql.SQL(
                            # Later than anything the source holds, so the cursor sees every change.
                            "UPDATE {s}.{t} SET {a} = {a} || ' (đã cập nhật)', "
                            "{u} = (SELECT max({u}) FROM {s}.{t}) + make_interval(secs => 1 + {k} % 86400) "
                            "WHERE {k} % {every} = 0"
                        ).format(s=schema, t=sql.Identifier(table), a=sql.Identifier(addr), u=sql.Identifier(stamp),
                                 k=sql.Identifier(key), every=sql.Literal(every))
                    )
                    changed += cur.rowcount
    return changed
