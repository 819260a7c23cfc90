"""Inference against lmerTest / pbkrtest / lme4 / glmmTMB numbers: df methods, t, F and Wald tests,
Type III tables, covariance-parameter SEs, profile and Wald intervals, ICC and R².

Goldens: tests/data/lme4_reference.json (export_refs.R), covparm_se_reference.json
(export_covparm_se.R) and inference_reference.json (export_inference.R, run from tests/data).
The reference-case fits are shared with the other test files through ``conftest.reference_fit``.
"""
from __future__ import annotations

import dataclasses
import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import jaxmix
from conftest import DATA_DIR, GAUSSIAN_CASES, REFERENCE, fast_jit, load_csv, rel_close, reference_fit
from jaxmix.inference import wald as inference
INF_REF = json.loads((DATA_DIR / "inference_reference.json").read_text())
COVPARM_REF = json.loads((DATA_DIR / "covparm_se_reference.json").read_text())["cases"]
CASES = [pytest.param(c, m, id=f"{c}-{m}") for c in GAUSSIAN_CASES for m in ("REML", "ML")]


def _vals(x) -> np.ndarray:
    return np.asarray(list(x.values()) if isinstance(x, dict) else x, dtype=float)


def _fit(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=jaxmix.JaxmixWarning)
        return jaxmix.fit(formula, data, **kw)


def _with_groups(df: pd.DataFrame) -> pd.DataFrame:
    """sleepstudy plus export_inference.R's between-subject factor grp (A, B, C, A, ... by sorted Subject)."""
    df = df.copy()
    subjects = sorted(df["Subject"].unique())
    df["grp"] = df["Subject"].map({s: "ABC"[i % 3] for i, s in enumerate(subjects)})
    return df


@pytest.fixture(scope="module")
def sleep_unbalanced():
    df = _with_groups(load_csv("sleepstudy.csv"))
    df = df[np.arange(len(df)) % 7 != 0].copy()
    df["late"] = np.where(df["Days"] >= 5, "yes", "no")
    return _fit("Reaction ~ late * grp + (1 | Subject)", df)


@pytest.fixture(scope="module")
def seed_design():
    """The seed's design: 20 players x 20 games, a day/night indicator, (1 | player)."""
    rng = np.random.default_rng(20240501)
    players = np.repeat([f"p{i:02d}" for i in range(20)], 20)
    game = np.tile(np.arange(20), 20)
    night = (game % 2).astype(float)
    u = rng.normal(0.0, 2.0, 20)[np.repeat(np.arange(20), 20)]
    df = pd.DataFrame({"player": players, "game": game, "night": night,
                       "score": 10 + 1.5 * night + u + rng.normal(0.0, 3.0, 400)})
    return _fit("score ~ night + (1 | player)", df)


@pytest.fixture(scope="module")
def cbpp_glmm():
    return _fit("incidence ~ period + (1 | herd)", load_csv("cbpp.csv"), family="binomial", trials="size")


# ---- Satterthwaite and Kenward-Roger against lmerTest / pbkrtest ---------------------------------
@pytest.mark.parametrize("case_id,method", CASES)
def test_satterthwaite_matches_lmertest(case_id, method):
    res = reference_fit(case_id, method)
    ref = REFERENCE[case_id]["fits"][method]
    ct = res.coef_table()
    assert ct.attrs["ddf"] == "satterthwaite"
    assert list(ct.columns) == ["estimate", "se", "df", "statistic", "p", "ci_low", "ci_high"]
    df_ref = _vals(ref["df_satterthwaite"])
    rel_close(ct["df"], df_ref, rtol=1e-3)
    t_ref = _vals(ref["fixef"]) / _vals(ref["se"])
    rel_close(ct["statistic"], t_ref, rtol=1e-3)
    rel_close(ct["p"], 2 * stats.t.sf(np.abs(t_ref), df_ref), rtol=1e-2)
    crit = stats.t.ppf(0.975, ct["df"])
    np.testing.assert_allclose(ct["ci_high"] - ct["estimate"], crit * ct["se"], rtol=1e-12)


