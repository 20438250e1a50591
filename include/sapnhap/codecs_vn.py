"""Legacy Vietnamese 8-bit encodings as Python codecs: ``"tcvn3"`` (ABC) and ``"vni"`` (VNI Windows).

Many district and commune systems stored text for the TCVN3 (ABC, ``.VnTime``) or VNI
(``VNI-Times``) fonts: the bytes are Latin-1 to any other program and only read as Vietnamese
through those fonts. Registered on import of :mod:`sapnhap`, so any reader decodes them by
name: ``data.decode("tcvn3")``, ``open(path, encoding="vni")``, ``encoding: tcvn3`` in a source
file. Both decode to NFC Unicode and encode it back (round trip).

- **TCVN3** follows TCVN 5712:1993: one byte per letter. Bytes 0xA0-0xFF hold the lower-case
  toned letters and the bare Ă Â Ê Ô Ơ Ư Đ; 0x80-0x9F and a few positions above 0xA0 the
  upper-case toned letters of the full (VN1) table; 0xB0-0xB4 the five tone marks, which combine
  with the letter before them. Bytes below 0x80 are ASCII (VN1's letters at C0 control positions
  are not used: TCVN3 fonts wrote upper-case toned letters with a separate upper-case font, whose
  text decodes to lower case here).
- **VNI** writes a letter and then its marks as a second byte shown as a Windows-1252 letter
  ("Vieät" for "Việt"); i-letters, ơ, ư, đ and ỵ are single bytes.
"""

from __future__ import annotations

import codecs
import re
import unicodedata

_TONES = ("\u0301", "\u0300", "\u0309", "\u0303", "\u0323")  # sắc, huyền, hỏi, ngã, nặng


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


# -- TCVN3 ------------------------------------------------------------------------------------

# TCVN 5712:1993 (VN1), bytes 0x80-0xFF, as code points.
_TCVN_HIGH = (
    0x00C0, 0x1EA2, 0x00C3, 0x00C1, 0x1EA0, 0x1EB6, 0x1EAC, 0x00C8, 0x1EBA, 0x1EBC, 0x00C9, 0x1EB8, 0x1EC6, 0x00CC, 0x1EC8, 0x0128,
    0x00CD, 0x1ECA, 0x00D2, 0x1ECE, 0x00D5, 0x00D3, 0x1ECC, 0x1ED8, 0x1EDC, 0x1EDE, 0x1EE0, 0x1EDA, 0x1EE2, 0x00D9, 0x1EE6, 0x0168,
    0x00A0, 0x0102, 0x00C2, 0x00CA, 0x00D4, 0x01A0, 0x01AF, 0x0110, 0x0103, 0x00E2, 0x00EA, 0x00F4, 0x01A1, 0x01B0, 0x0111, 0x1EB0,
    0x0300, 0x0309, 0x0303, 0x0301, 0x0323, 0x00E0, 0x1EA3, 0x00E3, 0x00E1, 0x1EA1, 0x1EB2, 0x1EB1, 0x1EB3, 0x1EB5, 0x1EAF, 0x1EB4,
    0x1EAE, 0x1EA6, 0x1EA8, 0x1EAA, 0x1EA4, 0x1EC0, 0x1EB7, 0x1EA7, 0x1EA9, 0x1EAB, 0x1EA5, 0x1EAD, 0x00E8, 0x1EC2, 0x1EBB, 0x1EBD,
    0x00E9, 0x1EB9, 0x1EC1, 0x1EC3, 0x1EC5, 0x1EBF, 0x1EC7, 0x00EC, 0x1EC9, 0x1EC4, 0x1EBE, 0x1ED2, 0x0129, 0x00ED, 0x1ECB, 0x00F2,
    0x1ED4, 0x1ECF, 0x00F5, 0x00F3, 0x1ECD, 0x1ED3, 0x1ED5, 0x1ED7, 0x1ED1, 0x1ED9, 0x1EDD, 0x1EDF, 0x1EE1, 0x1EDB, 0x1EE3, 0x00F9,
    0x1ED6, 0x1EE7, 0x0169, 0x00FA, 0x1EE5, 0x1EEB, 0x1EED, 0x1EEF, 0x1EE9, 0x1EF1, 0x1EF3, 0x1EF7, 0x1EF9, 0x00FD, 0x1EF5, 0x1ED0,
)
_TCVN_DECODE = "".join(chr(c) for c in range(0x80)) + "".join(chr(c) for c in _TCVN_HIGH)
_TCVN_ENCODE: dict[str, bytes] = {ch: bytes([b]) for b, ch in enumerate(_TCVN_DECODE)}
_TCVN_MARK_BYTES = frozenset(range(0xB0, 0xB5))


