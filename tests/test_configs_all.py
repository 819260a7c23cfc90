"""Every config in ``configs/`` runs through ``jaxmix run`` at a small size (``--set`` shrinks the data),
writes the files its sections promise with the right columns, and its numbers are those of the
Python API (``jaxmix.fit`` on the same data and keyword arguments)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxmix
from jaxmix.cli import main as cli
from jaxmix.cli.config import load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.toml"))
HAS_MPL = importlib.util.find_spec("matplotlib") is not None

#: --set overrides that keep each run small (a few seconds on a 2-core CPU).
SMALL = {
    "ami": ["data.args.n_patients=3000"],  # = tests/test_ami.py's size (compiled shapes are cached)
    "batting_day_night": [],
    "centres": ["bootstrap.n=20"],
    "crossed_evaluations": ["data.args.n_students=200", "data.args.n_lecturers=60", "data.args.n_departments=5",
                            "data.args.n_ratings=3000"],
    "seed_centres": [],
    "sleepstudy": [],
    # checked in tests/test_bayes_config.py (needs numpyro)
    "sleepstudy_bayes": ["sampler.chains=2", "sampler.draws=150", "sampler.warmup=150", "sampler.progress=false"],
}

FIXED_COLUMNS = ["term", "estimate", "se", "df", "statistic", "p", "ci_low", "ci_high"]
COVPARM_COLUMNS = ["group", "var1", "var2", "estimate", "se", "z", "p"]
VARCORR_COLUMNS = ["group", "var1", "var2", "vcov", "sdcor"]
RANEF_COLUMNS = ["group", "term", "level", "mode", "condsd"]
LRT_COLUMNS = ["comparison", "model", "npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "p", "p_mixture",
               "criterion", "note"]


def test_every_config_has_a_small_size():
    assert set(CONFIGS) == set(SMALL), "add the new config to SMALL (and its checks below)"
    assert {"ami", "sleepstudy", "centres", "seed_centres", "batting_day_night", "crossed_evaluations"} <= set(CONFIGS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            out = tmp_path_factory.mktemp(name)
            sets = [a for s in SMALL[name] for a in ("--set", s)]
            rc = cli.main(["run", str(REPO / "configs" / f"{name}.toml"), "--out", str(out), "--quiet", *sets])
            cfg = load_config(REPO / "configs" / f"{name}.toml", overrides=SMALL[name])
            cache[name] = (rc, out, cfg)
        return cache[name]

    return get


def _check_model_folder(folder: Path, m, data: pd.DataFrame, options) -> dict:
    """The files of one model, their columns, and fit.json against a direct jaxmix.fit."""
    rec = json.loads((folder / "fit.json").read_text())
    res = jaxmix.fit(m.formula, data, **m.fit_kwargs(options))
    names = {p.name for p in folder.iterdir()} - {".jaxmix-run.json"}  # the run's manifest
    expect = {"summary.txt", "fixed.csv", "varcorr.csv", "fit.json"}
    if res.is_mixed:
        expect |= {"covparms.csv", "ranef.csv"}
    if m.anova:
        expect.add("anova.csv")
    assert expect <= names, (folder, expect - names)
    assert set(rec["files"]) == names
    fixed = pd.read_csv(folder / "fixed.csv")
    assert list(fixed.columns) == FIXED_COLUMNS
    assert list(pd.read_csv(folder / "varcorr.csv").columns) == VARCORR_COLUMNS
    # fit.json's numbers are the Python API's
    rel = 1e-8
    assert rec["loglik"] == pytest.approx(res.loglik, rel=rel, abs=0)
    assert rec["objective"] == pytest.approx(res.objective, rel=rel, abs=0)
    assert rec["nobs"] == res.nobs and rec["method"] == res.method and rec["family"] == res.family
    assert list(rec["fixef"]) == list(res.fixef.index)
    np.testing.assert_allclose(list(rec["fixef"].values()), res.fixef.to_numpy(), rtol=rel, atol=0)
    np.testing.assert_allclose(list(rec["se"].values()), res.se.to_numpy(), rtol=rel, atol=0)
    np.testing.assert_allclose(rec["theta"], np.asarray(res.theta, float), rtol=rel, atol=1e-12)
    if res.family == "gaussian":
        assert rec["sigma"] == pytest.approx(res.sigma, rel=rel)
    # fixed.csv is the coef table with the configured df method
    table = res.coef_table(ddf=m.ddf)
    np.testing.assert_allclose(fixed["estimate"], table["estimate"], rtol=rel)
    np.testing.assert_allclose(fixed["df"], table["df"], rtol=1e-6)
    assert fixed["term"].tolist() == list(table.index)
    assert rec["ddf"] == table.attrs["ddf"]
    if res.is_mixed:
        cp = pd.read_csv(folder / "covparms.csv")
        assert list(cp.columns) == COVPARM_COLUMNS
        np.testing.assert_allclose(cp["estimate"], res.covparm_table()["estimate"], rtol=1e-7)
        re_ = pd.read_csv(folder / "ranef.csv")
        assert list(re_.columns) == RANEF_COLUMNS
        assert len(re_) == sum(t.nlevels * t.q for t in res.design.terms)
        vc = pd.read_csv(folder / "varcorr.csv")
        np.testing.assert_allclose(vc["vcov"], res.varcorr["vcov"], rtol=1e-7)
    # timings, cache, environment
    assert rec["compile_seconds"] is None or rec["compile_seconds"] >= 0
    assert rec["fit_seconds"] is None or rec["fit_seconds"] >= 0
    return rec


def _pngs(folder: Path) -> set:
    return {p.name for p in folder.glob("*.png")}


def _check_png(folder: Path, expected: set) -> None:
    if not HAS_MPL:
        assert _pngs(folder) == set()
        return
    assert _pngs(folder) == expected
    for name in expected:
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _environment(rec: dict) -> None:
    import jax

    assert rec["versions"]["jax"] == jax.__version__ and rec["versions"]["jaxmix"] == jaxmix.__version__
    assert rec["devices"] == [str(d) for d in jax.devices()]
    cache = rec["compilation_cache"]
    assert cache["dir"] == (jax.config.jax_compilation_cache_dir or None)
    assert cache["enabled"] == bool(jax.config.jax_compilation_cache_dir)


@pytest.mark.parametrize("name", ["sleepstudy", "centres", "crossed_evaluations"])
def test_single_model_configs(runs, name):
    rc, out, cfg = runs(name)
    assert rc == 0
    data = cli.load_data(cfg)
    rec = _check_model_folder(out, cfg.model, data, cfg.options)
    _environment(rec)
    assert rec["config"]["overrides"] == SMALL[name]
    assert rec["config"]["source"].endswith(f"{name}.toml")
    if name == "sleepstudy":
        _check_png(out, {"caterpillar.png", "group_lines.png", "shrinkage.png"})
        # Type III F of the one-column term Days is t² on the same (Satterthwaite) df
        an = pd.read_csv(out / "anova.csv").set_index("term")
        fx = pd.read_csv(out / "fixed.csv").set_index("term")
        assert an.loc["Days", "F"] == pytest.approx(fx.loc["Days", "statistic"] ** 2, rel=1e-8)
        assert an.loc["Days", "den_df"] == pytest.approx(fx.loc["Days", "df"], rel=1e-6)
        assert "bootstrap.csv" not in rec["files"]
    if name == "centres":
        _check_png(out, {"caterpillar.png", "group_lines.png", "shrinkage.png"})
        boot = pd.read_csv(out / "bootstrap.csv")
        assert list(boot.columns) == ["parameter", "estimate", "lower", "upper", "boot_se"]
        assert boot["parameter"].tolist()[:2] == ["Intercept", "use"]
        assert boot["estimate"].tolist()[:2] == pytest.approx(list(rec["fixef"].values()), rel=1e-12)
        assert (boot["lower"] <= boot["upper"]).all() and (boot["boot_se"] > 0).all()
        assert rec["bootstrap_info"]["n"] == 20 and rec["bootstrap_info"]["seed"] == 1
    if name == "crossed_evaluations":
        _check_png(out, {"caterpillar.png", "caterpillar_s.png", "caterpillar_dept.png"})  # plot_group = d
        assert rec["ngroups"] == {"s": 200, "d": 60, "dept": 5} and rec["nobs"] == 3000


@pytest.mark.parametrize("name", ["seed_centres", "batting_day_night"])
def test_named_model_configs(runs, name):
    rc, out, cfg = runs(name)
    assert rc == 0
    data = cli.load_data(cfg)
    top = json.loads((out / "fit.json").read_text())
    _environment(top)
    assert top["kind"] == "models" and list(top["models"]) == list(cfg.models)
    recs = {}
    for model_name, m in cfg.models.items():
        folder = out / model_name
        recs[model_name] = _check_model_folder(folder, m, data, cfg.options)
        mixed = bool(recs[model_name]["ngroups"])
        if mixed:
            _check_png(folder, {"caterpillar.png", "group_lines.png", "shrinkage.png"})
        else:
            assert _pngs(folder) == set()
        assert top["models"][model_name]["loglik"] == recs[model_name]["loglik"]
    summary = (out / "summary.txt").read_text()
    for model_name, m in cfg.models.items():
        assert f"== {model_name}: {m.formula}" in summary
    if name == "seed_centres":
        lrt = pd.read_csv(out / "lrt.csv")
        assert list(lrt.columns) == LRT_COLUMNS
        seed = lrt[lrt["comparison"] == "intercept vs slope"].set_index("model")
        # the seed's deviance comparison: chi-square = d4 - d5 on 2 df, from the two ML fits
        chisq = 2 * (recs["slope"]["loglik"] - recs["intercept"]["loglik"])
        assert seed.loc["slope", "Chisq"] == pytest.approx(chisq, rel=1e-10)
        assert seed.loc["slope", "Df"] == recs["slope"]["n_params"] - recs["intercept"]["n_params"] == 2
        assert seed.loc["slope", "p"] < 1e-4
        assert set(lrt["comparison"]) == {"intercept vs slope", "pooled vs intercept vs slope"}
        assert len(top["lrt"]) == len(lrt)
        assert "likelihood-ratio tests" in summary
    if name == "batting_day_night":
        assert not (out / "lrt.csv").exists()
        n_players = data["player"].nunique()
        player = pd.read_csv(out / "player" / "fixed.csv").set_index("term")
        ols = pd.read_csv(out / "ols" / "fixed.csv").set_index("term")
        # containment df: players - 1 for the intercept, n - players - 1 for night (the seed's 19 and 379)
        assert player["df"].tolist() == [n_players - 1, len(data) - n_players - 1] == [19, 379]
        assert ols["df"].tolist() == [len(data) - 2] * 2
        assert recs["player"]["ddf"] == "containment" and recs["ols"]["ddf"] == "residual"
        assert ols.loc["night", "se"] / player.loc["night", "se"] > 1.8  # the seed: 0.0025 -> 0.0010


def test_sweep_config(runs):
    rc, out, cfg = runs("ami")
    assert rc == 0
    names = {p.name for p in out.iterdir()}
    assert {"summary.txt", "fixed.csv", "varcorr.csv", "fit.json", "fixed_single_level.csv", "comparison.csv",
            "report.txt"} <= names
    rec = json.loads((out / "fit.json").read_text())
    assert rec["kind"] == "sweep" and list(rec["multilevel"]["outcomes"]) == list(cfg.sweep.outcomes)
    assert rec["config"]["data"]["args"]["n_patients"] == 3000
    fixed = pd.read_csv(out / "fixed.csv")
    assert {"outcome", "term", "estimate", "se", "p"} <= set(fixed.columns)
    assert set(fixed["outcome"]) == set(cfg.sweep.outcomes)
    _environment(rec)
