"""The committed generated package matches protos/ (like `make check-protos`, but in every test run)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh(tmp_path: pathlib.Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    committed = {
        p.relative_to(ROOT / "clients"): p.read_bytes()
        for p in (ROOT / "clients" / "trafficalloc").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert fresh.keys() == committed.keys()
    stale = sorted(str(k) for k in fresh if fresh[k] != committed[k])
    assert not stale, f"run `make protos`: stale generated files {stale}"
