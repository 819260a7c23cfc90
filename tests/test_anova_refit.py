"""jaxmix.anova(m0, m1) refits REML fits by ML by default, as lme4's anova (refit = TRUE), and compares
REML criteria with refit=False (tests/data/export_contrasts.R -> contrasts_reference.json)."""
import json

import numpy as np
import pytest

import jaxmix
from conftest import DATA_DIR, load_csv

REF = json.load(open(DATA_DIR / "contrasts_reference.json"))["anova"]


@pytest.fixture(scope="module")
def fits():
    d = load_csv("sleepstudy.csv")
    return (jaxmix.fit("Reaction ~ Days + (1 | Subject)", d), jaxmix.fit("Reaction ~ Days + (Days | Subject)", d),
            jaxmix.fit("Reaction ~ 1 + (1 | Subject)", d))


def _check(tab, ref):
    np.testing.assert_array_equal(tab["npar"], ref["npar"])
    np.testing.assert_allclose(tab["logLik"], ref["logLik"], rtol=1e-7)
    np.testing.assert_allclose(tab["deviance"], ref["deviance"], rtol=1e-7)
    assert tab["Chisq"].iloc[1] == pytest.approx(ref["Chisq"][1], rel=1e-5)
    assert tab["Df"].iloc[1] == ref["Df"][1]
    assert tab["p"].iloc[1] == pytest.approx(ref["p"][1], rel=1e-4)


def test_default_refits_by_ml_like_lme4(fits):
    m0, m1, _ = fits
    assert m0.method == m1.method == "REML"
    tab = jaxmix.anova(m0, m1)
    _check(tab, REF["refit"])
    assert list(tab["criterion"]) == ["ML (refitted)"] * 2
    assert "refitted with ML" in tab.attrs["note"]


def test_refit_false_compares_reml_criteria(fits):
    m0, m1, _ = fits
    tab = jaxmix.anova(m0, m1, refit=False)
    _check(tab, REF["norefit"])
    assert list(tab["criterion"]) == ["REML", "REML"]


def test_different_fixed_parts(fits):
    m0, _, null = fits
    _check(jaxmix.anova(null, m0), REF["fixed_refit"])
    with pytest.raises(jaxmix.JaxmixError, match="not comparable"):
        jaxmix.anova(null, m0, refit=False)
