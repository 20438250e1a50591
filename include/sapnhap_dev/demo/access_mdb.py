"""A minimal writer of Access 2000 (Jet 4) .mdb files: the demo's and the tests' commune-tool files.

No Access writer installs from the registries the project uses (Jackcess needs Maven, mdbtools
only reads), so the small legacy Access files of the demo world and the tests are built with this: the page format of the mdbtools HACKING notes and
Jackcess, read back by mdbtools (the extract's reader) and by access-parser alike. It writes what a
small Access tool holds: one header page, the MSysObjects catalog, per table a definition page,
usage maps and data pages; columns Long Integer, Integer, Date/Time and Text, Text stored as
Access does by default ("Unicode compression": Latin bytes, a 0x00 switching to two-byte
characters for Vietnamese letters and back). No indexes, no memo, no deleted rows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

PAGE = 4096
LONG, INTEGER, DATETIME, TEXT, OLE = 0x04, 0x03, 0x08, 0x0A, 0x0B
_FIXED_SIZE = {LONG: 4, INTEGER: 2, DATETIME: 8}
_EPOCH = datetime(1899, 12, 30)


@dataclass
class Column:
    name: str
    type: int
    length: int = 255  # Text: characters


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out, i, j = bytearray(), 0, 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def _header_page() -> bytes:
    page = bytearray(PAGE)
    page[0:4] = b"\x00\x01\x00\x00"
    page[4:20] = b"Standard Jet DB\x00"
    page[0x14:0x18] = struct.pack("<I", 1)  # Jet 4 (Access 2000-2003)
    # The database header block is RC4-encrypted with a fixed key; all zero in clear: no page encryption.
    page[0x18:0x18 + 128] = _rc4(struct.pack("<I", 0x6B39DAC7), bytes(128))
    return bytes(page)


def compressed_text(text: str) -> bytes:
    """Jet 4 "Unicode compression": FF FE, then one byte per Latin character; 0x00 toggles two-byte mode."""
    out, compressed = bytearray(b"\xff\xfe"), True
    for ch in text:
        fits = 0 < ord(ch) < 0x100
        if fits != compressed:
            out.append(0)
            compressed = fits
        out += bytes([ord(ch)]) if fits else ch.encode("utf-16-le")
    return bytes(out)


def _value(column: Column, value: object) -> bytes:
    if column.type == LONG:
        return struct.pack("<i", value)
    if column.type == INTEGER:
        return struct.pack("<h", value)
    if column.type == DATETIME:
        delta = value - _EPOCH
        return struct.pack("<d", delta.days + delta.seconds / 86400)
    return compressed_text(str(value))


def _tdef(columns: list[Column], rows: int, usage: int, free: int, system: bool) -> bytes:
    head = bytearray(b"\x02\x01VC") + struct.pack("<I", 0)
    var_cols = [c for c in columns if c.type not in _FIXED_SIZE]
    # tdef_len (set below), unknown, rows, autonumber, autonumber flags, complex autonumber, unknown x2
    body = struct.pack("<IIIIIIII", 0, 0, rows, 0, 0, 0, 0, 0)
    body += struct.pack("<BHHHIIII", 0x53 if system else 0x4E, len(columns), len(var_cols), len(columns), 0, 0,
                        usage, free)
    defs, names, fixed_at, var_no = b"", b"", 0, 0
    for number, col in enumerate(columns):
        fixed = col.type in _FIXED_SIZE
        misc = struct.pack("<HBB", 0x0409, 0, 1) if col.type == TEXT else bytes(4)
        flags = 0x03 if fixed else 0x02  # fixed length | may be null
        defs += struct.pack("<BIHHH", col.type, 0, number, 0 if fixed else var_no, number) + misc
        defs += struct.pack("<BBIHH", flags, 0x01 if col.type == TEXT else 0, 0, fixed_at if fixed else 0,
                            _FIXED_SIZE.get(col.type, col.length * 2 if col.type == TEXT else 0))
        if fixed:
            fixed_at += _FIXED_SIZE[col.type]
        else:
            var_no += 1
        encoded = col.name.encode("utf-16-le")
        names += struct.pack("<H", len(encoded)) + encoded
    tdef = head + body + defs + names + b"\xff\xff"
    tdef[8:12] = struct.pack("<I", len(tdef) - 8)
    assert len(tdef) <= PAGE, "one definition page"
    return bytes(tdef) + bytes(PAGE - len(tdef))


def _row(columns: list[Column], values: dict) -> bytes:
    fixed_cols = [c for c in columns if c.type in _FIXED_SIZE]
    var_cols = [c for c in columns if c.type not in _FIXED_SIZE]
    mask = bytearray((len(columns) + 7) // 8)
    fixed = b""
    for col in fixed_cols:
        value = values.get(col.name)
        fixed += bytes(_FIXED_SIZE[col.type]) if value is None else _value(col, value)
    row = bytearray(struct.pack("<H", len(columns))) + fixed
    offsets = []
    for col in var_cols:
        offsets.append(len(row))
        if values.get(col.name) is not None:
            row += _value(col, values[col.name])
    offsets.append(len(row))  # end of the variable data
    for number, col in enumerate(columns):
        if values.get(col.name) is not None:
            mask[number // 8] |= 1 << (number % 8)  # a set bit: the value is there
    for offset in reversed(offsets):
        row += struct.pack("<H", offset)
    return bytes(row + struct.pack("<H", len(var_cols)) + mask)


def _data_page(owner: int, rows: list[bytes]) -> bytes:
    """A data page: rows from the end of the page backwards, their offsets after the 14-byte header."""
    offsets, end, body = [], PAGE, b""
    for row in rows:
        end -= len(row)
        offsets.append(end)
        body = row + body
    header = struct.pack("<BBHIIH", 1, 1, 0, owner, 0, len(rows)) + b"".join(struct.pack("<H", o) for o in offsets)
    free = PAGE - len(header) - len(body)
    assert free >= 0, "rows fit one page"
    header = header[:2] + struct.pack("<H", free) + header[4:]
    return header + bytes(free) + body


def _usage_map(pages: list[int]) -> bytes:
    """Usage map type 0: the first page, then one bit per page from it."""
    bitmap = bytearray(max(pages, default=0) // 8 + 1)
    for page in pages:
        bitmap[page // 8] |= 1 << (page % 8)
    return b"\x00" + struct.pack("<I", 0) + bytes(bitmap)


def _pages_of(columns: list[Column], rows: list[dict]) -> list[list[bytes]]:
    encoded = [_row(columns, r) for r in rows]
    pages: list[list[bytes]] = [[]]
    used = 14
    for row in encoded:
        if used + len(row) + 2 > PAGE:
            pages.append([])
            used = 14
        pages[-1].append(row)
        used += len(row) + 2
    return pages


CATALOG = [Column("Id", LONG), Column("ParentId", LONG), Column("Name", TEXT, 128), Column("Type", INTEGER),
           Column("Flags", LONG), Column("LvProp", OLE)]  # LvProp: the objects' properties, NULL here


def write_mdb(path: Path, tables: dict[str, tuple[list[Column], list[dict]]]) -> Path:
    """Write an Access 2000 file holding ``tables`` (name -> (columns, rows as dicts; None is NULL))."""
    # Page 0 header, 1 usage maps, 2 catalog definition, 3 catalog rows, then per table its definition and data.
    layout, page = {}, 4
    for name, (columns, rows) in tables.items():
        data = _pages_of(columns, rows)
        layout[name] = (page, list(range(page + 1, page + 1 + len(data))), data)
        page += 1 + len(data)
    catalog_rows = [{"Id": 2, "ParentId": 0x0F000000, "Name": "MSysObjects", "Type": 1, "Flags": -0x80000000}]
    catalog_rows += [{"Id": tdef, "ParentId": 0x0F000001, "Name": name, "Type": 1, "Flags": 0}
                     for name, (tdef, _, _) in layout.items()]
    maps = [_usage_map([3]), _usage_map([])]
    for _, data_pages, _ in layout.values():
        maps += [_usage_map(data_pages), _usage_map([])]
    pages = [_header_page(), _data_page(0, maps),
             _tdef(CATALOG, len(catalog_rows), (1 << 8) | 0, (1 << 8) | 1, system=True),
             _data_page(2, [_row(CATALOG, r) for r in catalog_rows])]
    for i, (name, (tdef, _, data)) in enumerate(layout.items()):
        columns, rows = tables[name]
        pages.append(_tdef(columns, len(rows), (1 << 8) | (2 + 2 * i), (1 << 8) | (3 + 2 * i), system=False))
        pages += [_data_page(tdef, chunk) for chunk in data]
    path.write_bytes(b"".join(pages))
    return path
