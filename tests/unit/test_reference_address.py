"""Address text parsing and conversion: diacritics, NFD, abbreviations, name collisions."""

from __future__ import annotations

import sys
import unicodedata
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "include"))

from sapnhap.reference import load_reference, load_split_rules  # noqa: E402
from sapnhap.reference.address import convert_addresses, parse_address, resolve_address  # noqa: E402


@pytest.fixture(scope="module")
def ref():
    return load_reference("nso-2025.07")


FULL = "Thôn Nà Lừa, Xã Việt Lâm, Huyện Vị Xuyên, Tỉnh Hà Giang"


@pytest.mark.parametrize(
    "text",
    [
        FULL,
        "thon na lua, xa viet lam, huyen vi xuyen, tinh ha giang",
        unicodedata.normalize("NFD", FULL),
        "Thôn Nà Lừa, X. Việt Lâm, H. Vị Xuyên, Hà Giang",
        "THÔN NÀ LỪA , XÃ VIỆT LÂM ,HUYỆN VỊ XUYÊN, TỈNH HÀ GIANG",
        "Thôn Nà Lừa; Việt Lâm; Vị Xuyên; Hà Giang",
    ],
)
def test_parse_variants(text):
    parsed = parse_address(text)
    assert parsed["commune_name"] == "viet lam"
    assert parsed["district_name"] == "vi xuyen"
    assert parsed["province_name"] == "ha giang"
    assert unicodedata.normalize("NFC", parsed["detail"]).casefold() in {"thôn nà lừa", "thon na lua"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12 Lê Lợi, P. Bến Nghé, Q.1, TP.HCM", ("79", "760", "26740")),
        ("Số 12 Lê Lợi, Phường Bến Nghé, Quận 1, Thành phố Hồ Chí Minh", ("79", "760", "26740")),
        ("P.4, TP. Tân An, Long An", ("80", "794", "27691")),
        ("Phường 04, Thành phố Tân An, Tỉnh Long An", ("80", "794", "27691")),
        ("TT. Vị Xuyên, H. Vị Xuyên, T. Hà Giang", ("02", "030", "00913")),
        ("Xã Tân An, Huyện Văn Bàn, Tỉnh Lào Cai", ("10", "089", "03079")),
        ("Xã Tân An, Tỉnh Lào Cai", ("10", "089", "03079")),  # unique inside its province
    ],
)
def test_resolve_through_the_parent_chain(ref, text, expected):
    result = resolve_address(parse_address(text), ref)
    assert (result["old_province_code"], result["old_district_code"], result["old_commune_code"]) == expected
    assert result["address_status"] == "resolved"


def test_colliding_names_are_not_guessed(ref):
    result = resolve_address(parse_address("Xã Tân An"), ref)
    assert result["address_status"] == "ambiguous" and result["old_commune_code"] is None
    partial = resolve_address(parse_address("Hà Nội"), ref)
    assert partial["address_status"] == "partial" and partial["old_province_code"] == "01"
    assert resolve_address(parse_address(None), ref)["address_status"] == "unparsed"


def test_convert_addresses_to_new_units(ref):
    texts = pd.Series(
        [
            FULL,
            "Thôn Bản Đông, Xã Việt Lâm, Huyện Vị Xuyên, Tỉnh Hà Giang",
            "Thôn Nà Pồng, Xã Việt Lâm, Huyện Vị Xuyên, Tỉnh Hà Giang",  # no rule: review
            "12 Lê Lợi, P. Bến Nghé, Q.1, TP.HCM",
            FULL,
            None,
        ],
        index=[10, 11, 12, 13, 14, 15],
    )
    out = convert_addresses(texts, ref, rules=load_split_rules("08"))
    assert out.index.tolist() == [10, 11, 12, 13, 14, 15]
    assert out["address_detail"].tolist()[:4] == ["Thôn Nà Lừa", "Thôn Bản Đông", "Thôn Nà Pồng", "12 Lê Lợi"]
    assert out["new_commune_code"].astype(object).where(out["new_commune_code"].notna(), None).tolist() == [
        "00913", "00967", None, "26740", "00913", None,
    ]  # fmt: skip
    assert out["mapping_status"].tolist() == ["mapped", "mapped", "review", "mapped", "mapped", "missing_code"]
    assert out["mapping_candidates"].iloc[2] == "00913|00967"
