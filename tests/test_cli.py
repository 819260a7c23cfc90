"""The ``jaxmix`` command: run / validate / datasets, output files and one-line config errors.

Fits cost seconds of compilation each, so one CLI run (module fixture) is shared by the tests
and compared with one direct ``jaxmix.fit``; every bad-config path fails before any fit.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxmix
from jaxmix.cli import main as cli
REPO = Path(__file__).resolve().parents[1]
SLEEP = REPO / "configs" / "sleepstudy.toml"


def _has_mpl() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


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
    pngs = ["caterpillar.png", "group_lines.png", "shrinkage.png"] if _has_mpl() else []
    written = sorted([*cli.OUTPUT_FILES, "anova.csv", *pngs])
    assert sorted(p.name for p in out.iterdir()) == sorted([*written, ".jaxmix-run.json"])
    manifest = json.loads((out / ".jaxmix-run.json").read_text())
    assert manifest["files"] == written and manifest["config"] == str(SLEEP) and manifest["time"][:2] == "20"
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []  # no staging folder
    assert "Reaction ~ Days + (Days | Subject)" in (out / "summary.txt").read_text()
    fixed = pd.read_csv(out / "fixed.csv")
    assert list(fixed.columns) == ["term", "estimate", "se", "df", "statistic", "p", "ci_low", "ci_high"]
    assert fixed["term"].tolist() == ["Intercept", "Days"]
    vc = pd.read_csv(out / "varcorr.csv")
    assert list(vc.columns) == ["group", "var1", "var2", "vcov", "sdcor"]
    assert vc["group"].tolist() == ["Subject", "Subject", "Subject", "Residual"]
    cp = pd.read_csv(out / "covparms.csv")
    assert list(cp.columns) == ["group", "var1", "var2", "estimate", "se", "z", "p"]
    re_ = pd.read_csv(out / "ranef.csv")
    assert list(re_.columns) == ["group", "term", "level", "mode", "condsd"]
    assert len(re_) == 36
    an = pd.read_csv(out / "anova.csv")
    assert list(an.columns) == ["term", "sum_sq", "mean_sq", "num_df", "den_df", "F", "p"] and an["term"].tolist() == ["Days"]
    rec = json.loads((out / "fit.json").read_text())
    for key in ["loglik", "objective", "theta", "sigma", "converged", "singular", "nobs", "fixef", "se", "vcov",
                "varcorr", "fixed", "covparms", "anova", "fit_seconds", "compile_seconds", "compilation_cache",
                "versions", "devices", "config"]:
        assert key in rec, key
    assert rec["nobs"] == 180 and rec["converged"] is True and rec["singular"] is False
    assert len(rec["theta"]) == 3 and rec["compile_seconds"] >= 0 and rec["fit_seconds"] >= rec["compile_seconds"]
    assert rec["ddf"] == "satterthwaite" and rec["config"]["model"]["ddf"] == "satterthwaite"
    assert set(rec["compilation_cache"]) == {"enabled", "dir"}


def test_run_matches_python_fit(sleep_run):
    _, out = sleep_run
    rec = json.loads((out / "fit.json").read_text())
    res = jaxmix.fit("Reaction ~ Days + (Days | Subject)", jaxmix.datasets.sleepstudy(), method="REML")
    assert rec["loglik"] == pytest.approx(res.loglik, rel=1e-8, abs=0)
    assert rec["objective"] == pytest.approx(res.objective, rel=1e-8, abs=0)
    assert rec["sigma"] == pytest.approx(res.sigma, rel=1e-8)
    assert rec["theta"] == pytest.approx(list(res.theta), rel=1e-8)
    assert rec["loglik"] == pytest.approx(-871.8141, abs=1e-3)  # lme4: REML criterion 1743.628
    fixed = pd.read_csv(out / "fixed.csv", index_col="term")
    assert fixed["estimate"].to_numpy() == pytest.approx(res.fixef.to_numpy(), rel=1e-8)
    table = res.coef_table(ddf="satterthwaite")
    assert fixed["df"].to_numpy() == pytest.approx(table["df"].to_numpy(), rel=1e-6)
    assert fixed["se"].to_numpy() == pytest.approx(res.se.to_numpy(), rel=1e-8)
    vc = pd.read_csv(out / "varcorr.csv")
    assert vc["vcov"].to_numpy() == pytest.approx(res.varcorr["vcov"].to_numpy(), rel=1e-7)
    cp = pd.read_csv(out / "covparms.csv")
    assert cp["se"].to_numpy() == pytest.approx(res.covparm_table()["se"].to_numpy(), rel=1e-6)
    assert [r["estimate"] for r in rec["covparms"]] == pytest.approx(cp["estimate"].tolist(), rel=1e-12)


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
    "unknown_key_named_model": ('[data]\nbuiltin = "sleepstudy"\n[models.full]\nformula = "Reaction ~ Days"\n'
                                'famliy = "gaussian"\n', ["'famliy'", "[models.full]", "did you mean 'family'"]),
    "wrong_type_options": ('[data]\nbuiltin = "sleepstudy"\n' + BASE_MODEL + '[options]\ngtol = "small"\n',
                           ["[options] gtol", "must be a number"]),
    "family_method": ('[data]\nbuiltin = "sleepstudy"\n' + BASE_MODEL + 'method = "AGQ"\n',
                      ["[model] method 'AGQ'", "gaussian model takes 'REML' or 'ML'"]),
    "method_family": ('[data]\nbuiltin = "sleepstudy"\n[models.glmm]\nformula = "Reaction ~ Days + (1 | Subject)"\n'
                      'family = "poisson"\nmethod = "REML"\n', ["[models.glmm] method 'REML'", "'Laplace' or 'AGQ'"]),
    "agq_crossed": ('[data]\nbuiltin = "sleepstudy"\n[models.agq]\nformula = "Reaction ~ Days + (1 | Subject) + '
                    '(0 + Days | Subject)"\nfamily = "poisson"\nmethod = "AGQ"\n',
                    ["[models.agq] method 'AGQ' needs a single scalar random-effect term", "has 2"]),
    "empty_outcomes": ('[data]\nbuiltin = "sleepstudy"\n[sweep]\nformula = "~ Days + (1 | Subject)"\noutcomes = []\n',
                       ["[sweep] outcomes is empty"]),
    "absent_outcome": ('[data]\nbuiltin = "sleepstudy"\n[sweep]\nformula = "~ Days + (1 | Subject)"\n'
                       'outcomes = ["Reaction", "Speed"]\n', ["'Speed'", "not in the data"]),
    "unknown_lrt_model": ('[data]\nbuiltin = "sleepstudy"\n[models.null]\nformula = "Reaction ~ Days"\n'
                          '[models.full]\nformula = "Reaction ~ Days + (1 | Subject)"\n[comparisons]\n'
                          'lrt = ["nul", "full"]\n', ["[comparisons] lrt", "'nul'", "did you mean 'null'"]),
    "absent_plot_x": ('[data]\nbuiltin = "sleepstudy"\n' + BASE_MODEL + '[output]\nplot_x = "days"\n',
                      ["[output] plot_x 'days'", "did you mean 'Days'"]),
    "bad_ddf_for_model": ('[data]\nbuiltin = "sleepstudy"\n' + BASE_MODEL + 'method = "ML"\n[inference]\n'
                          'ddf = "kenward-roger"\n', ["[inference] ddf", "needs method = 'REML'"]),
    "nagq_above_25": ('[data]\nbuiltin = "sleepstudy"\n[model]\nformula = "Reaction ~ Days + (1 | Subject)"\n'
                      'family = "poisson"\nmethod = "AGQ"\nnagq = 30\n', ["nagq", "1 to 25", "30"]),
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
    proc = subprocess.run([sys.executable, "-m", "jaxmix.cli.main", "run", str(cfg)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("jaxmix: error: ")]
    assert errors == [f"jaxmix: error: {cfg}: unknown key 'formla' in [model]; did you mean 'formula'? "
                      "(allowed: formula, family, link, method, nagq, weights, offset, trials, dtype, ddf, anova, "
                      "variance, correlation, estimator)"]
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


# ---- --set ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize("item, needles", [
    ("model.methd=ML", ["--set 'model.methd=ML'", "unknown key 'methd' in [model]", "did you mean 'method'"]),
    ("modl.method=ML", ["--set 'modl.method=ML'", "unknown section 'modl'", "did you mean 'model'"]),
    ("model.method", ["--set 'model.method'", "expected KEY=VALUE"]),
    ("models.full.method=ML", ["no model 'full'"]),
    ("model.method=GLS", ["[model] method must be one of 'REML', 'ML'", "'GLS'"]),
    ("options.max_iter=lots", ["[options] max_iter must be an integer", "'lots'"]),
    ("data.args.n_patients=10", ["unknown key 'n_patients' in [data.args]"]),
])
def test_bad_set_one_line_exit_2(command, item, needles, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = cli.main([command, str(SLEEP), "--set", item])
    captured = capsys.readouterr()
    _check_one_line_error(rc, captured.err, needles + ["sleepstudy.toml"])
    assert captured.out == "" and list(tmp_path.iterdir()) == []


def test_set_overrides_validate(capsys, tmp_path):
    rc = cli.main(["validate", str(SLEEP), "--set", "model.method=ML", "--set", "model.formula=Reaction ~ Days + (1 | Subject)",
                   "--set", "inference.ddf=containment", "--set", f"output.dir={tmp_path / 'x'}"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "ML fit of 'Reaction ~ Days + (1 | Subject)'" in out and str(tmp_path / "x") in out


# ---- data files ----------------------------------------------------------------------------------
def test_parquet_data_and_missing_pyarrow(tmp_path, capsys, monkeypatch):
    pytest.importorskip("pyarrow")
    jaxmix.datasets.sleepstudy().to_parquet(tmp_path / "sleep.parquet")
    cfg = tmp_path / "pq.toml"
    cfg.write_text('[data]\npath = "sleep.parquet"\n[model]\nformula = "Reaction ~ Days + (1 | Subject)"\n')
    assert cli.main(["validate", str(cfg), "--out", str(tmp_path / "o")]) == 0
    assert "with 180 rows" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    rc = cli.main(["validate", str(cfg), "--out", str(tmp_path / "o")])
    _check_one_line_error(rc, capsys.readouterr().err, ["sleep.parquet", "needs pyarrow", "[data] path"])
    (tmp_path / "bad.parquet").write_text("not parquet")
    monkeypatch.delitem(sys.modules, "pyarrow")
    rc = cli.main(["validate", str(cfg), "--set", "data.path=bad.parquet"])
    _check_one_line_error(rc, capsys.readouterr().err, ["bad.parquet", "cannot read"])
    rc = cli.main(["validate", str(SLEEP), "--set", 'output.formats=["csv", "parquet"]', "--out", str(tmp_path / "o")])
    assert rc == 0 and capsys.readouterr().out.startswith("ok:")


def test_fit_error_is_one_line(tmp_path, capsys, monkeypatch):
    """An error jaxmix.fit raises itself (here: AGQ on two terms, with the CLI's own check skipped)
    is one line naming the model, exit 2."""
    import dataclasses

    from jaxmix.cli import job
    real = job.check_model
    monkeypatch.setattr(job, "check_model", lambda m, data: real(dataclasses.replace(m, method="Laplace"), data))
    cfg = tmp_path / "agq.toml"
    jaxmix.datasets.sleepstudy().assign(y=lambda d: (d["Reaction"] > 300).astype(int)).to_csv(tmp_path / "s.csv")
    cfg.write_text('[data]\npath = "s.csv"\n[models.agq]\nformula = "y ~ Days + (1 | Subject) + (0 + Days | Subject)"\n'
                   'family = "binomial"\nmethod = "AGQ"\n')
    rc = cli.main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"])
    _check_one_line_error(rc, capsys.readouterr().err, ["agq.toml", "[models.agq]", "quadrature"])
    assert not (tmp_path / "o").exists()


# ---- a GLMM through the CLI, tables in CSV and Parquet, and plots without matplotlib ----------------------
def _binomial_data(n_groups=30, n_per=12, seed=3):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), n_per)
    x = rng.normal(size=g.size)
    eta = -0.3 + 0.8 * x + rng.normal(0, 0.9, n_groups)[g]
    return pd.DataFrame({"g": [f"g{i:02d}" for i in g], "x": x, "y": rng.binomial(1, 1 / (1 + np.exp(-eta)))})


def test_glmm_run_matches_python_and_parquet_tables(tmp_path, capsys, monkeypatch):
    pytest.importorskip("pyarrow")
    from jaxmix import plots

    data = _binomial_data()
    data.to_csv(tmp_path / "b.csv", index=False)
    cfg = tmp_path / "glmm.toml"
    cfg.write_text('[data]\npath = "b.csv"\n[model]\nformula = "y ~ x + (1 | g)"\nfamily = "binomial"\nmethod = "AGQ"\n'
                   'nagq = 5\n[inference]\nanova = true\n[output]\nformats = ["csv", "parquet"]\n')
    monkeypatch.setattr(plots, "_mpl", lambda: (_ for _ in ()).throw(
        jaxmix.JaxmixError('plots need matplotlib, an optional extra: pip install "jaxmix[plot]"')))
    from jaxmix.cli import job
    monkeypatch.setattr(job, "_MPL_WARNED", [])
    out = tmp_path / "o"
    assert cli.main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("plots skipped: matplotlib is not installed") == 1
    assert not list(out.glob("*.png"))
    res = jaxmix.fit("y ~ x + (1 | g)", data, family="binomial", method="AGQ", nagq=5)
    rec = json.loads((out / "fit.json").read_text())
    assert rec["method"] == "AGQ" and rec["family"] == "binomial" and rec["link"] == "logit"
    assert rec["loglik"] == pytest.approx(res.loglik, rel=1e-8)
    assert list(rec["fixef"].values()) == pytest.approx(res.fixef.tolist(), rel=1e-8)
    assert rec["theta"] == pytest.approx(list(res.theta), rel=1e-8)
    assert rec["ddf"] == "asymptotic"
    for stem in ("fixed", "covparms", "varcorr", "ranef", "anova"):
        a, b = pd.read_csv(out / f"{stem}.csv"), pd.read_parquet(out / f"{stem}.parquet")
        assert list(a.columns) == list(b.columns), stem
        num = a.select_dtypes("number").columns
        np.testing.assert_allclose(a[num].to_numpy(float), b[num].to_numpy(float), rtol=1e-12)
    fixed = pd.read_csv(out / "fixed.csv").set_index("term")
    assert fixed["estimate"].tolist() == pytest.approx(res.fixef.tolist(), rel=1e-8)
    assert np.isinf(fixed["df"]).all()  # asymptotic: z tests


# ---- the output folder: never lose a user's file ------------------------------------------------------
MANIFEST = ".jaxmix-run.json"
QUICK = ["--quiet", "--set", "output.plots=false"]  # the fixture's model: compiled once per process


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_staging_left(out: Path) -> None:
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == []


def _call(argv) -> int:
    try:
        return cli.main(argv)
    except KeyboardInterrupt:  # pragma: no cover - the behaviour under test
        pytest.fail("KeyboardInterrupt escaped jaxmix's main")


def test_data_file_in_output_folder_is_never_written(sleep_run, tmp_path, capsys):
    """The data file named fixed.csv inside the output folder: refused by validate and run, with or
    without --force, and left byte for byte."""
    out = tmp_path / "out"
    out.mkdir()
    jaxmix.datasets.sleepstudy().to_csv(out / "fixed.csv", index=False)
    before = (out / "fixed.csv").read_bytes()
    cfg = tmp_path / "inside.toml"
    cfg.write_text(f'[data]\npath = "out/fixed.csv"\n[model]\nformula = "Reaction ~ Days + (Days | Subject)"\n'
                   f'[output]\ndir = "{out}"\nplots = false\n')
    for argv in (["validate", str(cfg)], ["validate", str(cfg), "--force"], ["run", str(cfg), "--quiet"],
                 ["run", str(cfg), "--quiet", "--force"]):
        rc = cli.main(argv)
        _check_one_line_error(rc, capsys.readouterr().err, ["inside.toml", "[data] path", "fixed.csv",
                                                            "inside the output folder", str(out)])
    assert (out / "fixed.csv").read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["fixed.csv"]
    _no_staging_left(out)


def test_foreign_files_refused_kept_with_force(sleep_run, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    for command in (["validate"], ["run", *QUICK]):
        rc = cli.main([command[0], str(SLEEP), "--out", str(out), *command[1:]])
        _check_one_line_error(rc, capsys.readouterr().err, [str(out), "'notes.txt'", "did not write", "--force"])
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert cli.main(["validate", str(SLEEP), "--out", str(out), "--force"]) == 0
    capsys.readouterr()
    for _ in range(2):  # a rerun with --force replaces jaxmix's files, keeps the user's
        assert cli.main(["run", str(SLEEP), "--out", str(out), "--force", *QUICK]) == 0
        assert (out / "notes.txt").read_text() == "my notes"
        manifest = json.loads((out / MANIFEST).read_text())
        assert "notes.txt" not in manifest["files"] and "fixed.csv" in manifest["files"]
        assert sorted(p.name for p in out.iterdir()) == sorted([*manifest["files"], MANIFEST, "notes.txt"])
    _no_staging_left(out)
    # without --force the folder still holds a file jaxmix did not write
    rc = cli.main(["run", str(SLEEP), "--out", str(out), *QUICK])
    _check_one_line_error(rc, capsys.readouterr().err, ["'notes.txt'"])


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_foreign_file_with_an_output_name_is_an_error(force, sleep_run, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "fixed.csv").write_text("my own table\n")
    (out / "summary.txt").write_text("my summary\n")
    before = _snapshot(out)
    for argv in (["validate", str(SLEEP)], ["run", str(SLEEP), *QUICK]):
        rc = cli.main([*argv, "--out", str(out), *force])
        _check_one_line_error(rc, capsys.readouterr().err, [str(out), "'fixed.csv'", "would write over"])
    assert _snapshot(out) == before
    _no_staging_left(out)


def test_sweep_validate_refuses_foreign_files(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.txt").write_text("mine")
    cfg = tmp_path / "sw.toml"
    cfg.write_text('[data]\nbuiltin = "sleepstudy"\n[sweep]\nformula = "~ Days + (1 | Subject)"\noutcomes = ["Reaction"]\n')
    rc = cli.main(["validate", str(cfg), "--out", str(out)])
    _check_one_line_error(rc, capsys.readouterr().err, ["sw.toml", str(out), "'report.txt'", "--force"])
    assert cli.main(["validate", str(cfg), "--out", str(out), "--force"]) == 0


def test_two_configs_with_the_same_name(sleep_run, tmp_path, monkeypatch, capsys):
    """a/sleep.toml and b/sleep.toml both default to out/sleep: the second is refused unless --force."""
    monkeypatch.chdir(tmp_path)
    text = SLEEP.read_text().replace('dir = "out/sleepstudy"', "")
    configs = []
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        configs.append(tmp_path / sub / "sleep.toml")
        configs[-1].write_text(text)
    a, b = configs
    assert cli.main(["run", str(a), *QUICK]) == 0
    out = tmp_path / "out" / "sleep"
    before = _snapshot(out)
    assert json.loads(before[MANIFEST])["config"] == str(a)
    for argv in (["validate", str(b)], ["run", str(b), *QUICK]):
        rc = cli.main(argv)
        _check_one_line_error(rc, capsys.readouterr().err, ["out/sleep", "another config", str(a), "--force"])
    assert _snapshot(out) == before
    assert cli.main(["run", str(a), *QUICK]) == 0  # the same config again: replaced
    assert cli.main(["run", str(b), *QUICK, "--force"]) == 0
    assert json.loads((out / MANIFEST).read_text())["config"] == str(b)
    _no_staging_left(out)


def test_rerun_removes_stale_results(sleep_run, tmp_path, capsys):
    """Stale anova.csv, lrt.csv and model folders of an earlier run of the config are removed."""
    cfg = tmp_path / "two.toml"
    cfg.write_text('[data]\nbuiltin = "sleepstudy"\n[models.null]\nformula = "Reaction ~ Days"\n[models.full]\n'
                   'formula = "Reaction ~ Days + (Days | Subject)"\nanova = true\n[comparisons]\nlrt = ["null", "full"]\n'
                   '[output]\nplots = false\n')
    out = tmp_path / "out"
    assert cli.main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert {"null", "full", "lrt.csv"} <= {p.name for p in out.iterdir()} and (out / "full" / "anova.csv").exists()
    cfg.write_text('[data]\nbuiltin = "sleepstudy"\n[model]\nformula = "Reaction ~ Days + (Days | Subject)"\n'
                   '[output]\nplots = false\n')
    assert cli.main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*cli.OUTPUT_FILES, MANIFEST])
    assert cli.main(["run", str(cfg), "--out", str(out), "--set", "inference.anova=true", *QUICK]) == 0
    assert (out / "anova.csv").exists()
    assert cli.main(["run", str(cfg), "--out", str(out), *QUICK]) == 0
    assert not (out / "anova.csv").exists()
    _no_staging_left(out)


def _previous_run(tmp_path) -> tuple[Path, dict]:
    out = tmp_path / "out"
    assert cli.main(["run", str(SLEEP), "--out", str(out), *QUICK]) == 0
    (out / "summary.txt").write_text("the previous run\n")  # to see whether it is rewritten
    return out, _snapshot(out)


def test_failed_write_leaves_previous_results(sleep_run, tmp_path, monkeypatch, capsys):
    from jaxmix.cli import job
    out, before = _previous_run(tmp_path)

    def broken(*a, **k):
        raise RuntimeError("disk trouble")

    monkeypatch.setattr(job, "write_table", broken)  # after summary.txt is written
    rc = cli.main(["run", str(SLEEP), "--out", str(out), *QUICK])
    assert rc == 1 and "disk trouble" in capsys.readouterr().err
    assert _snapshot(out) == before
    _no_staging_left(out)


@pytest.mark.parametrize("where", ["fit", "writing"])
def test_ctrl_c_one_line_130_previous_results_kept(where, sleep_run, tmp_path, monkeypatch, capsys):
    import jaxmix.api.fit
    from jaxmix.cli import job
    out, before = _previous_run(tmp_path)
    capsys.readouterr()

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(*((jaxmix.api.fit, "fit") if where == "fit" else (job, "write_table")), interrupt)
    rc = _call(["run", str(SLEEP), "--out", str(out), *QUICK])
    err = capsys.readouterr().err
    assert rc == 130 and "Traceback" not in err
    assert err.splitlines() == [f"jaxmix: interrupted; the output folder '{out}' and its files left as they were"]
    assert _snapshot(out) == before
    _no_staging_left(out)


@pytest.mark.parametrize("ddf, limit, needles", [
    ("kenward-roger", "KR_MAX_ROWS", ["[model] ddf 'kenward-roger'", "limited to 10 random-effect columns",
                                      "(or 100 rows)", "satterthwaite"]),
    ("containment", "RANK_MAX_COLUMNS", ["[model] ddf 'containment'", "limited to 10 columns"]),
])
def test_validate_checks_df_size_limits(ddf, limit, needles, tmp_path, monkeypatch, capsys):
    """The df methods' size limits (inference.KR_MAX_ROWS with KR_MAX_RE_COLUMNS, RANK_MAX_COLUMNS; lowered
    here to use sleepstudy's 180 rows, 36 random-effect and 38 [X Z] columns) refuse in validate, and in
    run before any fit."""
    from jaxmix.inference import wald as inference
    monkeypatch.setattr(inference, limit, {"KR_MAX_ROWS": 100, "RANK_MAX_COLUMNS": 10}[limit])
    if limit == "KR_MAX_ROWS":
        monkeypatch.setattr(inference, "KR_MAX_RE_COLUMNS", 10)
    for argv in (["validate", str(SLEEP)], ["run", str(SLEEP), "--quiet"]):
        rc = cli.main([*argv, "--out", str(tmp_path / "o"), "--set", f"inference.ddf={ddf}"])
        _check_one_line_error(rc, capsys.readouterr().err, ["sleepstudy.toml", *needles])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["run", "validate"])
def test_more_random_effects_than_rows_is_refused_before_any_fit(command, tmp_path, capsys):
    """lmer's check.nobs.vs.nRE (jaxmix.fit makes it too): 100 groups x 2 rows, (x | g) = 200 random effects."""
    rng = np.random.default_rng(0)
    d = pd.DataFrame({"g": np.repeat(np.arange(100), 2), "x": rng.normal(size=200), "y": rng.normal(size=200)})
    d.to_csv(tmp_path / "d.csv", index=False)
    cfg = tmp_path / "nre.toml"
    cfg.write_text('[data]\npath = "d.csv"\n[model]\nformula = "y ~ x + (x | g)"\n')
    rc = cli.main([command, str(cfg)] + (["--quiet"] if command == "run" else []))
    _check_one_line_error(rc, capsys.readouterr().err,
                          ["number of observations (=200) <= number of random effects (=200)", "(x | g)"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "nre.toml"]
