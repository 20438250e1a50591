"""Text helpers for Vietnamese unit names: normalization and accent-insensitive keys."""

from __future__ import annotations

import math
import re
import unicodedata

import pandas as pd

_SPACES = re.compile(r"\s+")
_COMBINING = re.compile(r"[\u0300-\u036f]")
_NON_WORD = re.compile(r"[^0-9a-z]+")

UNIT_TYPE_PREFIXES: tuple[str, ...] = (
    # Longest first: "Thành phố" must win over "Thị trấn"/"Thị xã" only by exact prefix.
    "Thành phố",
    "Thị trấn",
    "Thị xã",
    "Đặc khu",
    "Phường",
    "Huyện",
    "Quận",
    "Tỉnh",
    "Xã",
)


def normalize_name(value: object) -> str | None:
    """Return a unit name in NFC with single spaces and no surrounding blanks, or None if empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = unicodedata.normalize("NFC", str(value))
    text = _SPACES.sub(" ", text).strip()
    # Typographic apostrophes (B’Lao) and ASCII ones (B'Lao) name the same unit.
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return text or None


def fold(value: object) -> str:
    """Return an accent-, case- and punctuation-insensitive key: 'Xã Đắk  Lắk' -> 'xa dak lak'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = unicodedata.normalize("NFD", str(value))
    text = _COMBINING.sub("", text).replace("đ", "d").replace("Đ", "D").lower()
    return _NON_WORD.sub(" ", text).strip()


def fold_series(values: pd.Series) -> pd.Series:
    """Vectorized `fold` for a Series of text (NaN stays NaN)."""
    text = values.astype("string").str.normalize("NFD")
    text = text.str.replace(r"[\u0300-\u036f]", "", regex=True)
    text = text.str.replace("đ", "d", regex=False).str.replace("Đ", "D", regex=False)
    text = text.str.lower().str.replace(r"[^0-9a-z]+", " ", regex=True).str.strip()
    return text


def unit_type_of(name: str | None) -> str | None:
    """Return the unit type word that prefixes a name ('Xã', 'Phường', 'Thị trấn', ...), or None."""
    if not name:
        return None
    lowered = name.casefold()
    for prefix in UNIT_TYPE_PREFIXES:
        if lowered.startswith(prefix.casefold() + " "):
            return prefix
    return None