@pytest.mark.parametrize("case_id", GAUSSIAN_CASES)
def test_kenward_roger_matches_pbkrtest(case_id):
    res = reference_fit(case_id, "REML")
    ct = res.coef_table(ddf="kenward-roger")
    rel_close(ct["df"], _vals(REFERENCE[case_id]["fits"]["REML"]["df_kenward_roger"]), rtol=1e-2)
    np.testing.assert_allclose(ct["statistic"], ct["estimate"] / ct["se"])


def test_kenward_roger_t_and_p():
    res = reference_fit("machines_nested", "REML")
    ref = INF_REF["type3"]["machines"]["coef_kenward_roger"]
    ct = res.coef_table(ddf="KR")
    rel_close(ct["se"], ref["se"], rtol=1e-3)  # adjusted covariance Φ_A, as lmerTest prints
    rel_close(ct["df"], ref["df"], rtol=1e-2)
    rel_close(ct["statistic"], ref["t"], rtol=1e-3)
    rel_close(ct["p"], ref["p"], rtol=1e-2)


def test_satterthwaite_coefficients_unbalanced(sleep_unbalanced):
    ref = INF_REF["type3"]["sleepstudy_late_grp_unbalanced"]["coef_satterthwaite"]
    ct = sleep_unbalanced.coef_table()
    rel_close(ct["df"], ref["df"], rtol=1e-3)
    rel_close(ct["statistic"], ref["t"], rtol=1e-3)
    rel_close(ct["p"], ref["p"], rtol=1e-3)


def test_satterthwaite_is_autodiff_of_lmertest_recipe():
    # ν = 2 (l'Φl)² / (g'Ag) with A = 2 H⁻¹, H the Hessian of the deviance in (θ, σ): check H and g
    # against central differences of the same functions
    res = reference_fit("sleepstudy_intercept", "REML")
    H, A, J = inference.satterthwaite_parts(res)
    m = inference.lmm_state(res)
    vp = np.append(res.theta, res.sigma)

    dev_prog = fast_jit(inference.varpar_deviance, static_argnums=(5, 6, 7))

    def dev(v):
        return float(dev_prog(jnp.asarray(v), m.xp, m.idx, m.n, m.ldW, m.layout, m.tl, m.p, 1.0))

    h = 1e-4 * np.abs(vp)
    Hfd = np.empty_like(H)
    for i in range(2):
        for j in range(2):
            ei, ej = np.eye(2)[i] * h[i], np.eye(2)[j] * h[j]
            Hfd[i, j] = (dev(vp + ei + ej) - dev(vp + ei - ej) - dev(vp - ei + ej) + dev(vp - ei - ej)) / (4 * h[i] * h[j])
    np.testing.assert_allclose(H, Hfd, rtol=1e-4)
    np.testing.assert_allclose(A, 2 * np.linalg.inv(H), rtol=1e-10)
    assert J.shape == (2, 2, 2)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_satterthwaite_columns_equal_the_whole_hessian_and_jacobian(method):
    """H and J = ∂Φ/∂ϑ taken column by column (forward mode over the gradient, one small program) equal
    ``jax.hessian`` of the deviance and ``jax.jacfwd`` of Φ(ϑ) = σ²(L_X L_X′)⁻¹ (a vector term: four
    parameters, an off-diagonal θ)."""
    res = reference_fit("sleepstudy_slope", method)
    m = inference.lmm_state(res)
    vp = np.append(res.theta, res.sigma)
    H, J = inference.satt_hessian(m, vp)
    args = (m.xp, m.idx, m.n, m.ldW, m.layout, m.tl, m.p)
    H_ref = fast_jit(jax.hessian(inference.varpar_deviance), static_argnums=(5, 6, 7))(
        jnp.asarray(vp), *args, float(m.reml))
    J_ref = fast_jit(jax.jacfwd(inference.covbeta), static_argnums=(3, 4, 5))(
        jnp.asarray(vp), m.xp, m.idx, m.layout, m.tl, m.p)
    assert H.shape == (4, 4) and J.shape == (2, 2, 4)
    np.testing.assert_allclose(H, np.asarray(H_ref), rtol=1e-10, atol=1e-10 * np.abs(H).max())
    np.testing.assert_allclose(J, np.asarray(J_ref), rtol=1e-10, atol=1e-12 * np.abs(J).max())
    assert np.abs(J).max() > 0 and np.abs(H - H.T).max() <= 1e-8 * np.abs(H).max()


