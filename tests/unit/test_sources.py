"""The source registry: every demo file validates; a broken file is a clear error naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sapnhap.sources import SourceConfigError, load_sources, parse_source

GOOD = {
    "id": "hg_test_motcua",
    "name": "Hệ thống thử",
    "kind": "postgres",
    "conn_id": "legacy_hg_test_motcua",
    "old_units": {"province": "02"},
    "owners": ["it@hagiang.gov.vn.example"],
    "datasets": {
        "dossiers": {
            "table": "ho_so",
            "primary_key": ["id"],
            "cursor": "ngay_cap_nhat",
            "columns": {"dossier_code": "ma_ho_so", "received_date": "ngay_nhan", "status": "trang_thai"},
        }
    },
}


def _write(tmp_path: Path, body: dict, name: str | None = None) -> Path:
    path = tmp_path / f"{name or body['id']}.yaml"
    path.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    return path


def test_the_demo_registry_validates_and_doubles_as_the_inventory() -> None:
    sources = load_sources()
    assert len(sources) >= 4
    assert {s.kind for s in sources} >= {"postgres", "sqlite", "files"}
    assert all(s.owners and s.name and s.old_units.province in {"02", "08"} for s in sources)
    assert len({s.pool for s in sources}) == len({s.conn_id for s in sources})


def test_a_good_file_parses(tmp_path: Path) -> None:
    source = parse_source(_write(tmp_path, GOOD))
    assert source.datasets["dossiers"].cursor == "ngay_cap_nhat"
    assert source.pool == "pool_legacy_hg_test_motcua"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"datasets": {"dossierz": GOOD["datasets"]["dossiers"]}}, "unknown dataset 'dossierz'"),
        ({"datasets": {"dossiers": {**GOOD["datasets"]["dossiers"], "columns": {"dossier_kode": "x"}}}},
         "unknown canonical columns"),
        ({"datasets": {"dossiers": {**GOOD["datasets"]["dossiers"], "columns": {"status": "trang_thai"}}}},
         "natural key columns not mapped: \\['dossier_code'\\]"),
        ({"owners": ["not-an-address"]}, "not an email address"),
        ({"owners": []}, "at least one owner"),
        ({"kind": "db2"}, "kind"),
        ({"old_units": {"province": "2"}}, "old province code has 2 digits"),
        ({"old_units": {"province": ["08", "2"]}}, "old province code has 2 digits: \\['2'\\]"),
        ({"old_units": {"districts": ["030"]}}, "give the old province code"),
        ({"connection": {"path": "exports"}}, "connection: only files, sqlite and access sources"),
        ({"datasets": {"dossiers": {**GOOD["datasets"]["dossiers"], "table": "ho_so; SELECT pg_read_file('/etc/passwd')"}}},
         "table: .*a table name"),
        ({"datasets": {"dossiers": {**GOOD["datasets"]["dossiers"],
                                    "cursor": "ngay) OR pg_read_file('/etc/passwd') IS NOT NULL OR (1"}}},
         "dossiers.cursor: a column name"),
        ({"kind": "files", "datasets": {"dossiers": {**GOOD["datasets"]["dossiers"], "table": None,
                                                     "file_pattern": "../tq_khac/ho_so_*.xlsx"}}},
         "inside the connection's folder"),
        ({"kind": "files", "datasets": {"dossiers": {**GOOD["datasets"]["dossiers"], "table": None,
                                                     "file_pattern": "/srv/exports/*.csv"}}},
         "inside the connection's folder"),
        ({"quality": {"warn_ratio": 0.6, "block_ratio": 0.5}}, "warn_ratio must not exceed block_ratio"),
        ({"datasets": {"dossiers": {**GOOD["datasets"]["dossiers"], "query": "SELECT 1"}}}, "exactly one of table"),
    ],
)
def test_a_broken_file_is_a_clear_error(tmp_path: Path, change: dict, message: str) -> None:
    path = _write(tmp_path, {**GOOD, **change})
    with pytest.raises(SourceConfigError, match=message) as err:
        parse_source(path)
    assert str(path) in str(err.value)


def test_the_file_name_is_the_source_id(tmp_path: Path) -> None:
    with pytest.raises(SourceConfigError, match="file name must be the source id"):
        parse_source(_write(tmp_path, GOOD, name="other_name"))


def test_not_yaml_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: x\nname: y\nold_units: [unclosed\nkind: postgres\n", encoding="utf-8")
    with pytest.raises(SourceConfigError, match="not valid YAML") as caught:
        parse_source(path)
    assert str(path) in str(caught.value) and "line 3" in str(caught.value)  # file and line named


def test_source_files_are_read_by_libyaml() -> None:
    """Every task instance reads the whole registry when Airflow parses the nightly: PyYAML's pure
    Python parser took 1.4 s for 300 source files, libyaml (PyYAML's C loader) a tenth of that."""
    import yaml

    from sapnhap import sources

    assert yaml.__with_libyaml__  # the wheels of PyYAML ship it
    assert sources.YAML_LOADER is yaml.CSafeLoader


def _registry_dir(tmp_path: Path) -> tuple[Path, Path]:
    """A folder with one good source and one whose owners are readable but whose kind is a typo."""
    folder = tmp_path / "sources"
    folder.mkdir(parents=True)
    _write(folder, GOOD)
    broken = _write(folder, {**GOOD, "id": "hg_typo_motcua", "kind": "postgress",
                             "owners": ["cntt@vixuyen.gov.vn.example"]})
    return folder, broken


def test_one_broken_file_disables_that_source_only(tmp_path: Path) -> None:
    from sapnhap.sources import get_source, load_registry

    folder, broken = _registry_dir(tmp_path)
    registry = load_registry(folder)
    assert [s.id for s in registry.sources] == ["hg_test_motcua"]
    assert load_sources(folder) == list(registry.sources)
    [bad] = registry.invalid
    assert bad.path == broken and bad.group_id == "hg_typo_motcua"
    assert str(broken) in bad.message and "kind" in bad.message
    assert bad.owners == ("cntt@vixuyen.gov.vn.example",)
    with pytest.raises(SourceConfigError, match="kind"):
        get_source("hg_typo_motcua", folder)
    assert get_source("hg_test_motcua", folder).id == "hg_test_motcua"


def test_sources_from_several_folders_and_a_duplicate_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from sapnhap.sources import load_registry, source_dirs

    first, _ = _registry_dir(tmp_path / "a")
    second = tmp_path / "b"
    second.mkdir()
    _write(second, {**GOOD, "id": "hg_other_motcua"})
    _write(second, GOOD)  # the same id as in the first folder
    monkeypatch.setenv("SAPNHAP_SOURCES_DIR", os.pathsep.join([str(first), str(second)]))
    assert source_dirs() == [first, second]
    registry = load_registry()
    assert [s.id for s in registry.sources] == ["hg_other_motcua", "hg_test_motcua"]
    dup = [b for b in registry.invalid if "already defined" in b.message]
    assert len(dup) == 1 and dup[0].group_id == "hg_test_motcua_invalid"


def test_the_invalid_source_task_tells_its_owners_and_fails_naming_file_and_field(tmp_path: Path, smtp_sink) -> None:
    from sapnhap.services import Services
    from sapnhap.sources import fail_invalid_source
    from sapnhap_dev.embedded import read_mail

    smtp, mail_dir = smtp_sink
    _, broken = _registry_dir(tmp_path)
    services = Services(platform_dsn="", smtp=smtp)
    with pytest.raises(SourceConfigError, match="kind") as err:
        fail_invalid_source(services, broken, run_id="r1")
    assert str(broken) in str(err.value)
    [mail] = read_mail(mail_dir)
    assert mail["To"] == "cntt@vixuyen.gov.vn.example"
    assert broken.name in str(mail["Subject"]) and "kind" in mail.get_content()


def test_a_file_without_readable_owners_tells_the_data_team(tmp_path: Path, smtp_sink,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from sapnhap.services import Services
    from sapnhap.sources import fail_invalid_source
    from sapnhap_dev.embedded import read_mail

    smtp, mail_dir = smtp_sink
    monkeypatch.setenv("SAPNHAP_DATA_TEAM_EMAIL", "dulieu@tinh.gov.vn.example")
    path = tmp_path / "hg_garbled.yaml"
    path.write_text("id: [unclosed\nowners: x", encoding="utf-8")
    with pytest.raises(SourceConfigError, match="not valid YAML"):
        fail_invalid_source(Services(platform_dsn="", smtp=smtp), path)
    [mail] = read_mail(mail_dir)
    assert mail["To"] == "dulieu@tinh.gov.vn.example"


def test_a_source_may_serve_several_old_provinces(tmp_path: Path) -> None:
    source = parse_source(_write(tmp_path, {**GOOD, "old_units": {"province": ["08", "02"], "districts": ["075"]}}))
    assert source.old_units.provinces == ["08", "02"] and source.old_units.province == "08"
    assert parse_source(_write(tmp_path, GOOD)).old_units.provinces == ["02"]


def test_sql_names_may_be_vietnamese_and_qualified(tmp_path: Path) -> None:
    mapping = {**GOOD["datasets"]["dossiers"], "table": "mot_cua.hồ_sơ", "cursor": "ngày_cập_nhật"}
    source = parse_source(_write(tmp_path, {**GOOD, "datasets": {"dossiers": mapping}}))
    assert source.datasets["dossiers"].table == "mot_cua.hồ_sơ"
