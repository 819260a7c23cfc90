"""The worked examples run at small size and tell the seed's story; the batting and evaluations simulators."""
from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxmix
from jaxmix.datasets import CENTRE_LINES

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(name: str, out: Path) -> tuple[dict, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        result = _load(name).main(small=True, out=str(out))
    return result, buf.getvalue()


def _has_mpl() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def centres(tmp_path_factory):
    return _run("seed_centres", tmp_path_factory.mktemp("seed_centres"))


@pytest.fixture(scope="module")
def batting(tmp_path_factory):
    return _run("batting_day_night", tmp_path_factory.mktemp("batting"))


@pytest.fixture(scope="module")
def crossed(tmp_path_factory):
    return _run("crossed_evaluations", tmp_path_factory.mktemp("crossed"))


def _plots_written(paths, names) -> None:
    if not _has_mpl():
        assert paths == []
        return
    assert [Path(p).name for p in paths] == names
    for p in paths:
        assert Path(p).stat().st_size > 5000


# ---- seed_centres --------------------------------------------------------------------------------

def test_seed_centres_sequence(centres):
    r, text = centres
    # one pooled line: falling, but far less steeply than the three falling centres, hiding centre 4
    assert -2.0 < r["pooled_slope"] < -0.5
    assert -2.0 < r["common_slope"] < -0.5
    # centre 4's extra slope: 1.8 - (-2.0) = 3.8 in truth
    assert r["c4_extra_slope"] == pytest.approx(3.8, abs=0.6)
    # random intercept and slope: 6 parameters; least-squares lines 2k + 1 = 9
    assert r["n_params"] == 6 and r["n_params_fixed_lines"] == 9
    # the mixed model's average slope lies between the centres' slopes, its lines near the truth
    lines = r["centre_lines"]
    assert lines["use"].min() < r["mixed_slope"] < lines["use"].max()
    truth = pd.DataFrame(CENTRE_LINES, index=["Intercept", "use"]).T
    assert np.allclose(lines["use"], truth["use"], atol=0.4)
    assert np.allclose(lines["Intercept"], truth["Intercept"], atol=4.0)
    # shrinkage: every centre pulled part of the way towards β (little: 10 subjects, residual SD 2)
    assert ((r["shrinkage"]["pull"] >= 0) & (r["shrinkage"]["pull"] < 0.5)).all()
    # deviance comparison: random slopes needed
    assert r["df"] == 2 and r["chisq"] > 20 and r["p"] < 1e-4
    for step in ("1. one line", "2. 0-1 design", "3. centre-4 interaction", "6. centre-specific", "7. deviance"):
        assert step in text
    _plots_written(r["plots"], ["caterpillar.png", "group_lines.png", "shrinkage.png"])


# ---- batting ------------------------------------------------------------------------------------

def test_batting_day_night(batting):
    r, text = batting
    # the seed: SE 0.0025 without, 0.0010 with the random player intercept
    assert 0.0025 / 1.5 < r["se_ols"] < 0.0025 * 1.5
    assert 0.0010 / 1.5 < r["se_mixed"] < 0.0010 * 1.5
    assert r["se_ols"] / r["se_mixed"] > 1.8
    assert r["night_ols"] == pytest.approx(r["night_mixed"], abs=1e-9)  # balanced: the same estimate
    assert r["df_residual"] == 398
    if r["df_containment"] is not None:
        assert list(r["df_containment"]) == [19, 379]
    assert r["sd_player"] == pytest.approx(0.023, rel=0.35) and r["sd_residual"] == pytest.approx(0.010, rel=0.2)
    assert "SE of the night effect" in text
    _plots_written(r["plots"], ["caterpillar.png"])


def test_simulate_batting():
    d = jaxmix.datasets.simulate_batting()
    assert d.shape == (400, 4) and list(d.columns) == ["player", "game", "night", "average"]
    assert d["player"].nunique() == 20 and d["game"].nunique() == 20
    assert set(d["night"]) == {0, 1} and (d.groupby("game")["night"].nunique() == 1).all()
    assert (d.groupby("player")["night"].mean() == 0.5).all()  # every player: half his games at night
    assert d["average"].between(0.15, 0.40).all()
    pd.testing.assert_frame_equal(d, jaxmix.datasets.load("batting"))
    assert not d.equals(jaxmix.datasets.simulate_batting(seed=1))
    assert len(jaxmix.datasets.simulate_batting(n_players=5, n_games=8)) == 40
    with pytest.raises(jaxmix.JaxmixError, match="at least 2"):
        jaxmix.datasets.simulate_batting(n_players=1)


# ---- crossed evaluations --------------------------------------------------------------------------

def test_crossed_evaluations(crossed):
    r, text = crossed
    assert r["converged"]
    assert r["nobs"] == 7300 and r["ngroups"] == {"s": 300, "d": 110, "dept": 14}
    sd, truth = r["sd"], r["truth"]
    # rounding to 1..5 shrinks the latent scale a little; departments (14) are poorly determined
    for g in ("s", "d"):
        assert 0.6 * truth[g] < sd[g] < 1.3 * truth[g]
    assert 0.8 * truth["Residual"] < sd["Residual"] < 1.1 * truth["Residual"]
    assert sd["dept"] < 0.4
    assert abs(r["fixef"]["service"] - (-0.07)) < 3 * r["se"]["service"]
    assert np.isfinite(r["fit_seconds"]) and r["fit_seconds"] > 0
    assert "fit:" in text and "compiling" in text
    _plots_written(r["plots"], ["caterpillar.png", "caterpillar_s.png", "caterpillar_dept.png"])


def test_simulate_evaluations():
    d = jaxmix.datasets.simulate_evaluations(n_students=200, n_lecturers=60, n_departments=5, n_ratings=3000, seed=3)
    assert list(d.columns) == ["s", "d", "dept", "service", "y"] and len(d) == 3000
    assert d["s"].nunique() == 200 and d["d"].nunique() == 60 and d["dept"].nunique() == 5
    assert (d.groupby("d")["dept"].nunique() == 1).all()  # lecturers nested in departments
    assert (d.groupby("s")["d"].nunique() > 1).mean() > 0.5  # students rate several lecturers: crossed
    assert set(d["y"]) <= {1, 2, 3, 4, 5} and set(d["service"]) == {0, 1}
    pd.testing.assert_frame_equal(d, jaxmix.datasets.simulate_evaluations(n_students=200, n_lecturers=60,
                                                                           n_departments=5, n_ratings=3000, seed=3))
    full = jaxmix.datasets.load("evaluations")
    assert len(full) == 73000 and full["s"].nunique() == 3000 and full["d"].nunique() == 1100
    assert full["dept"].nunique() == 14
    with pytest.raises(jaxmix.JaxmixError, match="n_ratings"):
        jaxmix.datasets.simulate_evaluations(n_students=100, n_lecturers=10, n_departments=2, n_ratings=50)
    with pytest.raises(jaxmix.JaxmixError, match="n_departments"):
        jaxmix.datasets.simulate_evaluations(n_lecturers=3, n_departments=5)


def test_examples_have_main_and_cli():
    configs = {"seed_centres": "seed_centres", "batting_day_night": "batting_day_night",
               "crossed_evaluations": "crossed_evaluations", "ami_nine_endpoints": "ami"}
    assert sorted(p.stem for p in EXAMPLES.glob("*.py") if p.stem != "centres") == sorted(configs)
    for name, config in configs.items():
        src = (EXAMPLES / f"{name}.py").read_text()
        assert "def main(small: bool = False" in src and 'if __name__ == "__main__":' in src
        assert f"out/examples/{name}" in src
        assert f"configs/{config}.toml" in src.split('"""')[1], name  # the header names its config
        assert (EXAMPLES.parent / "configs" / f"{config}.toml").exists()


# ---- AMI nine endpoints ---------------------------------------------------------------------------

def test_ami_nine_endpoints(tmp_path):
    from jaxmix.datasets.ami import AMI_ENDPOINTS

    r, text = _run("ami_nine_endpoints", tmp_path)
    multi, single, table = r["multilevel"], r["single"], r["comparison"]
    assert list(multi.names) == list(AMI_ENDPOINTS) and bool(multi.converged.all()) and bool(single.converged.all())
    # each endpoint on its own non-missing rows: death30 complete, cath ~5% missing
    assert multi.nobs["death30"] == 3000 and 2700 < multi.nobs["cath"] < 3000
    assert single.nobs.equals(multi.nobs)
    # 4 physician/hospital-level covariates x 9 endpoints, both analyses' numbers taken from the fits
    assert len(table) == 36 and set(table["term"]) == {"cardiologist", "volume", "teaching", "rural"}
    row = table[(table["outcome"] == "cath") & (table["term"] == "teaching")].iloc[0]
    assert row["estimate_multilevel"] == pytest.approx(multi.fixef.loc["cath", "teaching"], rel=1e-12)
    assert row["se_single"] == pytest.approx(single.se.loc["cath", "teaching"], rel=1e-12)
    assert table["differs"].dropna().isin([True, False]).all()
    # ignoring the clustering understates the SEs of group-level covariates
    assert table["se_ratio"].median() < 1.0
    assert "Conclusions at the 0.05 level that differ" in text
    assert (tmp_path / "comparison.csv").exists()
    if _has_mpl():
        assert Path(r["plot"]).stat().st_size > 5000
