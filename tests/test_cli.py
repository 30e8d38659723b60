"""The command line: outputs, JSON shapes, and one-line errors with a non-zero exit."""

import json
import subprocess
import sys

import numpy as np
import pytest
from simulation import CHINCHILLA_TRUTH, simulate

import bayescale as bs

COMMAND = [sys.executable, "-m", "bayescale.cli"]
FAST_OPTIONS = ["--chains", "4", "--draws", "500", "--warmup", "500", "--seed", "2"]


def run(*arguments, cwd=None):
    return subprocess.run(
        [*COMMAND, *map(str, arguments)], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bayescale: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
    n, d = np.meshgrid(np.geomspace(5e7, 1e10, 6), np.geomspace(1e9, 3e11, 5))
    frame = simulate("chinchilla", {"N": n.ravel(), "D": d.ravel()}, CHINCHILLA_TRUTH, 0.01, seed=8)
    frame = frame.rename(columns={"N": "params", "D": "tokens"})
    path = tmp_path_factory.mktemp("cli") / "runs.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def fitted(runs_csv):
    out = runs_csv.parent / "fit.nc"
    result = run(
        "fit",
        runs_csv,
        "--law",
        "chinchilla",
        "--y",
        "loss",
        "--x",
        "N=params",
        "--x",
        "D=tokens",
        *FAST_OPTIONS,
        "--out",
        out,
        "--json",
    )
    return result, out


def test_laws_lists_the_catalog():
    result = run("laws")
    assert result.returncode == 0
    assert "chinchilla" in result.stdout and "E + A / N^alpha + B / D^beta" in result.stdout
    catalog = json.loads(run("laws", "--json").stdout)
    assert set(catalog["chinchilla"]["parameters"]) == {"E", "A", "B", "alpha", "beta"}
    assert "Hoffmann" in catalog["chinchilla"]["citation"]


def test_fit_json(fitted):
    result, out = fitted
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["law"] == "chinchilla"
    assert set(payload["parameters"]) == {"E", "A", "B", "alpha", "beta", "sigma"}
    for values in payload["parameters"].values():
        assert set(values) >= {"median", "q05", "q95", "r_hat", "ess_bulk"}
        assert values["q05"] <= values["median"] <= values["q95"]
    assert payload["diagnostics"]["divergences"] == 0
    assert payload["diagnostics"]["max_r_hat"] <= 1.01
    assert out.is_file()
    # the command splits the CPU into one JAX device per chain (bayescale.use_cpu_devices)
    assert bs.load_fit(out).sampler["chain_method_used"] == "parallel"


def test_fit_human_output_and_plot(runs_csv, tmp_path):
    """Also with --compilation-cache: the compiled programs land in the folder given."""
    out, plot, cache = tmp_path / "fit.nc", tmp_path / "fit.png", tmp_path / "cache"
    result = run(
        "--compilation-cache",
        cache,
        "fit",
        runs_csv,
        "--law",
        "chinchilla",
        "--y",
        "loss",
        "--x",
        "N=params",
        "--x",
        "D=tokens",
        *FAST_OPTIONS,
        "--out",
        out,
        "--plot",
        plot,
    )
    assert result.returncode == 0, result.stderr
    assert "max R-hat" in result.stdout and "fit saved to" in result.stdout
    assert len(list(cache.iterdir())) > 10  # one file per program, the small ones included
    assert plot.stat().st_size > 10_000


def test_forecast_and_summary_json(fitted):
    _, out = fitted
    result = run("forecast", out, "--at", "N=7e10,D=1.4e12", "--at", "N=1e9,D=2e10", "--json")
    assert result.returncode == 0, result.stderr
    points = json.loads(result.stdout)["points"]
    assert [p["inputs"] for p in points] == [{"N": 7e10, "D": 1.4e12}, {"N": 1e9, "D": 2e10}]
    assert all(p["q05"] < p["median"] < p["q95"] for p in points)
    again = json.loads(run("forecast", out, "--at", "N=7e10,D=1.4e12", "--json").stdout)
    assert again["points"][0] == points[0]
    summary = json.loads(run("summary", out, "--json").stdout)
    assert summary["parameters"].keys() == json.loads(fitted[0].stdout)["parameters"].keys()
    optimal = json.loads(run("optimal", out, "--compute", "5.76e23", "--json").stdout)
    assert optimal["compute_optimal"][0]["compute"] == 5.76e23


@pytest.mark.parametrize(
    ("csv", "fragments"),
    [
        (
            "params,tokens,loss\n1e8,1e9,3\n-5,1e9,2.5\n",
            ["row 2 (line 3)", "'params'", "-5", "not positive"],
        ),
        ("params,loss\n1e8,3\n", ["column 'tokens' not found"]),
        ("params,tokens,loss\n1e8,1e9,nan\n", ["row 1 (line 2)", "'loss'", "missing"]),
        ("params,tokens,loss\n1e8,1e9,0\n", ["'loss'", "not a valid loss"]),
    ],
)
def test_bad_csv_gives_one_line_and_no_file(tmp_path, csv, fragments):
    path = tmp_path / "bad.csv"
    path.write_text(csv)
    out = tmp_path / "fit.nc"
    result = run(
        "fit",
        path,
        "--law",
        "chinchilla",
        "--y",
        "loss",
        "--x",
        "N=params",
        "--x",
        "D=tokens",
        "--out",
        out,
    )
    assert_user_error(result, *fragments)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        (["--law", "chinchila"], ["unknown law 'chinchila'", "did you mean 'chinchilla'"]),
        (["--law", "chinchilla", "--x", "params"], ["--x expects INPUT=COLUMN"]),
        (["--law", "chinchilla", "--x", "Q=params"], ["'Q', which is not an input"]),
        (["--law", "chinchilla", "--group", "gamma=family"], ["gamma"]),
        (["--law", "chinchilla", "--prior", "alpha=Normal(0, -1)"], ["scale must be positive"]),
        (["--law", "chinchilla", "--likelihood", "gaussian"], ["unknown observation model"]),
        (["--law", "chinchilla", "--chains", "0"], ["chains must be a positive integer"]),
        (["--law", "chinchilla", "--centered", "alpha"], ["--centered alpha needs --group"]),
        (
            ["--law", "chinchilla", "--group", "alpha=family", "--centered", "alpha=yes"],
            ["--centered expects PARAM, PARAM=auto or PARAM=conditional", "'alpha=yes'"],
        ),
        (["--law", "chinchilla", "--bogus"], ["No such option '--bogus'"]),
    ],
)
def test_bad_options_give_one_line(runs_csv, tmp_path, arguments, fragments):
    out = tmp_path / "fit.nc"
    base = ["fit", runs_csv, "--y", "loss", "--x", "N=params", "--x", "D=tokens", "--out", out]
    if "--x" in arguments:
        base = ["fit", runs_csv, "--y", "loss", "--out", out]
    result = run(*base, *arguments)
    assert_user_error(result, *fragments)
    assert not out.exists()


