"""Pure functions of the accounts work: matching, role re-mapping, addresses, forwarding, LDIF, reviews."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sapnhap.accounts import (
    RoleRulesError,
    assign_addresses,
    build_account_set,
    build_unit_reviews,
    directory_ldif,
    forwarding_map,
    load_role_rules,
    match_people,
    parse_ldif,
    remap_roles,
)
from sapnhap.accounts.directory import ldif_line, local_part
from sapnhap.accounts.report import build_review_email
from sapnhap.reference import load_reference

# Real units of new Tuyên Quang (08): old communes 00703/00706 (Vị Xuyên) and the merged targets.


@pytest.fixture(scope="module")
def ref():
    return load_reference()


@pytest.fixture(scope="module")
def units(ref) -> dict:
    cw = ref.old_commune_targets
    vx = cw[(cw["old_district_code"] == "030") & ~cw["is_split"]]
    merged = vx.groupby("new_commune_code")["old_commune_code"].agg(list)
    target = next(code for code, olds in merged.items() if len(olds) >= 2)
    olds = merged[target]
    other = vx[vx["new_commune_code"] != target].iloc[0]
    split = cw[(cw["old_district_code"] == "030") & cw["is_split"]]["old_commune_code"].iloc[0]
    return {"new": target, "old_a": olds[0], "old_b": olds[1], "other_old": other["old_commune_code"],
            "other_new": other["new_commune_code"], "split": split}


def _acc(rows: list[dict]) -> pd.DataFrame:
    base = {"system_code": "sys_a", "citizen_id": None, "birth_date": None, "unit_level": "commune",
            "old_commune_code": None, "unit_district_code": "030", "new_province_code": "08", "new_commune_code": None,
            "roles": "chu_tich_xa", "status": "active", "last_login": pd.Timestamp("2025-11-20"),
            "mapping_status": "mapped", "updated_at": pd.Timestamp("2025-11-28"), "source_id": "s", "source_key": "k"}
    return pd.DataFrame([{**base, **r} for r in rows])


def _mail(rows: list[dict]) -> pd.DataFrame:
    base = {"owner_citizen_id": None, "owner_birth_date": None, "unit_level": "commune", "old_commune_code": None,
            "unit_district_code": "030", "new_province_code": "08", "new_commune_code": None, "aliases": None,
            "updated_at": pd.Timestamp("2025-11-28"), "source_id": "m", "source_key": "k", "mapping_status": "mapped"}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_matching_rules_and_review(units) -> None:
    new, a, b = units["new"], units["old_a"], units["old_b"]
    accounts = _acc([
        # One official: same CCCD in two systems, once spelled in decomposed Unicode.
        {"username": "u1", "full_name": "Nguyễn Văn Bình", "citizen_id": "002080551192", "birth_date": "1980-10-07",
         "old_commune_code": a, "new_commune_code": new},
        {"system_code": "sys_b", "username": "u1b", "full_name": "Nguye\u0302\u0303n Văn Bình", "citizen_id": "002080551192",
         "old_commune_code": a, "new_commune_code": new},
        # Same name + birth date + same NEW commune (another old commune merged into it), no CCCD: same person.
        {"system_code": "sys_b", "username": "u1c", "full_name": "NGUYỄN VĂN BÌNH", "birth_date": "1980-10-07",
         "old_commune_code": b, "new_commune_code": new},
        # Same name + birth date, another unit, no CCCD: review, not merged.
        {"username": "u2", "full_name": "Nguyễn Văn Bình", "birth_date": "1980-10-07",
         "old_commune_code": units["other_old"], "new_commune_code": units["other_new"]},
        # Two namesakes with different CCCDs in one commune: two people, no review between them.
        {"username": "u3", "full_name": "Lò Thị Mai", "citizen_id": "002190000001", "birth_date": "1990-01-01",
         "old_commune_code": a, "new_commune_code": new},
        {"username": "u4", "full_name": "Lò Thị Mai", "citizen_id": "002191000002", "birth_date": "1991-01-01",
         "old_commune_code": a, "new_commune_code": new},
    ])
    mail = _mail([
        # Same name + unit, no birth date, no CCCD: review only.
        {"address": "mailt.703@hagiang.gov.vn", "owner_full_name": "Lò Thị Mai", "old_commune_code": a,
         "new_commune_code": new},
        {"address": "binhnv.703@hagiang.gov.vn", "owner_full_name": "Nguyễn Văn Bình", "owner_citizen_id": "002080551192",
         "old_commune_code": a, "new_commune_code": new},
    ])
    people, links, review = match_people(accounts, mail)
    person = links.set_index("record_id")["person_id"]
    assert person["account:sys_a:u1"] == person["account:sys_b:u1b"] == person["account:sys_b:u1c"] \
        == person["mail:binhnv.703@hagiang.gov.vn"]
    assert person["account:sys_a:u2"] != person["account:sys_a:u1"]
    assert person["account:sys_a:u3"] != person["account:sys_a:u4"]
    assert person["mail:mailt.703@hagiang.gov.vn"] not in {person["account:sys_a:u3"], person["account:sys_a:u4"]}
    assert len(people) == 5 and links["record_id"].is_unique and len(links) == len(accounts) + len(mail)
    kinds = set(review["kind"])
    assert {"same_name_birth_other_unit", "same_name_unit_no_birth"} <= kinds
    pair = review[review["kind"] == "same_name_birth_other_unit"].iloc[0]
    assert {pair["person_id_a"], pair["person_id_b"]} == {person["account:sys_a:u1"], person["account:sys_a:u2"]}
    # Reviewed pairs are never the same person.
    assert (review["person_id_a"] != review["person_id_b"]).all()
    # Stable ids: the same input gives the same people.
    again, _, _ = match_people(accounts.iloc[::-1], mail)
    assert set(again["person_id"]) == set(people["person_id"])


def test_match_people_links_every_record_at_scale() -> None:
    # Outcome at scale only: its cost belongs in the benchmark, never in a timed test.
    rng = np.random.default_rng(1)
    n = 100_000
    names = np.array(["Nguyễn Văn An", "Trần Thị Bình", "Lê Minh Châu", "Hoàng Đức Dũng"], dtype=object)
    accounts = pd.DataFrame({
        "system_code": "sys", "username": [f"u{i}" for i in range(n)],
        "full_name": names[rng.integers(0, 4, n)] + " " + rng.integers(0, 5000, n).astype(str),
        "citizen_id": np.where(rng.random(n) < 0.5, [f"0020{i:08d}" for i in rng.integers(0, n // 2, n)], None),
        "birth_date": pd.Timestamp("1970-01-01") + pd.to_timedelta(rng.integers(0, 9000, n), unit="D"),
        "unit_level": "commune", "old_commune_code": "00703", "unit_district_code": "030",
        "new_province_code": "08", "new_commune_code": rng.integers(0, 50, n).astype(str),
        "updated_at": pd.Timestamp("2025-11-01"),
    })
    mail = pd.DataFrame(columns=["address", "owner_full_name"])
    people, links, _ = match_people(accounts, mail)
    assert len(links) == n and len(people) < n
    assert links["record_id"].is_unique and links["person_id"].isin(people["person_id"]).all()


def test_role_rules_file_is_valid_and_refuses_bad_rules(tmp_path: Path) -> None:
    rules = load_role_rules()
    assert {"commune", "district"} == set(rules.table["level"])
    assert rules.table.loc[rules.table["new_role"].isna(), "pending_vi"].notna().all()
    bad = tmp_path / "r.yaml"
    bad.write_text("rules:\n  - {id: x, level: district, legacy_role: a, new_role: b, scope: commune}\n", encoding="utf-8")
    with pytest.raises(RoleRulesError, match="district_communes"):
        load_role_rules(bad)
    bad.write_text("rules:\n  - {id: x, level: commune, legacy_role: a, new_role: null}\n", encoding="utf-8")
    with pytest.raises(RoleRulesError, match="pending_vi"):
        load_role_rules(bad)


def test_remap_roles_scopes_and_orphans(ref, units) -> None:
    new = units["new"]
    accounts = _acc([
        {"username": "xa", "full_name": "A", "roles": "chu_tich_xa;ke_toan_ngan_sach_xa", "old_commune_code": units["old_a"],
         "new_commune_code": new},
        {"username": "huyen", "full_name": "B", "unit_level": "district", "roles": "chuyen_vien_huyen", "new_province_code": None},
        {"username": "vt", "full_name": "C", "unit_level": "district", "roles": "van_thu_huyen", "new_province_code": None},
        {"username": "ld", "full_name": "D", "unit_level": "district", "roles": "lanh_dao_phong"},
        {"username": "split", "full_name": "E", "old_commune_code": units["split"], "mapping_status": "review"},
        {"username": "off", "full_name": "F", "status": "disabled", "old_commune_code": units["old_a"], "new_commune_code": new},
        {"username": "none", "full_name": "G", "roles": None, "old_commune_code": units["old_a"], "new_commune_code": new},
    ])
    granted, orphans = remap_roles(accounts, load_role_rules(), ref)
    xa = granted[granted["username"] == "xa"].iloc[0]
    assert (xa["new_role"], xa["scope_level"], xa["scope_code"]) == ("lanh_dao_ubnd_xa", "commune", new)
    assert xa["new_reach"] >= 2 and xa["widened"] and xa["widening"] == "merged_communes"
    huyen = granted[granted["username"] == "huyen"].iloc[0]
    assert (huyen["scope_level"], huyen["scope_code"], huyen["widening"]) == ("province", "08", "province")
    vt = granted[granted["username"] == "vt"]
    assert len(vt) > 1 and (vt["scope_level"] == "commune").all()
    reasons = dict(zip(orphans["username"] + "/" + orphans["legacy_role"].fillna("-"), orphans["reason"], strict=True))
    assert reasons["xa/ke_toan_ngan_sach_xa"] == "no_rule"
    assert reasons["ld/lanh_dao_phong"] == "pending_decision"
    assert reasons["split/chu_tich_xa"] == "unit_undecided"
    assert reasons["off/chu_tich_xa"] == "disabled"
    assert reasons["none/-"] == "no_roles"
    # Every (account, legacy role) is granted or orphaned, never both.
    got = set(zip(granted["username"], granted["legacy_role"], strict=True))
    lost = set(zip(orphans["username"], orphans["legacy_role"], strict=True))
    assert not got & lost


def test_addresses_collide_by_citizen_id_and_skip_old_addresses(ref, units) -> None:
    new = units["new"]
    people = pd.DataFrame({
        "person_id": ["P1", "P2", "P3", "P4"],
        "full_name": ["Nguyễn Văn An", "Nguyễn Văn An", "Nguyễn Văn An", "Đặng Thị Hồng Nhung"],
        "citizen_id": ["002090000009", "002080000001", None, None],
        "new_province_code": "08", "new_commune_code": [new, new, new, None],
        "unit_level": ["commune", "commune", "commune", "district"],
    })
    slug = local_part(pd.Series(["Nguyễn Văn An"])).iloc[0]
    assert slug == "annv"
    out = assign_addresses(people, ref).set_index("person_id")["address"]
    assert out.is_unique
    commune = out["P2"].split(".", 1)[1]
    assert out["P2"] == f"annv.{commune}" and out["P1"] == f"annv2.{commune}" and out["P3"] == f"annv3.{commune}"
    assert out["P4"] == "nhungdth@tuyenquang.gov.vn"
    # An address that was someone else's old address is skipped.
    reserved = pd.DataFrame({"address": [out["P2"]], "person_id": ["P9"]})
    again = assign_addresses(people, ref, reserved=reserved).set_index("person_id")["address"]
    assert again.is_unique and out["P2"] not in set(again)


def test_forwarding_covers_every_old_address_once() -> None:
    people = pd.DataFrame({"person_id": ["P1", "P2"], "address": ["a@x.vn", "b@x.vn"]})
    links = pd.DataFrame({"record_id": ["mail:old1@h.vn", "mail:old2@h.vn", "mail:old3@h.vn"],
                          "person_id": ["P1", "P1", "P2"]})
    mail = pd.DataFrame({"address": ["old1@h.vn", "OLD2@h.vn", "old3@h.vn"],
                         "aliases": ["al@h.vn;old3@h.vn", None, "al@h.vn"]})
    fw = forwarding_map(people, links, mail, valid_from=date(2025, 12, 1), days=365)
    assert fw["old_address"].is_unique
    got = dict(zip(fw["old_address"], fw["new_address"], strict=True))
    assert got == {"old1@h.vn": "a@x.vn", "old2@h.vn": "a@x.vn", "old3@h.vn": "b@x.vn", "al@h.vn": "a@x.vn"}
    assert (fw["valid_to"] == date(2026, 12, 1)).all()


def test_ldif_is_rfc2849() -> None:
    assert ldif_line("mail", "a@b.vn") == ["mail: a@b.vn"]
    assert ldif_line("cn", "Nguyễn Văn An")[0].startswith("cn:: ")
    assert ldif_line("description", " leading space")[0].startswith("description:: ")
    long = ldif_line("description", "x" * 200)
    assert all(len(line) <= 76 for line in long) and all(line.startswith(" ") for line in long[1:])
    directory = pd.DataFrame([{
        "new_province_code": "08", "new_province_name": "Tỉnh Tuyên Quang", "new_commune_code": "00700",
        "new_commune_name": "Xã Vị Xuyên", "person_id": "P1", "display_name": "Nguyễn Văn An", "given_name": "An",
        "family_name": "Nguyễn", "address": "annv.vixuyen@tuyenquang.gov.vn", "unit_pending": False,
    }])
    data = directory_ldif(directory)
    assert data.startswith(b"version: 1\n")
    entries = parse_ldif(data)
    person = [e for e in entries if "inetOrgPerson" in e["objectClass"]][0]
    assert person["cn"] == ["Nguyễn Văn An"] and person["mail"] == ["annv.vixuyen@tuyenquang.gov.vn"]
    assert person["dn"][0] == "mail=annv.vixuyen@tuyenquang.gov.vn,ou=00700,ou=08,dc=tuyenquang,dc=gov,dc=vn"


def test_review_email_is_masked(ref, units) -> None:
    new = units["new"]
    accounts = _acc([
        {"username": "annv.00703", "full_name": "Nguyễn Văn An", "citizen_id": "002080551192", "birth_date": "1980-10-07",
         "roles": "chu_tich_xa;ke_toan_ngan_sach_xa", "old_commune_code": units["old_a"], "new_commune_code": new,
         "last_login": None},
        {"system_code": "sys_b", "username": "annv2", "full_name": "Nguyễn Văn An", "citizen_id": "002080551192",
         "old_commune_code": units["old_a"], "new_commune_code": new},
        {"username": "ld", "full_name": "Trần Thị Hoa", "unit_level": "district", "roles": "lanh_dao_phong",
         "citizen_id": "008190001234"},
    ])
    mail = _mail([{"address": "annv.703@hagiang.gov.vn", "owner_full_name": "Nguyễn Văn An",
                   "owner_citizen_id": "002080551192", "old_commune_code": units["old_a"], "new_commune_code": new}])
    aset = build_account_set(accounts, mail, ref, as_of=date(2025, 12, 1))
    assert set(aset.legacy_accounts["outcome"]) == {"mapped", "merged", "orphaned"}
    legacy = aset.legacy_accounts
    reviews = build_unit_reviews(legacy, aset.role_assignments, aset.orphaned_roles, aset.match_review, aset.people, ref)
    assert {r.owner.split("@")[0].split(".")[0] for r in reviews} == {"vanphong", "sonoivu"}
    for r in reviews:
        msg = build_review_email(r, from_addr="sapnhap@test.example", as_of="01/12/2025", run_id="r1")
        body = msg.get_body(("html",)).get_content() + msg.get_body(("plain",)).get_content()
        assert "Nguyễn Văn An" not in body and "Trần Thị Hoa" not in body
        assert "002080551192" not in body and "008190001234" not in body
        assert "annv.00703" not in body
