"""``fit_many`` with residual structures (``variance=``, ``correlation=``) and cs/ar1 random terms.

Each outcome goes through ``jaxmix.fit``'s structured driver on its own rows; the sweep must equal
``jaxmix.fit`` on each outcome (with its missing rows dropped before the fit, so an AR(1) in data order
links the remaining rows), one outcome must equal nlme (tests/data/structured_reference.json, generator
tests/data/export_structured.R), and an outcome whose own fit fails gets status 16 while the others go on.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxmix
from conftest import quiet

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "structured_reference.json").read_text())


def _orthodont():
    d = pd.read_csv(DATA / "Orthodont.csv")
    d["Sex"] = pd.Categorical(d["Sex"], ["Male", "Female"])  # R's level order
    rng = np.random.default_rng(5)
    d["d2"] = d["distance"] + rng.normal(0.0, 1.5, len(d))
    d["d3"] = d["distance"].where(rng.random(len(d)) > 0.1)  # about 10 % missing
    return d


def _same_as_fit(sw, d, rhs, **kw):
    for name in sw.names:
        one = quiet(jaxmix.fit, f"{name} {rhs}", d.dropna(subset=[name]), **kw)
        a = sw[name]
        assert a.converged and one.converged
        assert a.loglik == pytest.approx(one.loglik, abs=1e-8)
        np.testing.assert_allclose(a.beta, one.beta, rtol=1e-8)
        np.testing.assert_allclose(a.se, one.se, rtol=1e-8)
        pd.testing.assert_frame_equal(a.extra["structure"]["table"], one.extra["structure"]["table"])
        assert sw.nobs[name] == one.nobs


def test_varident_sweep_matches_nlme_and_screens():
    d = _orthodont().assign(flat=1.0)
    sw = quiet(jaxmix.fit_many, "~ age + Sex + (1 | Subject)", d, outcomes=["distance", "flat"],
                variance="ident(Sex)")
    assert sw.status.tolist() == [0, 11]
    case = REF["orthodont_varident_ML"]
    sw = quiet(jaxmix.fit_many, "~ age + Sex + (1 | Subject)", d, outcomes=["distance"], method="ML",
                variance="ident(Sex)")
    assert sw.loglik["distance"] == pytest.approx(case["loglik"], abs=1e-4) and sw.method == "ML"
    np.testing.assert_allclose(sw.se.loc["distance"], list(case["se"].values()), rtol=1e-4)


def test_varident_sweep_equals_fit_and_nlme():
    d = _orthodont()
    rhs = "~ age + Sex + (1 | Subject)"
    sw = quiet(jaxmix.fit_many, rhs, d, outcomes=["distance", "d2", "d3"], variance="ident(Sex)")
    assert sw.converged.all() and sw.method == "REML" and sw.nobs["d3"] < 108
    _same_as_fit(sw, d, rhs, variance="ident(Sex)")
    case = REF["orthodont_varident_REML"]  # nlme::lme(weights = varIdent(form = ~1 | Sex))
    assert sw.loglik["distance"] == pytest.approx(case["loglik"], abs=1e-4)
    np.testing.assert_allclose(sw.fixef.loc["distance"], list(case["fixef"].values()), rtol=1e-4)
    np.testing.assert_allclose(sw.se.loc["distance"], list(case["se"].values()), rtol=1e-4)
    tab = sw.structure_table
    ratio = tab[(tab.outcome == "distance") & (tab.var1 == "SD ratio Male/Female")]["estimate"].item()
    assert ratio == pytest.approx(case["params"]["var_ratios"]["Male"], rel=1e-4)
    assert set(tab["outcome"]) == {"distance", "d2", "d3"}


def test_gls_ar1_sweep_equals_fit_and_a_failing_outcome_gets_a_status():
    d = _orthodont()
    # a repeated (Subject, age) row, observed for d2 only: d2's own AR(1) fit fails, the others are fitted
    dup = d.head(1).assign(distance=np.nan, d3=np.nan)
    d2 = pd.concat([d, dup], ignore_index=True)
    sw = quiet(jaxmix.fit_many, "~ age + Sex", d2, outcomes=["distance", "d2", "d3"],
                correlation="ar1(age | Subject)")
    assert sw.status.tolist() == [0, 16, 0] and sw.method == "REML"
    assert "occurs twice" in sw.warnings["d2"][0] and np.isnan(sw.fixef.loc["d2"]).all()
    with pytest.raises(jaxmix.JaxmixError, match="not fitted"):
        sw["d2"]
    ok = jaxmix.fit_many("~ age + Sex", d2, outcomes=["distance", "d3"], correlation="ar1(age | Subject)")
    _same_as_fit(ok, d2, "~ age + Sex", correlation="ar1(age | Subject)")
    np.testing.assert_allclose(sw.fixef.loc[["distance", "d3"]], ok.fixef, rtol=1e-12)
    assert (ok.coef_table()["df"] == ok.nobs.repeat(3).to_numpy() - 3).all()  # gls: n − p df, as nlme


def test_cs_term_sweep_equals_fit_and_errors():
    m = pd.read_csv(DATA / "Machines.csv").astype({"Worker": str})
    m["s2"] = m["score"] + np.random.default_rng(3).normal(0.0, 2.0, len(m))
    rhs = "~ Machine + cs(0 + Machine | Worker)"
    sw = quiet(jaxmix.fit_many, rhs, m, outcomes=["score", "s2"])
    _same_as_fit(sw, m, rhs)
    assert (sw.structure_table["kind"] == "rho").sum() == 2
    d = _orthodont()
    with pytest.raises(jaxmix.JaxmixError, match="for Gaussian models; family is 'poisson'"):
        jaxmix.fit_many("~ age", d, outcomes=["distance"], family="poisson", variance="ident(Sex)")
    with pytest.raises(jaxmix.JaxmixError, match="ar2"):
        jaxmix.fit_many("~ age", d, outcomes=["distance"], correlation="ar2(Subject)")
    with pytest.raises(jaxmix.JaxmixError, match="float64"):
        jaxmix.fit_many("~ age", d, outcomes=["distance"], correlation="ar1(Subject)", dtype="float32")
    with pytest.raises(jaxmix.JaxmixError, match="float64"):
        jaxmix.fit_many(rhs, m, outcomes=["score"], dtype="float32")


def test_aliased_outcome_is_refitted_with_its_structure():
    """An outcome observed for boys only: Sex is constant on its rows, so jaxmix.fit drops that column
    (as lme4); the sweep refits it alone with the same correlation and reports NaN for the column."""
    d = _orthodont()
    d["boys"] = d["distance"].where(d["Sex"] == "Male")
    sw = quiet(jaxmix.fit_many, "~ age + Sex + (1 | Subject)", d, outcomes=["distance", "boys"],
                correlation="ar1(Subject)")
    one = quiet(jaxmix.fit, "boys ~ age + (1 | Subject)", d.dropna(subset=["boys"]), correlation="ar1(Subject)")
    assert sw.status.tolist() == [0, 0] and np.isnan(sw.fixef.loc["boys", "Sex[T.Female]"])
    assert sw.loglik["boys"] == pytest.approx(one.loglik, abs=1e-8)
    np.testing.assert_allclose(sw.fixef.loc["boys", ["Intercept", "age"]], one.beta, rtol=1e-8)
    assert sw["boys"].extra["structure"]["rho"] == pytest.approx(one.extra["structure"]["rho"], rel=1e-8)


def test_sweep_config_takes_structures(tmp_path):
    """[sweep] variance / correlation reach fit_many; fit.json carries each outcome's structure table."""
    from jaxmix.cli import main as cli
    from jaxmix.cli.config import ConfigError, parse_config

    base = {"data": {"path": "o.csv"}, "sweep": {"formula": "~ age + (1 | Subject)", "outcomes": ["distance"]}}
    c = parse_config({**base, "sweep": {**base["sweep"], "variance": "ident(Sex)"}})
    assert c.sweep.fit_kwargs()["variance"] == "ident(Sex)"
    for extra, match in [({"correlation": "ar2(Subject)"}, "ar2"),
                         ({"variance": "ident(Sex)", "family": "poisson"}, "gaussian"),
                         ({"variance": "ident(Sex)", "compare_single_level": True}, "compare_single_level")]:
        with pytest.raises(ConfigError, match=match):
            parse_config({**base, "sweep": {**base["sweep"], **extra}})
    _orthodont().to_csv(tmp_path / "o.csv", index=False)
    (tmp_path / "s.toml").write_text('[data]\npath = "o.csv"\n[sweep]\nformula = "~ age + Sex + (1 | Subject)"\n'
                                     'outcomes = ["distance", "d2"]\nvariance = "ident(Sex)"\nmethod = "ML"\n')
    assert cli.main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    rec = json.loads((tmp_path / "out" / "fit.json").read_text())["multilevel"]
    case = REF["orthodont_varident_ML"]
    assert rec["variance"] == "ident(Sex)" and rec["outcomes"]["distance"]["loglik"] == pytest.approx(case["loglik"], abs=1e-4)
    ratio = [r for r in rec["outcomes"]["distance"]["structure"] if r["kind"] == "ratio"]
    assert ratio[0]["var1"] == "SD ratio Male/Female"  # the CSV's Sex sorts Female first, as nlme's
    assert ratio[0]["estimate"] == pytest.approx(case["params"]["var_ratios"]["Male"], rel=1e-4)