def test_bad_paths_and_points(fitted, tmp_path):
    _, out = fitted
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert_user_error(
        run("--compilation-cache", blocker / "cache", "laws"), "cannot use", "compilation cache"
    )
    assert_user_error(
        run("forecast", tmp_path / "none.nc", "--at", "N=1,D=1"), "fit file not found"
    )
    assert_user_error(run("forecast", out, "--at", "N=1e9"), "input 'D' is missing")
    assert_user_error(
        run("forecast", out, "--at", "N=1e9,D=2e10", "--discrepancy", "walk"),
        "walks along one input",
    )
    assert_user_error(run("forecast", out, "--at", "N=1e9;D=3"), "NAME=VALUE")
    assert_user_error(run("forecast", out, "--at", "N=-1,D=1e9"), "not positive")
    assert_user_error(
        run(
            "fit",
            tmp_path / "none.csv",
            "--law",
            "chinchilla",
            "--y",
            "loss",
            "--out",
            tmp_path / "x.nc",
        ),
        "file not found",
    )
    assert_user_error(
        run(
            "fit", out, "--law", "chinchilla", "--y", "loss", "--out", tmp_path / "missing" / "x.nc"
        ),
        "does not exist",
    )


def test_demo_runs_and_writes_its_files(tmp_path):
    result = run("demo", "--out", tmp_path / "demo", "--draws", "500", "--warmup", "500")
    assert result.returncode == 0, result.stderr
    assert "70B parameters trained on 1.4T tokens" in result.stdout
    assert "tokens per parameter" in result.stdout
    assert "Epoch 2024" in result.stdout
    assert (tmp_path / "demo" / "chinchilla_fit.nc").is_file()
    assert (tmp_path / "demo" / "chinchilla_fit.png").stat().st_size > 10_000
