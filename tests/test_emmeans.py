"""res.emmeans / res.pairs against R's emmeans 1.8 (tests/data/export_contrasts.R -> contrasts_reference.json)."""
import json

import numpy as np
import pytest

import jaxmix
from conftest import DATA_DIR, load_csv

REF = json.load(open(DATA_DIR / "contrasts_reference.json"))["emmeans"]


@pytest.fixture(scope="module")
def data():
    return load_csv("Orthodont.csv")


@pytest.fixture(scope="module")
def m_int(data):
    return jaxmix.fit("distance ~ age * Sex + (1 | Subject)", data)


@pytest.fixture(scope="module")
def m_fac(data):
    return jaxmix.fit("distance ~ Sex + C(age) + (1 | Subject)", data)


def _check_means(tab, ref):
    np.testing.assert_allclose(tab["emmean"], ref["emmean"], rtol=1e-6)
    np.testing.assert_allclose(tab["se"], ref["se"], rtol=1e-4)
    np.testing.assert_allclose(tab["df"], ref["df"], rtol=1e-4)
    np.testing.assert_allclose(tab["ci_low"], ref["lower"], rtol=1e-5)
    np.testing.assert_allclose(tab["ci_high"], ref["upper"], rtol=1e-5)


@pytest.mark.parametrize("ddf,key", [("kenward-roger", "int_sex_kr"), (None, "int_sex_sat")])
def test_covariate_at_its_mean(m_int, ddf, key):
    tab = m_int.emmeans("Sex", ddf=ddf)
    assert list(tab["Sex"].astype(str)) == REF[key]["level"]
    _check_means(tab, REF[key])


def test_at_overrides_the_covariate(m_int):
    _check_means(m_int.emmeans("Sex", at={"age": 12}), REF["int_sex_at12"])


@pytest.mark.parametrize("ddf,key", [("kenward-roger", "fac_age_kr"), ("satterthwaite", "fac_age_sat")])
def test_other_factor_averaged_with_equal_weights(m_fac, ddf, key):
    tab = m_fac.emmeans("age", ddf=ddf)
    assert [str(v) for v in tab["age"]] == REF[key]["level"]
    _check_means(tab, REF[key])


def _check_pairs(tab, ref):
    ref = {k: np.atleast_1d(v) for k, v in ref.items()}
    np.testing.assert_allclose(tab["estimate"], ref["estimate"], rtol=1e-6)
    np.testing.assert_allclose(tab["se"], ref["se"], rtol=1e-4)
    np.testing.assert_allclose(tab["df"], ref["df"], rtol=1e-4)
    np.testing.assert_allclose(tab["statistic"], ref["t"], rtol=1e-4)
    p, rp = tab["p"].to_numpy(), np.asarray(ref["p"], float)
    big = rp > 1e-5  # R's ptukey is accurate to about 1e-8 absolute in the far tail
    np.testing.assert_allclose(p[big], rp[big], rtol=1e-3)
    np.testing.assert_allclose(p[~big], rp[~big], atol=1e-8)


def test_pairs_tukey_kenward_roger(m_fac):
    tab = m_fac.pairs("age", ddf="kenward-roger")
    assert tab.attrs["adjust"] == "tukey"
    assert list(tab.index) == ["8 - 10", "8 - 12", "8 - 14", "10 - 12", "10 - 14", "12 - 14"]
    _check_pairs(tab, REF["fac_age_pairs_tukey_kr"])


def test_pairs_unadjusted_satterthwaite(m_fac):
    _check_pairs(m_fac.emmeans("age", pairwise=True, adjust="none"), REF["fac_age_pairs_none_sat"])


def test_two_level_pairs_are_the_t_test(m_int):
    _check_pairs(m_int.pairs("Sex", ddf="kr"), REF["int_sex_pairs_kr"])


def test_reference_grid_and_errors(m_int, data):
    from jaxmix.inference.emmeans import reference_grid

    grid = reference_grid(m_int)
    assert len(grid) == 2 and grid["age"].iloc[0] == pytest.approx(REF["mean_age"])
    with pytest.raises(jaxmix.JaxmixError, match="'height'"):
        m_int.emmeans("height")
    with pytest.raises(jaxmix.JaxmixError, match="'Other'"):
        m_int.emmeans("Sex", at={"Sex": ["Other"]})
    with pytest.raises(jaxmix.JaxmixError, match="adjust"):
        m_int.pairs("Sex", adjust="bonferonni")
    # a covariate that enters only through a transformation needs the data (or at=)
    m_sq = jaxmix.fit("distance ~ I(age**2) + Sex + (1 | Subject)", data)
    with pytest.raises(jaxmix.JaxmixError, match="data="):
        m_sq.emmeans("Sex")
    tab = m_sq.emmeans("Sex", data=data)
    b = m_sq.fixef.to_numpy()
    expect = b[0] + b[1] * data["age"].mean() ** 2
    assert tab["emmean"].iloc[0] == pytest.approx(expect)


def test_glmm_means_on_the_link_scale_with_asymptotic_df():
    """cbpp: emmeans' numbers for a tightly fitted glmer (z intervals, df = Inf)."""
    res = jaxmix.fit("incidence ~ C(period) + (1 | herd)", load_csv("cbpp.csv"), family="binomial", trials="size")
    ref = REF["cbpp_period"]
    tab = res.emmeans("period")
    assert [str(v) for v in tab["period"]] == ref["level"]
    assert np.all(np.isinf(tab["df"]))
    np.testing.assert_allclose(tab["emmean"], ref["emmean"], atol=1e-5)
    np.testing.assert_allclose(tab["se"], ref["se"], rtol=1e-4)
    np.testing.assert_allclose(tab["ci_low"], ref["lower"], atol=1e-4)
    np.testing.assert_allclose(tab["ci_high"], ref["upper"], atol=1e-4)
    pr, rp = res.pairs("period"), REF["cbpp_pairs"]
    np.testing.assert_allclose(pr["estimate"], rp["estimate"], atol=1e-5)
    np.testing.assert_allclose(pr["se"], rp["se"], rtol=1e-4)
    np.testing.assert_allclose(pr["statistic"], rp["z"], rtol=1e-4)
    np.testing.assert_allclose(pr["p"], rp["p"], rtol=1e-3)  # Tukey with df = ∞
