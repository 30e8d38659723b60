"""Decision reports, rendered in headless Chromium and checked by content.

Chromium (Debian's ``chromium`` package) is required: ``make test`` installs it. A missing
browser fails these tests; it does not skip them.

Each rendering loads the report from a ``file://`` URL with a probe script appended by the test
(the report itself has no scripts): after the page's load event, the probe writes every image's
decoded size into the DOM, which ``--dump-dom`` then prints.
"""

import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr
from decision_fits import fit

import bayescale as bs
from bayescale.cli import main
from bayescale.compare import compare
from bayescale.errors import SettingsError
from bayescale.report import build_report

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROBE = """<script>
window.addEventListener("load", () => {
  const sizes = Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify(sizes);
  document.body.appendChild(probe);
});
</script>"""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "headless Chromium is required: `make test` installs Debian's chromium package"
    return path


def render(html_path, tmp_path, screenshot=None) -> tuple[str, list]:
    """Load the report in Chromium; return the DOM text and the decoded image sizes."""
    probed = tmp_path / f"probed-{html_path.name}"
    probed.write_text(html_path.read_text().replace("</body>", PROBE + "</body>"))
    command = [
        chromium(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--window-size=1200,3000",
    ]
    done = subprocess.run(
        [*command, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom)
    assert match, "the page did not finish loading in Chromium"
    if screenshot is not None:
        shot = subprocess.run(
            [*command, f"--screenshot={screenshot}", html_path.as_uri()],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert shot.returncode == 0, shot.stderr[-2000:]
    return dom, json.loads(match.group(1))


@pytest.fixture(scope="module")
def comparison():
    return compare(
        fit("A"), fit("B"), over="x=1e6:1e11", at="x=1e10", labels=("small-first", "big-later")
    )


@pytest.fixture(scope="module")
def comparison_report(comparison):
    return build_report({"small-first": fit("A"), "big-later": fit("B")}, comparison=comparison)


def test_comparison_report_renders_with_its_figures_and_answer(
    comparison, comparison_report, tmp_path
):
    path = comparison_report.save(tmp_path / "report.html")
    dom, images = render(path, tmp_path, screenshot=tmp_path / "shot.png")
    # figures: fan chart, comparison, crossover, each decoded by the browser with a real size
    assert len(images) == 3
    assert all(complete and width > 300 and height > 200 for complete, width, height in images)
    answer = comparison.answer()
    assert answer.startswith("At x = 1e+10, big-later has lower loss than small-first")
    assert f"<strong>Answer.</strong> {answer}" in dom.replace("&amp;", "&")
    assert "do their curves cross" in dom  # the question
    assert "All convergence gates passed" in dom
    assert 'class="warning"' not in dom
    for heading in ("Comparison", "Parameters", "Diagnostics", "Data used", "Provenance"):
        assert f">{heading}</h" in dom
    assert "L_inf" in dom and "numpyro" in dom and '"seed": 1' in dom
    screenshot = _image(tmp_path / "shot.png")
    assert screenshot.shape[1] == 1200 and screenshot.std() > 0.05  # something was drawn


def test_a_failed_gate_shows_a_visible_warning(tmp_path):
    """A fit whose sampler diverged (divergences written into a copy of its sample stats)."""
    tree = fit("A").datatree.copy(deep=True)
    stats = tree["sample_stats"].to_dataset()
    diverging = stats["diverging"].values.copy()
    diverging[0, :7] = True
    tree["sample_stats"] = xr.DataTree(stats.assign(diverging=(("chain", "draw"), diverging)))
    broken = bs.Fit(tree)
    assert not broken.converged
    report = build_report({"broken": broken}, at={"x": 1e11})
    assert report.warnings and "7 divergent transitions" in report.warnings[0]
    path = report.save(tmp_path / "broken.html")
    dom, images = render(path, tmp_path, screenshot=tmp_path / "broken.png")
    assert len(images) == 1 and images[0][1] > 300
    assert 'class="warning"' in dom and "THE FIT DID NOT CONVERGE" in dom
    # the warning box is drawn in red near the top of the page
    top = _image(tmp_path / "broken.png")[:600]
    red = (top[..., 0] > 0.7) & (top[..., 1] < 0.3) & (top[..., 2] < 0.3)
    assert red.sum() > 500


def test_single_fit_report_answers_a_forecast_question(tmp_path):
    report = build_report([fit("B")], at={"x": 1e11})
    table = fit("B").forecast({"x": 1e11}).table().iloc[0]
    assert f"{table['curve_median']:.4g}" in report.answer
    assert "with probability 90%" in report.answer
    assert report.question == "What loss does the fitted law predict at x = 1e+11?"


def test_markdown_report_embeds_decodable_images(comparison_report, tmp_path):
    path = comparison_report.save(tmp_path / "report.md")
    text = path.read_text()
    assert text.startswith("# small-first vs big-later")
    assert f"**Answer.** {comparison_report.answer}" in text
    images = re.findall(r"\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
    assert len(images) == 3
    for encoded in images:
        png = base64.b64decode(encoded)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "| parameter |" in text


def test_report_writes_atomically(comparison_report, tmp_path, monkeypatch):
    with pytest.raises(SettingsError, match="does not exist"):
        comparison_report.save(tmp_path / "missing" / "report.html")
    import bayescale.report as module

    def broken_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        comparison_report.save(tmp_path / "report.html")
    assert list(tmp_path.iterdir()) == []  # no partial file, no temporary file


def test_cli_report_two_fits_and_errors(tmp_path, capsys):
    a = fit("A").save(tmp_path / "clip.nc")
    b = fit("B").save(tmp_path / "mammut.nc")
    out = tmp_path / "decision.html"
    status = main(
        ["report", str(a), str(b), "--over", "x=1e6:1e11", "--at", "x=1e10", "--out", str(out)]
    )
    assert status == 0
    assert "mammut has lower loss than clip" in capsys.readouterr().out
    assert "mammut has lower loss than clip" in out.read_text()
    # one fit, Markdown by the file name
    md = tmp_path / "single.md"
    assert main(["report", str(a), "--at", "x=1e11", "--out", str(md)]) == 0
    assert md.read_text().startswith("# Scaling-law report: clip")
    capsys.readouterr()
    # errors: one line, and no file left behind
    bad = tmp_path / "bad.html"
    assert main(["report", str(a), "--over", "x=1e6:1e11", "--out", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "--over compares two fits; 1 were given" in err and len(err.splitlines()) == 1
    assert main(["report", str(a), "--at", "N=1e9", "--out", str(bad)]) == 2
    assert "needs a value for 'x'" in capsys.readouterr().err
    assert not bad.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clip.nc",
        "decision.html",
        "mammut.nc",
        "single.md",
    ]


def _image(path) -> np.ndarray:
    from matplotlib.image import imread

    return imread(path)[..., :3]