def _tcvn_compositions() -> None:
    """Letters with no byte of their own (Ú, Ứ, Ỳ...) are written as their letter and a tone mark byte."""
    for cp in range(0x00C0, 0x1F00):
        ch = chr(cp)
        if ch in _TCVN_ENCODE:
            continue
        parts = unicodedata.normalize("NFD", ch)
        if len(parts) < 2 or parts[-1] not in _TONES:
            continue
        base = _nfc(parts[:-1])
        if base in _TCVN_ENCODE:
            _TCVN_ENCODE[ch] = _TCVN_ENCODE[base] + _TCVN_ENCODE[parts[-1]]


_tcvn_compositions()
_TCVN_ENCODE_BY_ORD = {ord(ch): b for ch, b in _TCVN_ENCODE.items()}


def _tcvn_decode(data: bytes, errors: str = "strict") -> str:
    text, _ = codecs.charmap_decode(bytes(data), errors, _TCVN_DECODE)
    return _nfc(text)


# -- VNI --------------------------------------------------------------------------------------

# (Unicode base letter, VNI spelling of it, VNI mark bytes for sắc, huyền, hỏi, ngã, nặng).
_PLAIN_MARKS = ("Ù", "Ø", "Û", "Õ", "Ï")
_CIRCUMFLEX_MARKS = ("Á", "À", "Å", "Ã", "Ä")  # replace the circumflex byte "Â"
_BREVE_MARKS = ("É", "È", "Ú", "Ü", "Ë")  # replace the breve byte "Ê"
_VNI_GROUPS = (
    ("A", "A", "A", _PLAIN_MARKS), ("Â", "AÂ", "A", _CIRCUMFLEX_MARKS), ("Ă", "AÊ", "A", _BREVE_MARKS),
    ("E", "E", "E", _PLAIN_MARKS), ("Ê", "EÂ", "E", _CIRCUMFLEX_MARKS),
    ("O", "O", "O", _PLAIN_MARKS), ("Ô", "OÂ", "O", _CIRCUMFLEX_MARKS), ("Ơ", "Ô", "Ô", _PLAIN_MARKS),
    ("U", "U", "U", _PLAIN_MARKS), ("Ư", "Ö", "Ö", _PLAIN_MARKS), ("Y", "Y", "Y", _PLAIN_MARKS),
)
# Single bytes: the i-letters (sắc, huyền, hỏi, ngã, nặng), ỵ and đ.
_VNI_SINGLE = {"Í": "Í", "Ì": "Ì", "Ỉ": "Æ", "Ĩ": "Ó", "Ị": "Ò", "Ỵ": "Î", "Đ": "Ñ"}


def _vni_tables() -> dict[str, str]:
    """Unicode letter -> VNI spelling (as Windows-1252 text), upper and lower case."""
    upper: dict[str, str] = {}
    for letter, spelling, stem, marks in _VNI_GROUPS:
        if spelling != letter:
            upper[letter] = spelling
        for tone, mark in zip(_TONES, marks, strict=True):
            toned = _nfc(letter + tone)
            if toned not in _VNI_SINGLE:
                upper[toned] = stem + mark
    upper.update(_VNI_SINGLE)
    table = dict(upper)
    table.update({k.lower(): v.lower() for k, v in upper.items()})
    return table


