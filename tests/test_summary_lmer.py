"""summary(): lmerTest's table (Satterthwaite df and p by default, selectable), the correlation of the
fixed effects and the scaled residual quantiles, against R (tests/data/export_contrasts.R ->
contrasts_reference.json); a fixed-only GLM prints no mixed-model label."""
import json

import numpy as np
import pytest

import jaxmix
from jaxmix.inference.summary import fixef_correlation, scaled_residual_quantiles
from conftest import DATA_DIR, load_csv

REF = json.load(open(DATA_DIR / "contrasts_reference.json"))["summary"]


@pytest.fixture(scope="module")
def sleep():
    return jaxmix.fit("Reaction ~ Days + (Days | Subject)", load_csv("sleepstudy.csv"))


def test_numbers_match_lmertest(sleep):
    np.testing.assert_allclose(scaled_residual_quantiles(sleep), REF["scaled_resid"], atol=2e-5)  # fit to ~1e-6
    assert fixef_correlation(sleep).iloc[1, 0] == pytest.approx(REF["corr"], abs=1e-5)
    ct = sleep.coef_table()
    np.testing.assert_allclose(ct["df"], REF["df"], rtol=1e-4)
    np.testing.assert_allclose(ct["p"], REF["p"], rtol=1e-3)


def test_text_shows_the_lmertest_table(sleep):
    s = sleep.summary()
    assert "t-tests use Satterthwaite's method" in s
    assert "Scaled residuals:" in s
    q = REF["scaled_resid"]
    for v in q:  # lme4 prints the quantiles to 4 decimals: -3.9536 -0.4634 0.0231 0.4634 5.1793
        assert f"{v:.4f}" in s
    line = next(ln for ln in s.splitlines() if ln.startswith("Days "))
    est, se, df, t, p = (float(x) for x in line.split()[1:])
    assert est == pytest.approx(REF["estimate"][1], abs=1e-4)
    assert se == pytest.approx(REF["se"][1], abs=1e-4)
    assert df == pytest.approx(REF["df"][1], abs=1e-3)
    assert t == pytest.approx(REF["t"][1], abs=2e-4)
    assert p == pytest.approx(REF["p"][1], rel=1e-3)
    assert "Correlation of Fixed Effects:" in s
    assert f"{REF['corr']:.3f}" in s  # -0.138


def test_ddf_is_selectable(sleep):
    s = sleep.summary(ddf="kenward-roger")
    assert "Kenward-Roger's method" in s
    line = next(ln for ln in s.splitlines() if ln.startswith("Days "))
    assert float(line.split()[3]) == pytest.approx(REF["df_kr"][1], abs=1e-3)
    with pytest.raises(jaxmix.JaxmixError, match="unknown ddf"):
        sleep.summary(ddf="magic")


def test_fixed_only_glm_has_no_mixed_model_label():
    import statsmodels.api as sm

    d = load_csv("cbpp.csv")
    res = jaxmix.fit("incidence ~ C(period)", d, family="binomial", trials="size")
    s = res.summary()
    assert "mixed" not in s.lower() and "quadrature" not in s and "Laplace" not in s
    assert s.startswith("Generalized linear model")
    X = np.column_stack([np.ones(len(d))] + [(d["period"] == k).to_numpy(float) for k in (2, 3, 4)])
    glm = sm.GLM(np.column_stack([d["incidence"], d["size"] - d["incidence"]]), X,
                 family=sm.families.Binomial()).fit()
    assert f"Residual deviance: {glm.deviance:.4f} on {glm.df_resid:.0f} degrees of freedom" in s
    assert "Scaled residuals" not in s and "Correlation of Fixed Effects" not in s