# ---- design-based df --------------------------------------------------------------------------------
def test_containment_and_between_within_seed_design(seed_design):
    # SAS: intercept 19 (players - 1), the day/night effect 379 (400 - 21)
    for ddf in ("containment", "between-within"):
        ct = seed_design.coef_table(ddf=ddf)
        np.testing.assert_array_equal(ct["df"].to_numpy(), [19.0, 379.0])
        assert ct.attrs["ddf"] == ddf
    np.testing.assert_array_equal(seed_design.coef_table(ddf="residual")["df"].to_numpy(), [398.0, 398.0])
    z = seed_design.coef_table(ddf="asymptotic")
    assert np.all(np.isinf(z["df"]))
    np.testing.assert_allclose(z["p"], 2 * stats.norm.sf(np.abs(z["statistic"])))


def test_containment_nested_and_slopes():
    # Machines (1 | Worker/Machine): Worker contributes 5, Machine:Worker 10 -> intercept 5, Machine 10
    ct = reference_fit("machines_nested", "REML").coef_table(ddf="containment")
    np.testing.assert_array_equal(ct["df"].to_numpy(), [5.0, 10.0, 10.0])
    # (Days | Subject): Subject and Days:Subject both contribute 17
    ct = reference_fit("sleepstudy_slope", "REML").coef_table(ddf="containment")
    np.testing.assert_array_equal(ct["df"].to_numpy(), [17.0, 17.0])
    ct = reference_fit("sleepstudy_slope", "REML").coef_table(ddf="between-within")
    np.testing.assert_array_equal(ct["df"].to_numpy(), [17.0, 161.0])


# ---- Wald / F tests and Type III -------------------------------------------------------------------
def test_wald_test_string_equals_matrix_and_t():
    res = reference_fit("sleepstudy_slope", "REML")
    ct = res.coef_table()
    wt = res.wald_test("Days = 10")
    assert wt.num_df == 1
    t = (res.fixef["Days"] - 10) / res.se["Days"]
    np.testing.assert_allclose(wt.statistic, t**2, rtol=1e-10)
    np.testing.assert_allclose(wt.den_df, ct.loc["Days", "df"], rtol=1e-10)
    np.testing.assert_allclose(wt.p, 2 * stats.t.sf(abs(t), ct.loc["Days", "df"]), rtol=1e-10)
    wm = res.wald_test([[0, 1]], rhs=10)
    np.testing.assert_allclose([wm.statistic, wm.den_df, wm.p], [wt.statistic, wt.den_df, wt.p], rtol=1e-12)
    chi = res.wald_test("Days = 10", ddf="asymptotic")
    assert np.isinf(chi.den_df)
    np.testing.assert_allclose(chi.statistic, t**2, rtol=1e-10)
    np.testing.assert_allclose(chi.p, stats.chi2.sf(t**2, 1), rtol=1e-10)


@pytest.mark.parametrize("ddf", ["satterthwaite", "kenward-roger"])
def test_joint_contrast_machines(ddf):
    res = reference_fit("machines_nested", "REML")
    ref = INF_REF["type3"]["machines"][f"contrast_{ddf.replace('-', '_')}"]
    wt = res.wald_test(np.asarray(INF_REF["type3"]["machines"]["contrast_L"]), ddf=ddf)
    ws = res.wald_test("Machine[T.B] = 0, Machine[T.B] - Machine[T.C] = 0", ddf=ddf)
    rel_close([wt.statistic, wt.den_df, wt.p], [ref["F"], ref["DenDF"], ref["p"]], rtol=1e-3)
    assert wt.num_df == ref["NumDF"] == 2
    np.testing.assert_allclose([ws.statistic, ws.den_df], [wt.statistic, wt.den_df], rtol=1e-10)


