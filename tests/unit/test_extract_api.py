"""extract.py owns the legacy-text conversion: other modules use its public functions, never its private ones."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "include" / "sapnhap"


def test_no_module_imports_a_private_name_of_extract() -> None:
    private = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "sapnhap.extract":
                private += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert private == []


def test_the_conversion_helpers_are_public() -> None:
    import pandas as pd

    from sapnhap.extract import chunk_to_table, frame_to_table, read_export  # noqa: F401

    table = chunk_to_table(["id", "ten"], [(1, "Lụa"), (2, None)])
    assert table.column("id").to_pylist() == ["1", "2"] and table.column("ten").to_pylist() == ["Lụa", None]
    assert frame_to_table(pd.DataFrame({"a": [1.5, None]})).column("a").to_pylist() == ["1.5", None]
