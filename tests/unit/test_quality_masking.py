"""Masking never leaks a full citizen ID or a full name."""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd
import pytest

from sapnhap.quality.masking import mask_citizen_id, mask_name


def test_citizen_id_keeps_first_and_last_three():
    assert mask_citizen_id(pd.Series(["001203012345"])).tolist() == ["001******345"]


@pytest.mark.parametrize("value", ["12345", "1234567", "123456789", "", "abc"])
def test_short_or_odd_ids_are_fully_masked(value):
    masked = mask_citizen_id(pd.Series([value])).iloc[0]
    assert masked == "*" * len(value.strip())


def test_missing_stays_missing_and_index_is_kept():
    s = pd.Series(["001203012345", None, np.nan], index=[10, 11, 12])
    out = mask_citizen_id(s)
    assert list(out.index) == [10, 11, 12]
    assert out.iloc[0] == "001******345" and out.iloc[1] is None and out.iloc[2] is None


def test_random_ids_never_leak():
    rng = np.random.default_rng(3)
    ids = pd.Series(np.char.mod("%012d", rng.integers(0, 10**12, 2000)))
    masked = mask_citizen_id(ids)
    assert (masked.str.len() == 12).all()
    for original, m in zip(ids, masked, strict=True):
        assert original not in m and m[3:9] == "******"


def test_numeric_ids_are_masked_too():
    assert mask_citizen_id([1203012345]).tolist() == ["120****345"]


def test_names_become_initials():
    assert mask_name(pd.Series(["Nguyễn Văn An"])).tolist() == ["N***** V** A*"]


def test_decomposed_names_are_masked_after_nfc():
    nfd = unicodedata.normalize("NFD", "Nguyễn Thị Ánh")
    out = mask_name(pd.Series([nfd])).iloc[0]
    assert out == "N***** T** Á**"
    assert "\u0303" not in out and "n" not in out


@pytest.mark.parametrize("name", ["Nguyễn Văn An", "Lê Thị Bình", "Đặng  Quốc   Hùng", "A", "Ê Đê"])
def test_no_word_of_a_name_survives(name):
    masked = mask_name(pd.Series([name])).iloc[0]
    assert masked != name
    for word in name.split():
        if len(word) > 1:
            assert word not in masked


def test_name_missing_stays_missing():
    assert mask_name(pd.Series([None, "Lan"])).tolist() == [None, "L**"]
