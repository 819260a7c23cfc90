"""res.contrast: lmerTest's contest1D (tests/data/export_contrasts.R -> contrasts_reference.json)."""
import json

import numpy as np
import pytest

import jaxmix
from conftest import DATA_DIR, load_csv

REF = json.load(open(DATA_DIR / "contrasts_reference.json"))["contest"]


@pytest.fixture(scope="module")
def sleep():
    return jaxmix.fit("Reaction ~ Days + (Days | Subject)", load_csv("sleepstudy.csv"))


@pytest.fixture(scope="module")
def orth():
    return jaxmix.fit("distance ~ age + Sex + (1 | Subject)", load_csv("Orthodont.csv"))


def _check(tab, ref, rtol=1e-4):
    np.testing.assert_allclose(tab["estimate"], ref["estimate"], rtol=1e-6)
    np.testing.assert_allclose(tab["se"], ref["se"], rtol=rtol)
    np.testing.assert_allclose(tab["df"], ref["df"], rtol=rtol)
    np.testing.assert_allclose(tab["statistic"], ref["t"], rtol=rtol)
    np.testing.assert_allclose(tab["ci_low"], ref["lower"], rtol=rtol)
    np.testing.assert_allclose(tab["ci_high"], ref["upper"], rtol=rtol)
    np.testing.assert_allclose(tab["p"], ref["p"], rtol=1e-2)


@pytest.mark.parametrize("ddf,key", [(None, "satterthwaite"), ("kenward-roger", "kenward_roger")])
def test_matrix_rows_match_contest1d(sleep, ddf, key):
    tab = sleep.contrast(np.array(REF["sleepstudy"]["L"], float), ddf=ddf)
    assert list(tab.columns) == ["estimate", "se", "df", "statistic", "p", "ci_low", "ci_high"]
    assert tab.attrs["ddf"] == key.replace("_", "-")
    _check(tab, REF["sleepstudy"][key])


def test_strings_dicts_and_lists_give_the_same_rows(sleep):
    tab = sleep.contrast(["Days", "(Intercept) + 5*Days", {"Intercept": 1, "Days": -1}])
    _check(tab, REF["sleepstudy"]["satterthwaite"])
    assert list(tab.index[:2]) == ["Days", "(Intercept) + 5*Days"]


def test_term_names_and_differences(orth):
    # "Sex" is a factor term: one row per coefficient of the term (here SexMale)
    tab = orth.contrast("age, Sex, age - Sex[T.Male]")
    _check(tab, REF["orthodont"]["satterthwaite"])
    assert list(tab.index[:2]) == ["age", "Sex[T.Male]"]


def test_rhs_shifts_the_statistic_not_the_estimate(sleep):
    base = sleep.contrast("Days")
    shifted = sleep.contrast("Days", rhs=10.0)
    assert shifted["estimate"].iloc[0] == pytest.approx(base["estimate"].iloc[0])
    expect = (base["estimate"].iloc[0] - 10.0) / base["se"].iloc[0]
    assert shifted["statistic"].iloc[0] == pytest.approx(expect)
    eq = sleep.contrast("Days = 10")
    assert eq["statistic"].iloc[0] == pytest.approx(expect)


def test_bad_hypotheses_name_the_fault(sleep):
    with pytest.raises(jaxmix.JaxmixError, match="Dayz"):
        sleep.contrast("Dayz")
    with pytest.raises(jaxmix.JaxmixError, match="'Nope'"):
        sleep.contrast({"Nope": 1})
    with pytest.raises(jaxmix.JaxmixError, match="3 columns"):
        sleep.contrast([0, 1, 0])
    with pytest.raises(jaxmix.JaxmixError, match="ddf"):
        sleep.contrast("Days", ddf="magic")


def test_glmm_term_name_and_z_tests():
    """A GLMM: z tests (df = inf); ``"period"`` names the factor term C(period): one row per coefficient,
    the same numbers as the coefficient table (lme4's summary)."""
    res = jaxmix.fit("incidence ~ C(period) + (1 | herd)", load_csv("cbpp.csv"), family="binomial", trials="size")
    tab = res.contrast("period")
    ct = res.coef_table()
    assert list(tab.index) == list(ct.index[1:])
    assert np.all(np.isinf(tab["df"]))
    np.testing.assert_allclose(tab[["estimate", "se", "statistic", "p", "ci_low", "ci_high"]].to_numpy(),
                               ct.iloc[1:][["estimate", "se", "statistic", "p", "ci_low", "ci_high"]].to_numpy())
    from scipy import stats

    row = res.contrast({"C(period)[T.2]": 1, "C(period)[T.3]": -1})
    V = res.vcov.to_numpy()
    se = np.sqrt(V[1, 1] + V[2, 2] - 2 * V[1, 2])
    est = res.beta[1] - res.beta[2]
    assert row["se"].iloc[0] == pytest.approx(se) and row["p"].iloc[0] == pytest.approx(2 * stats.norm.sf(abs(est / se)))
