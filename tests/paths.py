"""Where the tests find the repository's fixtures and the shared vectors."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
SCHEMA = FIXTURES / "schema" / "device.json"
SCHEMA_V2 = FIXTURES / "schema" / "device-v2.json"

SHARED_DIR = ROOT.parent / "shared"
"""``../shared`` beside the repository: test vectors from outside the project
(used from there, never copied; the tests that need it skip when it is absent)."""
