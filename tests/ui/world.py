"""A small platform for the browser tests, made by the real pipeline stages.

One legacy SQLite system (the Bắc Quang dossiers) with: a record of a split commune that a
province rule maps, two records of the same split commune and village that no rule covers
(one review group), a record with an impossible date (quarantined with a reason), and a
plain record. One run, reconciled, with its handover records.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from legacy_sqlite import bacquang_dossiers_source, dossier, sqlite_legacy, sync  # noqa: E402

from sapnhap.handover import build_handover  # noqa: E402
from sapnhap.reference import load_split_rules  # noqa: E402
from sapnhap.services import Services  # noqa: E402
from sapnhap.sources import Source  # noqa: E402
from sapnhap.sync.prepare import prepare_run  # noqa: E402
from sapnhap.sync.reconcile import reconcile_run  # noqa: E402

UNRULED_VILLAGE = "Thôn Khuổi Mới"
BAD_DATE_KEY = "BQ-DATE"


@dataclass
class UiWorld:
    services: Services
    source: Source
    connection: str
    split_commune: str
    run_ids: list[str]

    def run(self, run_id: str) -> dict:
        """One more night of this source through the real stages, reconciled."""
        prepare_run(self.services, run_id)
        counts = sync(self.services, self.source, self.connection, run_id)
        reconcile_run(self.services, run_id, [(self.source.id, "dossiers")])
        self.run_ids.append(run_id)
        return counts


def build_world(folder: Path, services: Services) -> UiWorld:
    rule = load_split_rules("08").iloc[0]
    commune = str(rule["old_commune_code"])
    source = bacquang_dossiers_source()
    commune_ok = source.old_units.communes[0] if source.old_units.communes else "01000"
    connection = sqlite_legacy(
        folder / "bacquang.db",
        [
            dossier("BQ-RULE", commune=commune, address=f"{rule['pattern']}, xã cũ"),
            dossier("BQ-WAIT1", commune=commune, address=f"{UNRULED_VILLAGE}, xã cũ", modified="2024-03-03 09:00:00"),
            dossier("BQ-WAIT2", commune=commune, address=f"{UNRULED_VILLAGE}, xã cũ", modified="2024-03-03 10:00:00"),
            dossier(BAD_DATE_KEY, recv="31/02/2024", modified="2024-03-03 11:00:00"),
            *[dossier(f"BQ-OK{i}", commune=commune_ok, modified=f"2024-03-03 12:{i:02d}:00") for i in range(6)],
        ],
    )
    world = UiWorld(services, source, connection, commune, [])
    world.run("scheduled__2026-11-20T18:00:00+00:00")
    build_handover(services, world.run_ids[-1], sources=[world.source])
    return world