_VNI_ENCODE = _vni_tables()
_VNI_DECODE = {v: k for k, v in _VNI_ENCODE.items()}
_VNI_RE = re.compile("|".join(re.escape(s) for s in sorted(_VNI_DECODE, key=len, reverse=True)))
# Bytes that may start a two-byte VNI letter: an incremental decoder keeps one back.
_VNI_LEADS = frozenset(s[0].encode("cp1252")[0] for s in _VNI_DECODE if len(s) == 2)


def _cp1252_text(data: bytes, errors: str) -> str:
    # The five bytes Windows-1252 leaves undefined read as Latin-1, as Windows shows them.
    return "".join(
        chunk.decode("cp1252", errors) if i % 2 == 0 else chunk.decode("latin-1")
        for i, chunk in enumerate(re.split(rb"([\x81\x8d\x8f\x90\x9d]+)", bytes(data)))
    )


def _vni_decode(data: bytes, errors: str = "strict") -> str:
    return _VNI_RE.sub(lambda m: _VNI_DECODE[m.group(0)], _cp1252_text(data, errors))


def _vni_encode_text(text: str) -> str:
    return "".join(_VNI_ENCODE.get(ch, ch) for ch in _nfc(text))


# -- codec plumbing ---------------------------------------------------------------------------


def _make_codec(name: str, decode, encode, holds_back) -> codecs.CodecInfo:  # noqa: ANN001
    """A CodecInfo from whole-text ``decode``/``encode`` and the test for a byte to keep back."""
    def decode_all(data: bytes, errors: str = "strict") -> tuple[str, int]:
        return decode(data, errors), len(data)

    def encode_all(text: str, errors: str = "strict") -> tuple[bytes, int]:
        return encode(text, errors), len(text)

    class IncrementalDecoder(codecs.BufferedIncrementalDecoder):
        def _buffer_decode(self, data: bytes, errors: str, final: bool) -> tuple[str, int]:
            # A letter at the end of a chunk may combine with a mark at the start of the next.
            cut = len(data) - 1 if data and not final and holds_back(data) else len(data)
            return decode(data[:cut], errors), cut

    class IncrementalEncoder(codecs.IncrementalEncoder):
        def encode(self, text: str, final: bool = False) -> bytes:
            return encode(text, self.errors)

    class StreamReader(codecs.StreamReader):
        # StreamReader cannot tell the last chunk (it would keep a held-back byte forever): whole
        # reads decode everything; open() and TextIOWrapper use the incremental decoder above.
        decode = staticmethod(decode_all)

    class StreamWriter(codecs.StreamWriter):
        encode = staticmethod(encode_all)

    return codecs.CodecInfo(
        name=name, encode=encode_all, decode=decode_all, incrementalencoder=IncrementalEncoder,
        incrementaldecoder=IncrementalDecoder, streamreader=StreamReader, streamwriter=StreamWriter,
    )


def _tcvn_encode(text: str, errors: str = "strict") -> bytes:
    return codecs.charmap_encode(_nfc(text), errors, _TCVN_ENCODE_BY_ORD)[0]


def _vni_encode(text: str, errors: str = "strict") -> bytes:
    return _vni_encode_text(text).encode("cp1252", errors)


def _tcvn_holds_back(data: bytes) -> bool:
    return data[-1] not in _TCVN_MARK_BYTES


def _vni_holds_back(data: bytes) -> bool:
    return data[-1] in _VNI_LEADS


_CODECS = {
    "tcvn3": _make_codec("tcvn3", _tcvn_decode, _tcvn_encode, _tcvn_holds_back),
    "vni": _make_codec("vni", _vni_decode, _vni_encode, _vni_holds_back),
}
_ALIASES = {"tcvn3": "tcvn3", "tcvn_3": "tcvn3", "abc": "tcvn3", "vni": "vni", "vni_windows": "vni"}


def _search(name: str) -> codecs.CodecInfo | None:
    key = _ALIASES.get(name.lower().replace("-", "_").replace(" ", "_"))
    return _CODECS[key] if key else None


def register() -> None:
    """Register the codecs (idempotent: a second registration finds the first)."""
    try:
        codecs.lookup("tcvn3")
    except LookupError:
        codecs.register(_search)


register()
