"""``fit_many`` with the families that estimate a dispersion parameter (negative binomial θ, Gamma shape).

Every outcome of the sweep must equal ``jaxmix.fit`` on that outcome alone (an independent run of the
one-outcome path on its own rows, not the sweep's padded, zero-weighted rows), and the grouseticks NB
outcome must equal glmmTMB's nbinom2 fit (tests/data/families_nb_gamma.json, generator
tests/data/export_families_nb_gamma.R).  Extra outcomes are simulated here with numpy (a fixed seed):
one with its own random effect and shape, one with missing rows.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import jaxmix
from conftest import DATA_DIR, quiet

TMB = json.loads((DATA_DIR / "families_nb_gamma.json").read_text())
NB_RHS = "~ YEAR + cHEIGHT + (1 | LOCATION)"
GA_RHS = "~ x + (1 | g)"


def _nb_data() -> pd.DataFrame:
    d = pd.read_csv(DATA_DIR / "grouseticks_nb.csv")
    d["YEAR"], d["LOCATION"] = d["YEAR"].astype(str), d["LOCATION"].astype(str)
    rng = np.random.default_rng(11)
    codes = pd.factorize(d["LOCATION"])[0]
    u = rng.normal(0.0, 0.7, codes.max() + 1)
    mu = np.exp(0.4 - 0.5 * d["cHEIGHT"].to_numpy() / d["cHEIGHT"].std() + u[codes])
    d["T2"] = rng.negative_binomial(3.0, 3.0 / (3.0 + mu))  # NB2 with θ = 3
    d["T3"] = d["TICKS"].where(rng.random(len(d)) > 0.1)  # 10 % missing
    return d


def _gamma_data() -> pd.DataFrame:
    d = pd.read_csv(DATA_DIR / "gamma_sim.csv")
    rng = np.random.default_rng(2)
    codes = pd.factorize(d["g"])[0]
    u = rng.normal(0.0, 0.5, codes.max() + 1)
    d["y2"] = rng.gamma(2.0, np.exp(0.3 + 0.5 * d["x"].to_numpy() + u[codes]) / 2.0)  # shape 2
    d["y3"] = d["y"].where(rng.random(len(d)) > 0.15)
    return d


def _same_as_fit(sw, d, rhs, **kw):
    for name in sw.names:
        one = quiet(jaxmix.fit, f"{name} {rhs}", d, **kw)
        a = sw[name]
        assert one.converged and a.converged
        assert a.loglik == pytest.approx(one.loglik, abs=1e-6)
        np.testing.assert_allclose(a.beta, one.beta, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(a.theta, one.theta, rtol=1e-5, atol=1e-8)
        assert a.dispersion == pytest.approx(one.dispersion, rel=1e-6)
        np.testing.assert_allclose(a.se, one.se, rtol=1e-4)
        assert sw.dispersion[name] == a.dispersion and a.n_params == one.n_params == sw.n_params
        assert sw.dispersion_table.set_index("outcome").loc[name, "se"] == pytest.approx(
            one.dispersion_table["se"].iloc[0], rel=1e-4)


def test_negative_binomial_sweep_equals_fit_and_glmmtmb():
    d = _nb_data()
    sw = quiet(jaxmix.fit_many, NB_RHS, d, outcomes=["TICKS", "T2", "T3"], family="negative_binomial")
    assert sw.converged.all() and sw.nobs["T3"] < sw.nobs["TICKS"] == 403
    _same_as_fit(sw, d, NB_RHS, family="negative_binomial")
    ref = TMB["nb_glmm"]  # glmmTMB nbinom2 on TICKS
    assert sw.loglik["TICKS"] == pytest.approx(ref["loglik"], abs=1e-4)
    np.testing.assert_allclose(sw.fixef.loc["TICKS"], list(ref["fixef"].values()), rtol=1e-3)
    np.testing.assert_allclose(sw.se.loc["TICKS"], list(ref["se"].values()), rtol=1e-3)
    assert sw.dispersion["TICKS"] == pytest.approx(ref["dispersion"], rel=1e-3)
    assert sw.dispersion_table["se"].iloc[0] == pytest.approx(ref["se_dispersion"], rel=2e-3)
    assert sw.dispersion["T2"] == pytest.approx(3.0, rel=0.5)  # simulated with θ = 3
    assert list(sw.dispersion_table["parameter"].unique()) == ["theta (NB shape)"]
    assert "theta (NB shape)" in sw.summary()
    agq = quiet(jaxmix.fit_many, NB_RHS, d, outcomes=["TICKS", "T3"], family="negative_binomial", nagq=5)
    assert agq.method == "AGQ"
    _same_as_fit(agq, d, NB_RHS, family="negative_binomial", nagq=5)


def test_gamma_sweep_matches_glmmtmb_and_screens_bad_outcomes():
    d = _gamma_data()
    d["bad"] = d["y"] - 1.0  # some values <= 0: not a Gamma response
    sw = quiet(jaxmix.fit_many, GA_RHS, d, outcomes=["y", "bad"], family="gamma", link="log")
    assert sw.status.tolist() == [0, 14] and np.isnan(sw.dispersion["bad"])
    ref = TMB["gamma_log_glmm"]
    assert sw.loglik["y"] == pytest.approx(ref["loglik"], abs=1e-4)
    np.testing.assert_allclose(sw.fixef.loc["y"], list(ref["fixef"].values()), rtol=1e-3)
    np.testing.assert_allclose(sw.se.loc["y"], list(ref["se"].values()), rtol=1e-3)
    assert sw.dispersion["y"] == pytest.approx(ref["dispersion"], rel=1e-3)
    assert sw["y"].varcorr["sdcor"].iloc[0] == pytest.approx(ref["re_sd"], rel=1e-3)


def test_gamma_sweep_equals_fit():
    d = _gamma_data()
    sw = quiet(jaxmix.fit_many, GA_RHS, d, outcomes=["y2", "y3"], family="gamma", link="log")
    assert sw.converged.all()
    _same_as_fit(sw, d, GA_RHS, family="gamma", link="log")
    assert sw.dispersion["y2"] == pytest.approx(2.0, rel=0.3)  # simulated with shape 2


def test_gamma_sweep_without_random_terms_is_the_ml_glm():
    d = _gamma_data()
    sw = quiet(jaxmix.fit_many, "~ x", d, outcomes=["y", "y3"], family="gamma", link="log")
    ref = TMB["gamma_log_glm"]
    assert sw.loglik["y"] == pytest.approx(ref["loglik"], abs=1e-4)
    assert sw.dispersion["y"] == pytest.approx(ref["dispersion"], rel=1e-3)
    one = quiet(jaxmix.fit, "y3 ~ x", d, family="gamma", link="log")
    assert sw["y3"].loglik == pytest.approx(one.loglik, abs=1e-8) and sw.n_params == one.n_params == 3
