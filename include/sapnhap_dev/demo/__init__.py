"""The demo world: deterministic legacy systems of the merged province Tuyên Quang (08).

``from sapnhap_dev.demo import generate_world`` works; the generator module is imported lazily so
that ``python -m sapnhap_dev.demo.generator`` runs it cleanly.
"""

from __future__ import annotations

from typing import Any

__all__ = ["World", "generate_world", "insert_rows", "mutate_world"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sapnhap_dev.demo import generator

        return getattr(generator, name)
    raise AttributeError(f"module 'sapnhap_dev.demo' has no attribute {name!r}")
