"""The ``jaxmix`` command: run / validate / datasets, output files and one-line config errors.

Fits cost seconds of compilation each, so one CLI run (module fixture) is shared by the tests
and compared with one direct ``jaxmix.fit``; every bad-config path fails before any fit.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import jaxmix
from jaxmix import cli

REPO = Path(__file__).resolve().parents[1]
SLEEP = REPO / "configs" / "sleepstudy.toml"
QUICK_START = ['pip install . && jaxmix run configs/ami.toml',
               'pip install ".[test]" && python -m pytest -q']


@pytest.fixture(scope="module")
def sleep_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sleep-out")
    rc = cli.main(["run", str(SLEEP), "--out", str(out), "--quiet"])
    return rc, out


def test_run_writes_outputs(sleep_run, capsys):
    rc, out = sleep_run
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(cli.OUTPUT_FILES)
    assert "Reaction ~ Days + (Days | Subject)" in (out / "summary.txt").read_text()
    fixed = pd.read_csv(out / "fixed.csv")
    assert list(fixed.columns[:3]) == ["term", "estimate", "se"]
    assert fixed["term"].tolist() == ["Intercept", "Days"]
    vc = pd.read_csv(out / "varcorr.csv")
    assert list(vc.columns) == ["group", "var1", "var2", "vcov", "sdcor"]
    assert vc["group"].tolist() == ["Subject", "Subject", "Subject", "Residual"]
    re_ = pd.read_csv(out / "ranef.csv")
    assert list(re_.columns) == ["group", "term", "level", "mode", "condsd"]
    assert len(re_) == 36
    rec = json.loads((out / "fit.json").read_text())
    for key in ["loglik", "objective", "theta", "sigma", "converged", "singular", "nobs",
                "fit_seconds", "compile_seconds"]:
        assert key in rec, key
    assert rec["nobs"] == 180 and rec["converged"] is True and rec["singular"] is False
    assert len(rec["theta"]) == 3 and rec["compile_seconds"] >= 0 and rec["fit_seconds"] >= 0


def test_run_matches_python_fit(sleep_run):
    _, out = sleep_run
    rec = json.loads((out / "fit.json").read_text())
    res = jaxmix.fit("Reaction ~ Days + (Days | Subject)", jaxmix.datasets.sleepstudy(), method="REML")
    assert rec["loglik"] == pytest.approx(res.loglik, rel=1e-12, abs=0)
    assert rec["objective"] == pytest.approx(res.objective, rel=1e-12, abs=0)
    assert rec["sigma"] == pytest.approx(res.sigma, rel=1e-9)
    assert rec["loglik"] == pytest.approx(-871.8141, abs=1e-3)  # lme4: REML criterion 1743.628
    fixed = pd.read_csv(out / "fixed.csv", index_col="term")
    assert fixed["estimate"].to_numpy() == pytest.approx(res.fixef.to_numpy(), rel=1e-9)


def test_run_prints_summary_unless_quiet(sleep_run, monkeypatch, capsys, tmp_path):
    """Printing is checked with the fit stubbed out (no second compile)."""
    class Fake:
        def summary(self):
            return "FAKE SUMMARY"

    monkeypatch.setattr(cli, "run_config", lambda cfg: (Fake(), {}))
    assert cli.main(["run", str(SLEEP), "--out", str(tmp_path)]) == 0
    assert "FAKE SUMMARY" in capsys.readouterr().out
    assert cli.main(["run", str(SLEEP), "--out", str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_validate_and_datasets(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["validate", str(SLEEP)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok:") and "180 rows" in out
    assert not (tmp_path / "out").exists()  # validate creates nothing
    assert cli.main(["validate", str(REPO / "configs" / "centres.toml")]) == 0
    assert "40 rows" in capsys.readouterr().out

    jaxmix.datasets.sleepstudy().to_csv(tmp_path / "sleep.csv", index=False)
    sub = tmp_path / "cfg"
    sub.mkdir()
    (sub / "file.toml").write_text('[data]\npath = "../sleep.csv"\n[model]\n'
                                   'formula = "Reaction ~ Days + (1 | Subject)"\nmethod = "ML"\n')
    assert cli.main(["validate", str(sub / "file.toml")]) == 0
    assert "Subject (18 levels)" in capsys.readouterr().out

    assert cli.main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^centres\s", out, re.M) and re.search(r"^sleepstudy\s", out, re.M)
    assert cli.main(["--help"]) == 0


BASE_MODEL = '[model]\nformula = "Reaction ~ Days + (1 | Subject)"\n'
BAD = {
    "unknown_key": ('[data]\nbuiltin = "sleepstudy"\n[model]\nformula = "Reaction ~ Days"\nmethd = "ML"\n',
                    ["'methd'", "did you mean 'method'"]),
    "unknown_section": ('[data]\nbuiltin = "sleepstudy"\n' + BASE_MODEL + '[outptu]\ndir = "x"\n',
                        ["[outptu]", "did you mean [output]"]),
    "wrong_type": ('[data]\nbuiltin = "sleepstudy"\n' + BASE_MODEL + 'method = 2\n', ["method", "string"]),
    "missing_file": ('[data]\npath = "no_such.csv"\n' + BASE_MODEL, ["no_such.csv", "not found"]),
    "unknown_builtin": ('[data]\nbuiltin = "sleepstudie"\n' + BASE_MODEL, ["'sleepstudie'", "did you mean 'sleepstudy'"]),
    "absent_column": ('[data]\nbuiltin = "sleepstudy"\n[model]\nformula = "Reaction ~ Dayz + (1 | Subject)"\n',
                      ["'Dayz'", "not in the data"]),
    "absent_weights": ('[data]\nbuiltin = "sleepstudy"\n' + BASE_MODEL + 'weights = "wt"\n', ["'wt'"]),
    "bad_formula": ('[data]\nbuiltin = "sleepstudy"\n[model]\nformula = "Reaction ~ Days + (1 | Subject"\n',
                    ["formula", "unbalanced"]),
    "bad_toml": ('[data\nbuiltin = "sleepstudy"\n', ["invalid TOML"]),
    "unwritable_output": ('[data]\nbuiltin = "sleepstudy"\n' + BASE_MODEL + '[output]\ndir = "a_file/sub"\n',
                          ["output folder", "a_file"]),
}


def _check_one_line_error(rc, err, needles):
    assert rc == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxmix: error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_config_one_line_exit_2(case, command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    text, needles = BAD[case]
    cfg = tmp_path / f"{case}.toml"
    cfg.write_text(text)
    rc = cli.main([command, str(cfg)] + (["--quiet"] if command == "run" else []))
    captured = capsys.readouterr()
    _check_one_line_error(rc, captured.err, needles + [f"{case}.toml"])
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", f"{case}.toml"]  # nothing created


def test_missing_config_and_bad_out(tmp_path, capsys):
    rc = cli.main(["run", str(tmp_path / "absent.toml")])
    _check_one_line_error(rc, capsys.readouterr().err, ["absent.toml", "not found"])
    (tmp_path / "a_file").write_text("")
    rc = cli.main(["run", str(SLEEP), "--out", str(tmp_path / "a_file"), "--quiet"])
    _check_one_line_error(rc, capsys.readouterr().err, ["a_file", "not a folder"])
    rc = cli.main(["run"])
    _check_one_line_error(rc, capsys.readouterr().err, ["CONFIG"])
    rc = cli.main(["fly"])
    _check_one_line_error(rc, capsys.readouterr().err, ["'fly'"])


def test_console_script_exit_code_2(tmp_path):
    """The one subprocess: a bad config through the real entry point, no traceback, status 2."""
    cfg = tmp_path / "typo.toml"
    cfg.write_text('[data]\nbuiltin = "sleepstudy"\n[model]\nformla = "Reaction ~ Days"\n')
    proc = subprocess.run([sys.executable, "-m", "jaxmix.cli", "run", str(cfg)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("jaxmix: error: ")]
    assert errors == [f"jaxmix: error: {cfg}: unknown key 'formla' in [model]; did you mean 'formula'? "
                      "(allowed: formula, method, weights, dtype)"]
    assert proc.returncode == 2


def test_readme_and_ci_agree():
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert [line.strip() for line in block.strip().splitlines()] == QUICK_START
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in ci
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert 'pip install ".[test]"' in commands
    assert commands[-1] == "python -m pytest -q"