@pytest.mark.parametrize("ddf", ["satterthwaite", "kenward-roger"])
@pytest.mark.parametrize("key", ["sleepstudy_late_grp_unbalanced", "machines"])
def test_type3_anova_matches_lmertest(key, ddf, sleep_unbalanced):
    # (export_inference.R also pins a balanced Days * grp model, not run here to save a fit)
    res = sleep_unbalanced if key == "sleepstudy_late_grp_unbalanced" else reference_fit("machines_nested", "REML")
    ref = INF_REF["type3"][key][ddf.replace("-", "_")]
    tab = res.anova(ddf=ddf)
    assert list(tab.columns) == ["sum_sq", "mean_sq", "num_df", "den_df", "F", "p"]
    assert len(tab) == len(np.atleast_1d(ref["terms"]))  # multi-column factors in one row
    np.testing.assert_array_equal(tab["num_df"], np.atleast_1d(ref["NumDF"]))
    rel_close(tab["F"], np.atleast_1d(ref["F"]), rtol=1e-3)
    rel_close(tab["den_df"], np.atleast_1d(ref["DenDF"]), rtol=1e-3)
    rel_close(tab["p"], np.atleast_1d(ref["p"]), rtol=1e-2)  # p ~ 1e-5 to 1e-18 magnifies the fits' 1e-4
    rel_close(tab["sum_sq"], np.atleast_1d(ref["SumSq"]), rtol=1e-3)


def test_type3_contrast_differs_from_coefficient_test(sleep_unbalanced):
    # with an interaction and unbalanced data the Type III test of grp is not "grp coefficients = 0"
    naive = sleep_unbalanced.wald_test("grp[T.B] = 0, grp[T.C] = 0")
    t3 = sleep_unbalanced.anova().loc["grp"]
    assert abs(naive.statistic - t3["F"]) > 0.1


# ---- covariance parameters ----------------------------------------------------------------------------
@pytest.mark.parametrize("key", sorted(COVPARM_REF))
def test_covparm_se_matches_glmmtmb(key):
    ref = COVPARM_REF[key]
    tab = reference_fit(ref["id"], ref["method"]).covparm_table()
    assert list(tab.columns) == ["group", "var1", "var2", "estimate", "se", "z", "p"]
    assert list(tab["group"]) == [r["group"] for r in ref["rows"]]
    rel_close(tab["estimate"], [r["vcov"] for r in ref["rows"]], rtol=1e-3)
    rel_close(tab["se"], [r["se_vcov"] for r in ref["rows"]], rtol=1e-3)
    np.testing.assert_allclose(tab["z"], tab["estimate"] / tab["se"])
    np.testing.assert_allclose(tab["p"], stats.norm.sf(tab["z"]))  # variances: one-sided


def test_covparm_vector_term_equals_direct_hessian():
    # the delta method at the optimum equals inverting the Hessian of the criterion written directly in
    # φ = (σ₀², σ₀₁, σ₁², σ²)
    res = reference_fit("sleepstudy_slope", "REML")
    tab = res.covparm_table()
    assert list(tab["var2"].isna()) == [True, True, False, True]
    m = inference.lmm_state(res)

    def crit(phi):
        s2 = phi[3]
        om = jnp.array([[phi[0], phi[1]], [phi[1], phi[2]]]) / s2
        lam = jnp.linalg.cholesky(om)
        theta = jnp.array([lam[0, 0], lam[1, 0], lam[1, 1]])
        vp = jnp.append(theta, jnp.sqrt(s2))
        return inference.varpar_deviance(vp, m.xp, m.idx, m.n, m.ldW, m.layout, m.tl, m.p, 1.0)

    phi = tab["estimate"].to_numpy()[[0, 2, 1, 3]]
    V = 2 * np.linalg.inv(np.asarray(jax.jit(jax.hessian(crit))(jnp.asarray(phi))))
    V = V[np.ix_([0, 2, 1, 3], [0, 2, 1, 3])]
    np.testing.assert_allclose(res.vcov_covparms.to_numpy(), V, rtol=1e-6)
    np.testing.assert_allclose(tab["se"], np.sqrt(np.diag(V)), rtol=1e-6)
    assert tab["p"].iloc[2] == pytest.approx(2 * stats.norm.sf(abs(tab["z"].iloc[2])))  # covariance: two-sided
    assert list(res.vcov_covparms.index) == ["Subject: Intercept", "Subject: Days", "Subject: Intercept, Days", "Residual"]


