"""The results object: predictions, fitted values and residuals, coef(), summary(), least-squares fits."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import jaxmix
from jaxmix import JaxmixError, JaxmixWarning

from conftest import case_data, reference_fit


@pytest.fixture(scope="module")
def machines():
    return reference_fit("machines_nested", "REML"), case_data("machines_nested")


def _manual_fitted_sleep(res, data):
    """β0 + β1 Days + b0[Subject] + b1[Subject] Days from the ranef table."""
    re_ = res.ranef
    b0 = re_[re_.term == "Intercept"].set_index("level")["mode"]
    b1 = re_[re_.term == "Days"].set_index("level")["mode"]
    subj = data["Subject"].astype(str)
    return (res.fixef["Intercept"] + b0.loc[subj].to_numpy()
            + (res.fixef["Days"] + b1.loc[subj].to_numpy()) * data["Days"].to_numpy())


def test_fitted_plus_residuals_is_y(sleep_reml, sleepstudy):
    res = sleep_reml
    np.testing.assert_allclose(res.fitted + res.residuals, sleepstudy["Reaction"].to_numpy(), rtol=0, atol=1e-9)
    # the fitted values are Xβ + Zb with b from the ranef table (labels and order consistent)
    np.testing.assert_allclose(res.fitted, _manual_fitted_sleep(res, sleepstudy), rtol=1e-12)
    # and not just Xβ
    assert np.max(np.abs(res.fitted - res.design.X @ res.beta)) > 1.0
    # the residual spread is of the order of sigma
    assert np.std(res.residuals) == pytest.approx(res.sigma, rel=0.25)


def test_predict_on_the_fitting_data_equals_fitted(sleep_reml, sleepstudy):
    np.testing.assert_allclose(sleep_reml.predict(sleepstudy), sleep_reml.fitted, rtol=1e-12)
    np.testing.assert_allclose(sleep_reml.predict(sleepstudy, include_re=False),
                               sleep_reml.fixef["Intercept"] + sleep_reml.fixef["Days"] * sleepstudy["Days"],
                               rtol=1e-12)


def test_predict_unseen_group_level_uses_b_zero(sleep_reml, sleepstudy):
    new = pd.DataFrame({"Days": [0.0, 3.0, 3.0, 9.0], "Subject": [308, 999, 308, 1000]})
    pred = sleep_reml.predict(new)
    fixed_only = sleep_reml.predict(new, include_re=False)
    beta = sleep_reml.fixef
    np.testing.assert_allclose(fixed_only, beta["Intercept"] + beta["Days"] * new["Days"], rtol=1e-12)
    # unseen subjects 999 and 1000: exactly the population prediction
    np.testing.assert_allclose(pred[[1, 3]], fixed_only[[1, 3]], rtol=1e-12)
    # seen subject 308: its own line (fitted value at the same Days)
    fitted_308 = pd.Series(sleep_reml.fitted, index=sleepstudy.index)[
        (sleepstudy["Subject"] == 308) & sleepstudy["Days"].isin([0, 3])].to_numpy()
    np.testing.assert_allclose(pred[[0, 2]], fitted_308, rtol=1e-12)
    assert abs(pred[0] - fixed_only[0]) > 1.0


def test_predict_nested_unseen_combination(machines):
    res, data = machines
    new = pd.DataFrame({"Machine": ["A", "A", "B"], "Worker": [1, 7, 7]})
    pred = res.predict(new)
    fixed_only = res.predict(new, include_re=False)
    # worker 7 does not exist: both its Worker and Machine:Worker effects are 0
    np.testing.assert_allclose(pred[1:], fixed_only[1:], rtol=1e-12)
    # worker 1 on machine A: β_A + b_Worker[1] + b_Machine:Worker[A:1]
    re_ = res.ranef.set_index(["group", "level"])["mode"]
    want = res.fixef["Intercept"] + re_[("Worker", "1")] + re_[("Machine:Worker", "A:1")]
    assert pred[0] == pytest.approx(want, rel=1e-12)


def test_predict_unseen_fixed_category_raises(machines):
    res, _ = machines
    new = pd.DataFrame({"Machine": ["A", "D"], "Worker": [1, 2]})
    with pytest.raises(JaxmixError, match="'Machine'.*'D'"):
        res.predict(new)
    with pytest.raises(JaxmixError, match="'Machine'.*'D'"):
        res.predict(new, include_re=False)


def test_predict_missing_grouping_column_raises(sleep_reml):
    with pytest.raises(JaxmixError, match="'Subject'"):
        sleep_reml.predict(pd.DataFrame({"Days": [1.0]}))


def test_coef_is_fixef_plus_ranef(sleep_reml):
    coefs = sleep_reml.coef()
    assert list(coefs) == ["Subject"]
    c = coefs["Subject"]
    assert list(c.columns) == ["Intercept", "Days"]
    re_ = sleep_reml.ranef
    for term in ("Intercept", "Days"):
        b = re_[re_.term == term].set_index("level")["mode"]
        np.testing.assert_allclose(c.loc[b.index, term].to_numpy(), sleep_reml.fixef[term] + b.to_numpy(), rtol=1e-12)
    # subject 308's line has a steeper slope than the average
    assert c.loc["308", "Days"] > sleep_reml.fixef["Days"] + 5


def test_coef_without_random_slope_copies_the_fixed_effect(machines):
    res, _ = machines
    c = res.coef()
    assert set(c) == {"Worker", "Machine:Worker"}
    w = c["Worker"]
    assert list(w.columns) == res.x_names
    np.testing.assert_allclose(w["Machine[T.B]"], res.fixef["Machine[T.B]"], rtol=0)
    b = res.ranef[res.ranef.group == "Worker"].set_index("level")["mode"]
    np.testing.assert_allclose(w.loc[b.index, "Intercept"], res.fixef["Intercept"] + b.to_numpy(), rtol=1e-12)


def test_summary_reml(sleep_reml):
    s = sleep_reml.summary()
    assert f"REML criterion at convergence: {sleep_reml.objective:.4f}" in s
    assert "1743.6" in s  # lme4's REML criterion 1743.628
    assert "Random effects:" in s
    vc = sleep_reml.varcorr
    # the variance table: group names, the variances and the correlation
    for group in ("Subject", "Residual"):
        assert group in s
    assert f"{vc['vcov'].iloc[0]:.4g}" in s  # Subject (Intercept) variance ~612.1
    assert f"{sleep_reml.sigma ** 2:.4g}" in s  # residual variance ~654.9
    assert f"{vc['sdcor'].iloc[2]:.3f}" in s  # correlation 0.066
    assert "Number of obs: 180, groups:  Subject, 18" in s
    assert "Fixed effects:" in s and "251.4" in s


def test_summary_ml_reports_information_criteria():
    res = reference_fit("sleepstudy_slope", "ML")
    s = res.summary()
    assert "REML criterion" not in s
    assert f"{res.aic:.1f}" in s and f"{res.bic:.1f}" in s
    assert "1763.9" in s  # lme4's AIC for the ML fit: 1763.94


def test_summary_marks_singular_fit():
    res = reference_fit("dyestuff2_singular", "REML")
    assert "singular" in res.summary()
    assert "singular" not in reference_fit("dyestuff", "REML").summary()


# ---------------------------------------------------------------------------------------------
# least squares (no bar term)


@pytest.fixture(scope="module")
def ols_data():
    rng = np.random.default_rng(11)
    n = 50
    x = rng.normal(size=n)
    c = rng.choice(["a", "b", "c"], size=n)
    y = 1.0 + 2.0 * x + np.where(c == "b", -1.5, 0.0) + rng.normal(scale=0.8, size=n)
    return pd.DataFrame({"y": y, "x": x, "c": c, "w": rng.uniform(0.5, 2.0, size=n)})


def _numpy_ols(data, w=None):
    X = np.column_stack([np.ones(len(data)), data["x"], data["c"] == "b", data["c"] == "c"]).astype(float)
    y = data["y"].to_numpy()
    sw = np.ones(len(y)) if w is None else np.sqrt(w)
    beta, *_ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
    resid = y - X @ beta
    n, p = X.shape
    rss = float(np.sum((sw * resid) ** 2))
    sigma2 = rss / (n - p)
    se = np.sqrt(np.diag(sigma2 * np.linalg.inv((X * sw[:, None]).T @ (X * sw[:, None]))))
    wt = np.ones(n) if w is None else w
    ybar = np.average(y, weights=wt)
    r2 = 1 - rss / float(np.sum(wt * (y - ybar) ** 2))
    return beta, se, np.sqrt(sigma2), r2, rss


def test_ols_matches_numpy_least_squares(ols_data):
    res = jaxmix.fit("y ~ x + c", ols_data)
    beta, se, sigma, r2, rss = _numpy_ols(ols_data)
    assert res.method == "OLS"
    assert not res.is_mixed and res.theta.size == 0
    assert res.x_names == ["Intercept", "x", "c[T.b]", "c[T.c]"]
    np.testing.assert_allclose(res.beta, beta, rtol=1e-10)
    np.testing.assert_allclose(res.se.to_numpy(), se, rtol=1e-10)
    assert res.sigma == pytest.approx(sigma, rel=1e-10)
    assert res.r_squared == pytest.approx(r2, rel=1e-10)
    assert 0.5 < res.r_squared < 1.0
    n = len(ols_data)
    assert res.loglik == pytest.approx(-0.5 * n * (np.log(2 * np.pi * rss / n) + 1), rel=1e-10)
    assert res.aic == pytest.approx(-2 * res.loglik + 2 * 5, rel=1e-12)  # 4 coefficients + sigma
    np.testing.assert_allclose(res.fitted + res.residuals, ols_data["y"], atol=1e-12)
    s = res.summary()
    assert "least squares" in s
    assert f"R-squared: {r2:.4f}" in s


def test_weighted_ols(ols_data):
    res = jaxmix.fit("y ~ x + c", ols_data, weights="w")
    beta, se, sigma, r2, _ = _numpy_ols(ols_data, ols_data["w"].to_numpy())
    np.testing.assert_allclose(res.beta, beta, rtol=1e-10)
    np.testing.assert_allclose(res.se.to_numpy(), se, rtol=1e-10)
    assert res.r_squared == pytest.approx(r2, rel=1e-10)


def test_ols_predict_new_data(ols_data):
    res = jaxmix.fit("y ~ x + c", ols_data)
    new = pd.DataFrame({"x": [0.0, 1.0], "c": ["c", "a"]})
    b = res.beta
    np.testing.assert_allclose(res.predict(new), [b[0] + b[3], b[0] + b[1]], rtol=1e-12)
    with pytest.raises(JaxmixError, match="'c'.*'z'"):
        res.predict(pd.DataFrame({"x": [0.0], "c": ["z"]}))


def test_lmm_with_tiny_group_variance_approaches_ols():
    # Dyestuff2's boundary fit has b = 0, so its fixed effect and REML sigma are the OLS ones
    res = reference_fit("dyestuff2_singular", "REML")
    data = case_data("dyestuff2_singular")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JaxmixWarning)
        ols = jaxmix.fit("Yield ~ 1", data)
    assert res.beta[0] == pytest.approx(ols.beta[0], rel=1e-12)
    assert res.sigma == pytest.approx(ols.sigma, rel=1e-10)
    assert res.se.iloc[0] == pytest.approx(ols.se.iloc[0], rel=1e-10)
