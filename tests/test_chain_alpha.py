"""Issue check: a green-screen clip's alpha after the whole chain, against an independent clean-plate key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "data" / "clips" / "d0.mp4"


@pytest.mark.skipif(not CLIP.is_file(), reason="needs ../shared/data/clips/d0.mp4 (evaluation media beside the checkout)")
def test_green_screen_alpha_survives_the_chain(tmp_path: Path) -> None:
    report_path = tmp_path / "chain.json"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "chain_alpha.py"), "--clip", str(CLIP),
                             "--frames", "16", "--output", str(report_path)], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert report_path.is_file(), result.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert report["iou_mean"] >= 0.93 and report["mad_mean"] <= 0.04, report
    assert report["edge_green_excess_mean"] < 3.0, "green spill on the edges over magenta"
