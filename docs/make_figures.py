"""Regenerate the figures of docs/hyperparameters.md and docs/survival.md from the case studies.

Each figure is written by a case study's ``run.py`` into its (git-ignored) ``output/`` folder;
this script runs the case studies and copies the figures into ``docs/figures/``. With
``--copy-only`` it copies from existing ``output/`` folders (after you ran the case studies
yourself) without fitting anything.

    python docs/make_figures.py               # full runs (slow: about half an hour on 2 cores)
    python docs/make_figures.py --copy-only   # copy what the last full runs wrote
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures"

# (case study script, figure it writes into the case study's output/ folder)
SOURCES = [
    ("case_studies/lr_penalty_misfitting/run.py", "lr_penalty_400m.png"),
    ("case_studies/survival_shapes/run.py", "survival_shapes.png"),
    ("case_studies/pythia_survival/run.py", "pythia_time_to_target.png"),
    ("case_studies/bnsl_4digit_addition/run.py", "bnsl_4digit_addition.png"),
    ("case_studies/emergence_observational/run.py", "emergence_3digit_addition.png"),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--copy-only", action="store_true", help="copy existing outputs, run nothing"
    )
    args = parser.parse_args(argv)
    FIGURES.mkdir(parents=True, exist_ok=True)
    for script, figure in SOURCES:
        path = ROOT / script
        if not args.copy_only:
            subprocess.run([sys.executable, str(path)], check=True, cwd=ROOT)
        source = path.parent / "output" / figure
        if not source.exists():
            print(f"missing {source.relative_to(ROOT)}: run {script} first", file=sys.stderr)
            return 1
        shutil.copyfile(source, FIGURES / figure)
        print(f"docs/figures/{figure}  <-  {source.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
