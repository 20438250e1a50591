"""Nothing secret is committed: credentials live in Airflow connections and the environment only."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    # A URL with a password in it: user:password@host (placeholders, templates and test-only values allowed).
    "password in a URL": re.compile(r"[a-z][a-z0-9+]*://[^/\s:@'\"]+:([^@\s/'\"]+)@"),
}
ALLOWED_URL_PASSWORDS = {"", "change-me", "KEY", "SECRET", "secret", "pass", "password", "x", "test", "embedded"}


def _tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if line and not line.endswith((".gz", ".xlsx", ".png", ".parquet"))]


def test_no_secret_in_committed_files() -> None:
    found = []
    for path in _tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue
        for what, pattern in PATTERNS.items():
            for m in pattern.finditer(text):
                if what == "password in a URL" and (m.group(1) in ALLOWED_URL_PASSWORDS or m.group(1).startswith(("${", "{"))):
                    continue
                found.append(f"{path.relative_to(ROOT)}: {what}: {m.group(0)[:40]}")
    assert not found, "\n".join(found)


def test_env_file_is_ignored() -> None:
    ignored = subprocess.run(["git", "check-ignore", ".env"], cwd=ROOT, capture_output=True, text=True)
    assert ignored.returncode == 0, ".env must be git-ignored (secrets of the full stack live there)"