def test_covparm_singular_has_no_se():
    tab = reference_fit("dyestuff2_singular", "REML").covparm_table()
    assert tab["estimate"].iloc[0] == 0.0
    assert np.isnan(tab["se"].iloc[0]) and np.isfinite(tab["se"].iloc[1])


def test_glmm_asymptotic_and_covparm(cbpp_glmm):
    ct = cbpp_glmm.coef_table()
    assert ct.attrs["ddf"] == "asymptotic" and np.all(np.isinf(ct["df"]))
    np.testing.assert_allclose(ct["p"], 2 * stats.norm.sf(np.abs(ct["statistic"])))
    ref = INF_REF["glmm_covparm"]["cbpp_numeric_period"]  # glmmTMB
    tab = cbpp_glmm.covparm_table()
    assert list(tab["group"]) == ["herd"]
    rel_close(tab["estimate"], [ref["vcov"]], rtol=1e-3)
    rel_close(tab["se"], [ref["se_vcov"]], rtol=1e-3)
    wt = cbpp_glmm.wald_test("period = 0")
    np.testing.assert_allclose(wt.statistic, ct.loc["period", "statistic"] ** 2, rtol=1e-10)
    assert list(cbpp_glmm.anova().columns) == ["chi2", "df", "p"]
    icc = cbpp_glmm.icc()
    np.testing.assert_allclose(icc["icc"].iloc[0], tab["estimate"].iloc[0] / (tab["estimate"].iloc[0] + np.pi**2 / 3))


# ---- intervals ----------------------------------------------------------------------------------------
PROFILES = [("sleepstudy_slope", "sleepstudy_slope", 0.95), ("sleepstudy_intercept", "sleepstudy_intercept", 0.95),
            ("sleepstudy_intercept_90", "sleepstudy_intercept", 0.90), ("dyestuff", "dyestuff", 0.95),
            ("dyestuff2_singular", "dyestuff2_singular", 0.95)]


@pytest.mark.parametrize("key,case_id,level", PROFILES, ids=[p[0] for p in PROFILES])
def test_profile_intervals_match_lme4(key, case_id, level):
    # lme4 reads the crossings off interpolating splines: agreement to ~2e-4 relative
    ref = INF_REF["profile"][key]
    ci = reference_fit(case_id, "REML").confint(level=level)
    names = [n if not n.startswith("(") else "Intercept" for n in ref["names"]]
    assert list(ci.index) == names
    rel_close(ci.iloc[:, 0], ref["lower"], rtol=5e-4, atol_zero=1e-8)
    rel_close(ci.iloc[:, 1], ref["upper"], rtol=5e-4)


def test_wald_intervals_and_parm():
    res = reference_fit("sleepstudy_slope", "REML")
    ci = res.confint(method="wald")
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(ci.loc["Days"], res.fixef["Days"] + np.array([-z, z]) * res.se["Days"])
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    assert ci.loc[".sig01"].iloc[0] < res.varcorr["sdcor"].iloc[0] < ci.loc[".sig01"].iloc[1]
    assert -1 <= ci.loc[".sig02"].iloc[0] < ci.loc[".sig02"].iloc[1] <= 1
    assert list(res.confint(method="wald", parm="beta_").index) == ["Intercept", "Days"]
    with pytest.raises(jaxmix.JaxmixError, match="unknown parameter"):
        res.confint(method="wald", parm=["nope"])
    with pytest.raises(jaxmix.JaxmixError, match="method"):
        res.confint(method="bayes")


@pytest.mark.slow
def test_bootstrap_intervals():
    res = reference_fit("dyestuff", "REML")
    ci = res.confint(method="boot", nsim=40, seed=1)
    assert list(ci.index) == [".sig01", ".sigma", "Intercept"]
    assert np.all(ci.iloc[:, 0] <= ci.iloc[:, 1])


