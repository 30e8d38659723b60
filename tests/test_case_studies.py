"""Every case study runs from a clean checkout in its fast smoke mode (few draws), so none rots.

Each study is run as its README says (``python case_studies/<name>/run.py``) with ``--smoke`` and
an output folder in a temporary directory; it must exit cleanly and write its results there.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted(p.parent.name for p in (ROOT / "case_studies").glob("*/run.py"))


def test_every_case_study_has_a_readme_and_data_citation():
    for name in STUDIES:
        folder = ROOT / "case_studies" / name
        assert (folder / "README.md").exists(), f"{name} has no README.md"
        data = folder / "data"
        if data.exists():  # one README per copied source (README.md or <source>_README.md)
            assert list(data.glob("*README.md")), f"{name}/data has no README"


@pytest.mark.parametrize("name", STUDIES)
def test_case_study_runs_in_smoke_mode(name, tmp_path):
    out = tmp_path / name
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "case_studies" / name / "run.py"),
            "--smoke",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    written = [p for p in out.rglob("*") if p.is_file() and p.stat().st_size > 0]
    assert written, f"{name} wrote nothing into {out}"
