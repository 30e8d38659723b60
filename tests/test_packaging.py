"""The wheel ships the law catalog and the embedded data (the package never reads the repo)."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_catalog_and_data(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("bayescale-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for law in (ROOT / "models").glob("*.toml"):
        assert f"bayescale/models/{law.name}" in names
    assert "bayescale/datasets/chinchilla_epoch/svg_extracted_data.csv" in names
    assert "bayescale/datasets/chinchilla_epoch/README.md" in names
    assert not any(name.startswith(("tests/", "case_studies/")) for name in names)


def test_package_never_reads_shared():
    for source in (ROOT / "bayescale").rglob("*.py"):
        assert "shared/" not in source.read_text(), source


def test_import_leaves_the_heavy_optional_modules_unloaded():
    """``import bayescale`` (and so every ``bayescale`` command) does not pay for modules that
    only plotting, law selection, back-tests and point fits use: together they took
    ``import bayescale`` from about 1.1 s to 2.0 s. Run from the repository root, so that the
    package under test is the one imported."""
    lazy = ["matplotlib", "scipy.stats", "scipy.optimize", "arviz_stats"]
    code = f"import sys, bayescale; print([m for m in {lazy!r} if m in sys.modules])"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip() == "[]"
