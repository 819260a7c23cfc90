"""jaxmix's Gaussian fits against lme4 1.1-31 on the reference cases (tests/data/lme4_reference.json).

Every Gaussian case is fitted once per method per session (``conftest.reference_fit``); the tests
below compare one group of numbers each, so a failure names what is off.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import GAUSSIAN_CASES, REFERENCE, rel_close, reference_fit

METHODS = ["REML", "ML"]
CASES = [pytest.param(c, m, id=f"{c}-{m}") for c in GAUSSIAN_CASES for m in METHODS]


def _ref(case_id: str, method: str) -> dict:
    return REFERENCE[case_id]["fits"][method]


def _term_name(lme4_name):
    """lme4's column names -> formulaic's (``(Intercept)`` -> ``Intercept``)."""
    if lme4_name is None:
        return None
    return "Intercept" if lme4_name == "(Intercept)" else lme4_name


def test_reference_file_is_complete():
    # the golden file keeps every case (GLMM ones too, for the GLMM tests)
    assert len(GAUSSIAN_CASES) == 8
    families = {v["family"] for v in REFERENCE.values()}
    assert {"gaussian", "binomial", "poisson"} <= families
    for cid in GAUSSIAN_CASES:
        assert set(REFERENCE[cid]["fits"]) == {"REML", "ML"}


@pytest.mark.parametrize("case_id,method", CASES)
def test_objective(case_id, method):
    res = reference_fit(case_id, method)
    ref = _ref(case_id, method)
    assert res.method == method
    assert res.converged
    assert abs(res.objective - ref["deviance_or_reml_crit"]) < 1e-4, (res.objective, ref["deviance_or_reml_crit"])
    assert res.nobs == REFERENCE[case_id]["nobs"]


@pytest.mark.parametrize("case_id,method", CASES)
def test_fixed_effects(case_id, method):
    res = reference_fit(case_id, method)
    ref = _ref(case_id, method)
    fe_ref = np.array(list(ref["fixef"].values()))
    se_ref = np.array(list(ref["se"].values()))
    # names differ (lme4: (Intercept), MachineB; formulaic: Intercept, Machine[T.B]): compare by position
    assert len(res.fixef) == len(fe_ref)
    err = np.abs(res.fixef.to_numpy() - fe_ref)
    assert np.all(err <= 1e-4 * se_ref), (res.fixef.to_numpy(), fe_ref, err / se_ref)
    rel_close(res.se.to_numpy(), se_ref, rtol=1e-3)
    # vcov is consistent with the SEs
    np.testing.assert_allclose(np.sqrt(np.diag(res.vcov.to_numpy())), res.se.to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("case_id,method", CASES)
def test_variance_components(case_id, method):
    res = reference_fit(case_id, method)
    ref = _ref(case_id, method)
    vc = res.varcorr
    assert list(vc.columns) == ["group", "var1", "var2", "vcov", "sdcor"]
    ref_vc = ref["varcorr"]
    # same rows in lme4's order: groups (Subject.1 for ||, cask:batch for nesting), Residual last
    assert list(vc["group"]) == [r["group"] for r in ref_vc]
    assert vc["group"].iloc[-1] == "Residual"
    got_var1 = [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in vc["var1"]]
    got_var2 = [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in vc["var2"]]
    assert got_var1 == [_term_name(r["var1"]) for r in ref_vc]
    assert got_var2 == [_term_name(r.get("var2")) for r in ref_vc]
    rel_close(vc["vcov"].to_numpy(), [r["vcov"] for r in ref_vc], rtol=1e-3)
    rel_close(vc["sdcor"].to_numpy(), [r["sdcor"] for r in ref_vc], rtol=1e-3)
    rel_close([res.sigma], [ref["sigma"]], rtol=1e-3)


@pytest.mark.parametrize("case_id,method", CASES)
def test_theta(case_id, method):
    res = reference_fit(case_id, method)
    ref = _ref(case_id, method)
    rel_close(res.theta, ref["theta"], rtol=1e-3, atol_zero=1e-6)


@pytest.mark.parametrize("case_id,method", CASES)
def test_likelihood_and_information_criteria(case_id, method):
    res = reference_fit(case_id, method)
    ref = _ref(case_id, method)
    assert abs(res.loglik - ref["loglik"]) < 1e-4
    assert abs(res.aic - ref["aic"]) < 2e-4
    assert abs(res.bic - ref["bic"]) < 2e-4
    # REML: logLik = -REMLcrit / 2; ML: deviance = -2 logLik
    assert res.loglik == pytest.approx(-res.objective / 2, abs=1e-9)


@pytest.mark.parametrize("case_id,method", CASES)
def test_singular_flag(case_id, method):
    res = reference_fit(case_id, method)
    assert res.singular is _ref(case_id, method)["singular"]


@pytest.mark.parametrize("method", METHODS)
def test_dyestuff2_boundary_is_exact(method):
    res = reference_fit("dyestuff2_singular", method)
    assert res.theta.tolist() == [0.0]
    assert res.singular is True
    vc = res.varcorr
    assert vc["vcov"].iloc[0] == 0.0
    assert (res.ranef["mode"] == 0.0).all()
    assert (res.ranef["condsd"] == 0.0).all()
    # with the random effect gone this is a least-squares fit: sigma^2 = RSS / (n - 1) (REML) or RSS / n
    y = res.design.y
    rss = float(np.sum((y - y.mean()) ** 2))
    denom = len(y) - 1 if method == "REML" else len(y)
    assert res.sigma == pytest.approx(np.sqrt(rss / denom), rel=1e-10)


@pytest.mark.parametrize("case_id,method", CASES)
def test_random_effects(case_id, method):
    res = reference_fit(case_id, method)
    ref = _ref(case_id, method)
    re_ = res.ranef
    assert list(re_.columns) == ["group", "term", "level", "mode", "condsd"]
    n_ref = sum(len(b["level"]) for b in ref["ranef"])
    assert len(re_) == n_ref
    for blk in ref["ranef"]:
        term = _term_name(blk["term"])
        sub = re_[(re_["group"] == blk["group"]) & (re_["term"] == term)]
        assert len(sub) == len(blk["level"]), (blk["group"], term)
        sub = sub.set_index("level")
        assert set(sub.index) == set(blk["level"]), (blk["group"], term)
        for col in ("mode", "condsd"):
            got = sub.loc[blk["level"], col].to_numpy()
            exp = np.asarray(blk[col], dtype=float)
            # 1e-3 relative, with a floor of 1e-4 of the block's largest value for modes near 0
            scale = np.max(np.abs(exp))
            tol = np.maximum(1e-3 * np.abs(exp), 1e-4 * scale) if scale > 0 else np.full_like(exp, 1e-6)
            err = np.abs(got - exp)
            assert np.all(err <= tol), (blk["group"], term, col, np.max(err / np.maximum(tol, 1e-300)))


@pytest.mark.parametrize("method", METHODS)
def test_uncorrelated_terms_are_two_terms(method):
    res = reference_fit("sleepstudy_uncorr", method)
    vc = res.varcorr
    # no correlation row: (Days || Subject) is (1 | Subject) + (0 + Days | Subject)
    assert vc["var2"].isna().all()
    assert len(res.theta) == 2
    corr = reference_fit("sleepstudy_slope", method)
    assert len(corr.theta) == 3
    # the correlated fit is at least as good (it nests the uncorrelated one)
    assert corr.loglik > res.loglik
