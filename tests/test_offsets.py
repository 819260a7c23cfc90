"""Offsets (``offset=`` column and ``offset(...)`` terms) in fitting and prediction, residuals of lme4's
four types and ``deviance`` as lme4 defines it.

Reference numbers: ``tests/data/export_residuals.R`` (lme4 1.1.31) -> ``tests/data/lme4_residuals.json``.
lme4's ``predict(newdata=)`` adds the ``offset(...)`` terms of the formula but drops an ``offset=``
argument (lme4 issue #447, while ``fitted()`` includes it); jaxmix adds both, read from the new data,
so its predictions are lme4's plus the new data's offset column.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import jaxmix
from jaxmix import JaxmixError

from conftest import DATA_DIR, load_csv

REF = json.loads((DATA_DIR / "lme4_residuals.json").read_text())["cases"]
TYPES = ("response", "pearson", "deviance", "working")


def _fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxmix.JaxmixWarning)
        return jaxmix.fit(*args, **kwargs)


def _sleep():
    d = load_csv("sleepstudy.csv")
    d["off2"] = 5.0 * (d["Days"] % 2)
    d["w"] = 1.0 + d["Days"] % 3
    return d


@pytest.fixture(scope="module")
def sleep_fit():
    d = _sleep()
    return d, _fit(REF["sleep_offsets"]["formula"], d, offset="off2", weights="w")


@pytest.fixture(scope="module")
def poisson_fit():
    c = REF["poisson_offset"]
    return _fit(c["formula"], load_csv("offsets_poisson.csv"), family="poisson", weights="w")


@pytest.fixture(scope="module")
def cbpp_fit():
    return _fit("incidence ~ period + (1 | herd)", load_csv("cbpp.csv"), family="binomial", trials="size")


# ---- 1. offset= column: fitted and predict(newdata) ------------------------------------------------
def test_lmm_predict_on_new_data_adds_the_offset_column():
    d = load_csv("sleepstudy.csv")
    d["off"] = 100.0
    res = _fit("Reaction ~ Days + (Days | Subject)", d, offset="off")
    plain = _fit("Reaction ~ Days + (Days | Subject)", d.assign(Reaction=d["Reaction"] - 100.0))
    np.testing.assert_allclose(res.fitted, plain.fitted + 100.0, atol=1e-6)
    np.testing.assert_allclose(res.predict(d), res.fitted, rtol=1e-12)
    new = pd.DataFrame({"Days": [1.0, 1.0], "Subject": [308, 308], "off": [0.0, 50.0]})
    pred = res.predict(new)
    assert pred[1] - pred[0] == pytest.approx(50.0, abs=1e-9)
    assert pred[0] == pytest.approx(plain.fitted[1], abs=1e-6)  # Subject 308, Days 1 is row 1
    with pytest.raises(JaxmixError, match="offset column 'off' is not in the new data"):
        res.predict(new.drop(columns="off"))
    with pytest.raises(JaxmixError, match="offset column 'off' is not in the new data"):
        res.predict(new.drop(columns="off"), include_re=False)


def test_lmm_offset_column_and_term_match_lme4(sleep_fit):
    _, res = sleep_fit
    c = REF["sleep_offsets"]
    new = pd.DataFrame(c["newdata"])
    assert res.loglik == pytest.approx(c["loglik"], abs=1e-6)
    np.testing.assert_allclose(res.fixef, c["fixef"], rtol=1e-7)
    np.testing.assert_allclose(res.fitted, c["fitted"], atol=1e-4)  # fitted: both offsets
    # lme4's predict drops the offset= column on new data (issue #447); jaxmix adds it
    np.testing.assert_allclose(res.predict(new), np.add(c["predict"], new["off2"]), atol=1e-4)
    np.testing.assert_allclose(res.predict(new, include_re=False), np.add(c["predict_fixed"], new["off2"]), atol=1e-6)


def test_offset_given_as_an_array_cannot_predict_new_data():
    d = load_csv("sleepstudy.csv")
    res = _fit("Reaction ~ Days + (Days | Subject)", d, offset=np.full(len(d), 100.0))
    np.testing.assert_allclose(res.predict(), res.fitted)
    with pytest.raises(JaxmixError, match="offset= given as an array"):
        res.predict(d.head(3))


# ---- 2. offset(...) in a Gaussian formula -------------------------------------------------------
def test_gaussian_offset_term_equals_offset_column():
    d = load_csv("sleepstudy.csv")
    d["o"] = 20 * np.cos(d["Days"])
    a = _fit("Reaction ~ Days + offset(20 * np.cos(Days)) + (Days | Subject)", d)
    b = _fit("Reaction ~ Days + (Days | Subject)", d, offset="o")
    assert a.x_names == ["Intercept", "Days"]
    assert a.loglik == pytest.approx(b.loglik, abs=1e-9)
    np.testing.assert_allclose(a.fitted, b.fitted, atol=1e-7)
    # least squares, and the offset term alone (the intercept stays)
    ols = _fit("Reaction ~ offset(o)", d)
    assert ols.fixef["Intercept"] == pytest.approx(np.mean(d["Reaction"] - d["o"]), rel=1e-12)
    new = pd.DataFrame({"Days": [0.0, 2.0], "Subject": [308, 999]})
    np.testing.assert_allclose(a.predict(new, include_re=False), a.fixef["Intercept"] + a.fixef["Days"] * new["Days"]
                               + 20 * np.cos(new["Days"]), rtol=1e-12)
    c = _fit("Reaction ~ Days + offset(o) + (Days | Subject)", d)
    np.testing.assert_allclose(c.fitted, b.fitted, rtol=1e-12)
    with pytest.raises(JaxmixError, match="column 'o' used in offset\\(o\\) is not in the new data"):
        c.predict(new)
    with pytest.raises(JaxmixError, match="column 'Dayz' used in offset.*did you mean 'Days'"):
        _fit("Reaction ~ Days + offset(np.cos(Dayz)) + (1 | Subject)", d)


# ---- 3. a GLMM's offset(...) term on new data -----------------------------------------------------
def test_glmm_offset_term_predicts_new_data_as_lme4(poisson_fit):
    c = REF["poisson_offset"]
    res = poisson_fit
    new = pd.DataFrame(c["newdata"])
    assert res.loglik == pytest.approx(c["loglik"], abs=1e-7)
    np.testing.assert_allclose(res.predict(new, type="link"), c["predict"], atol=1e-6)
    np.testing.assert_allclose(res.predict(new), c["predict_response"], rtol=1e-6)
    np.testing.assert_allclose(res.predict(new, type="link", include_re=False), c["predict_fixed"], atol=1e-6)
    np.testing.assert_allclose(res.fitted, c["fitted"], rtol=1e-6)
    with pytest.raises(JaxmixError, match="column 'expo' used in offset\\(np.log\\(expo\\)\\) is not in the new data"):
        res.predict(new.drop(columns="expo"))


# ---- 4. residuals of every type ---------------------------------------------------------------------
def test_binomial_residuals_with_trials_match_lme4(cbpp_fit):
    res, c = cbpp_fit, REF["cbpp_logit"]
    cb = load_csv("cbpp.csv")
    # response residuals are proportions minus probabilities, not successes minus probabilities
    np.testing.assert_allclose(res.residuals(type="response"), cb["incidence"] / cb["size"] - res.fitted, rtol=1e-12)
    for t in TYPES:
        np.testing.assert_allclose(res.residuals(type=t), c["residuals"][t], atol=1e-6, err_msg=t)
    # lme4's default for a GLMM: deviance residuals; still an ordinary array
    np.testing.assert_allclose(res.residuals, c["residuals_default"], atol=1e-6)
    np.testing.assert_allclose(res.residuals, res.residuals(type="deviance"), rtol=0)
    assert type(res.residuals + 0.0) is np.ndarray and res.residuals.shape == (56,)


def test_poisson_weighted_residuals_match_lme4(poisson_fit):
    c = REF["poisson_offset"]
    for t in TYPES:
        np.testing.assert_allclose(poisson_fit.residuals(t), c["residuals"][t], atol=1e-6, err_msg=t)
    np.testing.assert_allclose(poisson_fit.residuals, c["residuals_default"], atol=1e-6)


def test_lmm_weighted_residuals_match_lme4(sleep_fit):
    d, res = sleep_fit
    c = REF["sleep_offsets"]
    for t in TYPES:  # pearson = deviance = sqrt(w) (y - mu), not divided by sigma
        np.testing.assert_allclose(res.residuals(type=t), c["residuals"][t], atol=1e-4, err_msg=t)
    np.testing.assert_allclose(res.residuals(type="pearson"), np.sqrt(d["w"]) * (d["Reaction"] - res.fitted),
                               rtol=1e-12)
    # lme4's default for an LMM: response residuals
    np.testing.assert_allclose(res.residuals, c["residuals_default"], atol=1e-4)
    np.testing.assert_allclose(res.residuals, d["Reaction"] - res.fitted, rtol=1e-12)


def test_residual_type_is_checked(sleep_fit):
    res = sleep_fit[1]
    with pytest.raises(JaxmixError, match="residual type must be one of.*'partial'"):
        res.residuals(type="partial")


# ---- 5. deviance ------------------------------------------------------------------------------------
def test_glmm_deviance_is_the_sum_of_squared_deviance_residuals(cbpp_fit, poisson_fit):
    for res, c in ((cbpp_fit, REF["cbpp_logit"]), (poisson_fit, REF["poisson_offset"])):
        assert res.deviance == pytest.approx(c["deviance"], abs=1e-5)
        assert abs(res.deviance - (-2 * res.loglik)) > 50  # not -2 log L
        # lme4's summary table still shows -2 log L in its "deviance" column
        assert f"{-2 * res.loglik:.1f}" in res.summary()


def test_lmm_deviance_as_lme4(sleep_fit):
    # a REML fit: lme4's deviance() is the REML criterion (lme4 warns that this is deprecated)
    res = sleep_fit[1]
    assert res.deviance == pytest.approx(REF["sleep_offsets"]["deviance"], abs=1e-6)
    assert res.deviance == pytest.approx(res.objective, rel=1e-15)


def test_deviance_without_random_effects_as_r():
    po = load_csv("offsets_poisson.csv")
    glm = _fit("y ~ x + offset(np.log(expo))", po, family="poisson", weights="w")
    y, w, mu = po["y"].to_numpy(float), po["w"].to_numpy(float), glm.fitted
    with np.errstate(divide="ignore", invalid="ignore"):
        dev_i = 2 * w * (np.where(y > 0, y * np.log(y / mu), 0.0) - (y - mu))
    assert glm.deviance == pytest.approx(dev_i.sum(), rel=1e-10)  # R's deviance(glm)
    np.testing.assert_allclose(glm.residuals, np.sign(y - mu) * np.sqrt(dev_i), rtol=1e-9, atol=1e-12)
    d = _sleep()
    ols = _fit("Reaction ~ Days", d, weights="w")
    X = np.column_stack([np.ones(len(d)), d["Days"]])
    sw = np.sqrt(d["w"].to_numpy())
    beta = np.linalg.lstsq(X * sw[:, None], d["Reaction"] * sw, rcond=None)[0]
    rss = float(np.sum(d["w"] * (d["Reaction"] - X @ beta) ** 2))
    assert ols.deviance == pytest.approx(rss, rel=1e-10)  # R's deviance(lm): the weighted RSS