# ---- ICC and R² ---------------------------------------------------------------------------------------
def test_icc_and_r2_random_intercept():
    res = reference_fit("sleepstudy_intercept", "REML")
    s2b, s2 = res.varcorr["vcov"].iloc[0], res.sigma**2
    icc = res.icc()
    np.testing.assert_allclose(icc.loc["Subject", "icc"], s2b / (s2b + s2))
    sf = np.var(res.design.X @ res.beta, ddof=1)
    r2 = res.r2()
    np.testing.assert_allclose(r2["marginal"], sf / (sf + s2b + s2))
    np.testing.assert_allclose(r2["conditional"], (sf + s2b) / (sf + s2b + s2))
    np.testing.assert_allclose(icc.loc["Subject", "icc_conditional"], s2b / (sf + s2b + s2))


def test_icc_groups_uncorrelated_terms():
    res = reference_fit("sleepstudy_uncorr", "REML")
    icc = res.icc()
    assert list(icc.index) == ["Subject"]  # (1 | Subject) and (0 + Days | Subject) together
    v = res.varcorr["vcov"].to_numpy()
    days = res.design.X[:, 1]
    np.testing.assert_allclose(icc["variance"].iloc[0], v[0] + v[1] * np.mean(days**2))


# ---- bad input -------------------------------------------------------------------------------------------
def test_errors(cbpp_glmm, monkeypatch):
    res = reference_fit("sleepstudy_slope", "REML")
    with pytest.raises(jaxmix.JaxmixError, match="unknown term 'Dayz'"):
        res.wald_test("Dayz = 0")
    with pytest.raises(jaxmix.JaxmixError, match="3 columns but the model has 2"):
        res.wald_test(np.ones((1, 3)))
    with pytest.raises(jaxmix.JaxmixError, match="unknown ddf"):
        res.coef_table(ddf="magic")
    with pytest.raises(jaxmix.JaxmixError, match="binomial GLMM"):
        cbpp_glmm.coef_table(ddf="kenward-roger")
    with pytest.raises(jaxmix.JaxmixError, match="REML"):
        reference_fit("sleepstudy_slope", "ML").coef_table(ddf="kenward-roger")
    with pytest.raises(jaxmix.JaxmixError, match="level"):
        res.coef_table(level=95)
    monkeypatch.setattr(inference, "KR_MAX_ROWS", 100)
    monkeypatch.setattr(inference, "KR_MAX_RE_COLUMNS", 10)  # sleepstudy_intercept: 18 columns
    fresh = dataclasses.replace(reference_fit("sleepstudy_intercept", "REML"), extra={})
    with pytest.raises(jaxmix.JaxmixError, match=r"limited to 10 random-effect columns \(or 100 rows\)"):
        fresh.coef_table(ddf="kenward-roger")


def _coverage(reps: int = 60):
    """Share of ``reps`` simulated fits whose 95% intervals cover the truth: β₀, β₁ (Satterthwaite t) and
    σ_b², σ² (Wald, covparm_table SEs); truth β = (1, 0.5), σ_b² = 1, σ² = 4, 20 groups x 10 rows."""
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(20), 10)
    hits = np.zeros(4)
    z = stats.norm.ppf(0.975)
    for _ in range(reps):
        x = rng.normal(size=g.size)
        y = 1.0 + 0.5 * x + rng.normal(0, 1.0, 20)[g] + rng.normal(0, 2.0, g.size)
        res = _fit("y ~ x + (1 | g)", pd.DataFrame({"y": y, "x": x, "g": g}))
        ct = res.coef_table()
        hits[:2] += (ct["ci_low"] <= [1.0, 0.5]).to_numpy() & (ct["ci_high"] >= [1.0, 0.5]).to_numpy()
        cp = res.covparm_table()
        hits[2:] += np.abs(cp["estimate"].to_numpy() - [1.0, 4.0]) <= z * cp["se"].to_numpy()
    return hits / reps


@pytest.mark.slow
def test_monte_carlo_coverage_fixed_effects_and_residual():
    cover = _coverage()
    assert np.all(cover[[0, 1, 3]] >= 0.83), cover


@pytest.mark.slow
def test_monte_carlo_coverage_group_variance():
    assert _coverage()[2] >= 0.83
