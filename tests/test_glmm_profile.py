"""GLMM profile intervals, confint(method="profile"), against lme4's confint.merMod
(tests/data/export_contrasts.R -> contrasts_reference.json): cbpp (binomial) and grouseticks (Poisson)."""
import json
import warnings

import numpy as np
import pytest

import jaxmix
from jaxmix.inference.glmm_profile import psi_to_theta, theta_to_psi
from jaxmix.spec.covariance import theta_layout
from conftest import DATA_DIR, load_csv

REF = json.load(open(DATA_DIR / "contrasts_reference.json"))["glmm_profile"]


@pytest.fixture(scope="module")
def cbpp():
    return jaxmix.fit("incidence ~ C(period) + (1 | herd)", load_csv("cbpp.csv"), family="binomial", trials="size")


def test_cbpp_profile_matches_lme4(cbpp):
    ref = REF["cbpp"]
    ci = cbpp.confint(method="profile")
    assert list(ci.index) == [".sig01", "Intercept", "C(period)[T.2]", "C(period)[T.3]", "C(period)[T.4]"]
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    # lme4 reads the crossings off a spline through its profile: agreement to about 1e-4 here
    np.testing.assert_allclose(ci.iloc[:, 0], ref["lower"], atol=1e-3)
    np.testing.assert_allclose(ci.iloc[:, 1], ref["upper"], atol=1e-3)
    # the profile intervals are not Wald's: asymmetric around the estimate for the SD
    sd = cbpp.theta[0]
    assert (ci.iloc[0, 1] - sd) > 1.2 * (sd - ci.iloc[0, 0])


def test_parm_selection_and_level(cbpp):
    sig = cbpp.confint(method="profile", parm="theta_", level=0.9)
    assert list(sig.index) == [".sig01"] and list(sig.columns) == ["5 %", "95 %"]
    full = cbpp.confint(method="profile", parm=[".sig01"])
    assert full.iloc[0, 0] < sig.iloc[0, 0] < sig.iloc[0, 1] < full.iloc[0, 1]


def test_grouseticks_poisson_two_terms():
    ref = REF["grouseticks"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = jaxmix.fit("TICKS ~ C(YEAR) + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", load_csv("grouseticks.csv"),
                         family="poisson")
    ci = res.confint(method="profile")
    assert len(ci) == len(ref["lower"]) == 6
    np.testing.assert_allclose(ci.iloc[:, 0], ref["lower"], atol=2e-3)
    np.testing.assert_allclose(ci.iloc[:, 1], ref["upper"], atol=2e-3)


def test_psi_theta_round_trip():
    tl = theta_layout([2, 1])
    theta = np.array([0.8, -0.3, 0.5, 1.2])
    import jax.numpy as jnp

    psi = theta_to_psi(theta, tl)
    assert psi[0] == pytest.approx(0.8) and psi[2] == pytest.approx(np.hypot(0.3, 0.5))
    assert psi[1] == pytest.approx(-0.3 / np.hypot(0.3, 0.5))  # the correlation
    np.testing.assert_allclose(np.asarray(psi_to_theta(jnp.asarray(psi), tl)), theta, rtol=1e-12)
