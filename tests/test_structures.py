"""Structured covariances (issue 14): glmmTMB's random-term structures and nlme's residual structures.

Pinned to R: ``data/structured_reference.json`` (nlme 3.1-162 / glmmTMB 1.1.5, made by
``data/export_structured.R``) and ``data/structured_extra.json`` (``data/export_structured_extra.R``).
The pieces of Σ⁻¹ and log|Σ| are checked against dense numpy matrices built independently here, and
a fit without an R counterpart against its dense REML log-likelihood.
"""
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import jaxmix
from jaxmix.spec.formula import parse_formula
from jaxmix.spec.re_structure import struct_layout, theta_from_psi, rho_cs
from jaxmix.spec.residual import coefficients, log_det_sigma, parse_correlation, parse_variance, residual_pieces

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "structured_reference.json").read_text())
EXTRA = json.loads((DATA / "structured_extra.json").read_text())


def _orthodont():
    d = pd.read_csv(DATA / "Orthodont.csv")
    d["Sex"] = pd.Categorical(d["Sex"], ["Male", "Female"])  # R's level order: coefficients compare by position
    return d


def _check(res, case, tol_ll=1e-4, rtol=1e-4):
    assert res.converged
    assert abs(res.loglik - case["loglik"]) < tol_ll
    fe = case["fixef"] if isinstance(case["fixef"], list) else list(case["fixef"].values())
    se = case["se"] if isinstance(case["se"], list) else list(case["se"].values())
    np.testing.assert_allclose(res.fixef.to_numpy(), fe, rtol=rtol, atol=1e-8)
    np.testing.assert_allclose(res.se.to_numpy(), se, rtol=rtol)
    np.testing.assert_allclose(res.sigma, case["sigma"], rtol=rtol)


def case_t(case):
    fe = np.array(list(case["fixef"].values()))
    return fe / np.array(list(case["se"].values()))


def _table(res):
    t = res.covparm_table()
    return {(g, v): e for g, v, e in zip(t["group"], t["var1"].fillna(""), t["estimate"])}


# ---- nlme and glmmTMB reference fits -----------------------------------------------------------------
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_varident_lme_orthodont(method):
    case = REF[f"orthodont_varident_{method}"]
    res = jaxmix.fit("distance ~ age + Sex + (1 | Subject)", _orthodont(), method=method, variance="ident(Sex)")
    _check(res, case)
    sds = res.extra["structure"]["sd_by_stratum"]
    assert list(sds) == ["Female", "Male"]  # ratios to the first level, as nlme's allCoef
    np.testing.assert_allclose(sds["Male"] / sds["Female"], case["params"]["var_ratios"]["Male"], rtol=1e-4)
    np.testing.assert_allclose(np.sqrt(res.varcorr["vcov"][0]), case["params"]["re_sd"]["(Intercept)"], rtol=1e-4)
    tab = _table(res)
    np.testing.assert_allclose(tab[("Residual", "SD ratio Male/Female")], case["params"]["var_ratios"]["Male"],
                               rtol=1e-4)


def test_gls_compound_symmetry_orthodont():
    case = REF["orthodont_gls_cs"]
    res = jaxmix.fit("distance ~ age + Sex", _orthodont(), correlation="cs(Subject)")
    assert not res.is_mixed and res.method == "REML"
    _check(res, case)
    np.testing.assert_allclose(res.extra["structure"]["rho"], case["params"]["cor"]["Rho"], rtol=1e-4)
    assert res.n_params == 3 + 1 + 1
    ct = res.coef_table()  # gls's t tests: n − p df (nlme's)
    assert (ct["df"] == 105).all()
    np.testing.assert_allclose(ct["p"], 2 * stats.t.sf(np.abs(np.array(case_t(case))), 105), rtol=1e-4)


def test_lme_ar1_ovary():
    case = REF["ovary_ar1"]
    d = pd.read_csv(DATA / "Ovary.csv")
    res = jaxmix.fit("follicles ~ np.sin(2*np.pi*Time) + np.cos(2*np.pi*Time) + (1 | Mare)", d,
                     correlation="ar1(Mare)")
    _check(res, case)
    np.testing.assert_allclose(res.extra["structure"]["rho"], case["params"]["cor"]["Phi"], rtol=1e-4)
    np.testing.assert_allclose(res.varcorr["sdcor"][0], case["params"]["re_sd"]["(Intercept)"], rtol=1e-4)


def test_diag_term_sleepstudy_glmmtmb():
    case = REF["sleepstudy_diag_glmmTMB"]
    d = pd.read_csv(DATA / "sleepstudy.csv")
    res = jaxmix.fit("Reaction ~ Days + diag(Days | Subject)", d)
    _check(res, case)
    np.testing.assert_allclose(res.varcorr["sdcor"][:2], list(case["params"]["re_sd"].values()), rtol=1e-4)
    # diag over numeric columns is lme4's (Days || Subject): the same fit, lme4's names
    plain = jaxmix.fit("Reaction ~ Days + (Days || Subject)", d)
    assert res.varcorr["group"].tolist() == plain.varcorr["group"].tolist() == ["Subject", "Subject.1", "Residual"]
    np.testing.assert_allclose(res.loglik, plain.loglik, rtol=1e-12)


def test_cs_term_machines_nlme():
    case = EXTRA["machines_cs"]
    res = jaxmix.fit(case["python"], pd.read_csv(DATA / "Machines.csv"))
    _check(res, case)
    tab = res.covparm_table()
    assert tab["kind"].tolist() == ["variance", "rho", "variance"]
    np.testing.assert_allclose(tab["estimate"][:2], [case["re_var"], case["re_rho"]], rtol=1e-4)
    assert res.n_params == 3 + 2 + 1
    om = res.term_covariances()[0]  # varcorr shows the implied Ω: one variance, one correlation
    np.testing.assert_allclose(np.diag(om), case["re_var"], rtol=1e-4)
    np.testing.assert_allclose(om[1, 0] / om[0, 0], case["re_rho"], rtol=1e-4)


def test_diag_over_factor_machines_nlme():
    case = EXTRA["machines_diag"]
    res = jaxmix.fit(case["python"], pd.read_csv(DATA / "Machines.csv"))
    _check(res, case)
    np.testing.assert_allclose(res.covparm_table()["estimate"][:3], case["re_var"], rtol=1e-4)
    om = res.term_covariances()[0]
    assert np.count_nonzero(om - np.diag(np.diag(om))) == 0


def test_ar1_term_orthodont_glmmtmb():
    case = EXTRA["orthodont_ar1_glmmTMB"]
    res = jaxmix.fit(case["python"], pd.read_csv(DATA / "Orthodont.csv"))
    _check(res, case, rtol=1e-3)
    np.testing.assert_allclose(res.covparm_table()["estimate"][:2], [case["re_var"], case["re_rho"]], rtol=1e-3)


def test_gls_ar1_integer_time_with_gaps():
    case = EXTRA["sleepstudy_gaps_ar1_gls"]
    d = pd.read_csv(DATA / "sleepstudy_gaps.csv")
    assert len(d) < 180  # days 3, 4 and 7 missing for most subjects: lags of 1, 2 and 3 days
    res = jaxmix.fit(case["python"], d, **case["kwargs"])
    _check(res, case)
    np.testing.assert_allclose(res.extra["structure"]["rho"], case["rho"], rtol=1e-4)
    # rows in another order: the time column, not the data order, defines the lags
    res2 = jaxmix.fit(case["python"], d.sample(frac=1.0, random_state=3), **case["kwargs"])
    np.testing.assert_allclose(res2.loglik, case["loglik"], atol=1e-6)


def test_varident_within_ar1_groups_orthodont():
    case = EXTRA["orthodont_varident_age_ar1"]
    res = jaxmix.fit(case["python"], _orthodont(), **case["kwargs"])
    _check(res, case)
    np.testing.assert_allclose(res.extra["structure"]["rho"], case["rho"], rtol=1e-3)
    sds = res.extra["structure"]["sd_by_stratum"]
    np.testing.assert_allclose([v / sds["8"] for v in sds.values()], list(case["var_ratios"].values()), rtol=1e-4)


# ---- the pieces of Σ⁻¹ against dense matrices -------------------------------------------------------
def _dense_sigma(frame, w, strata, delta, groups, times, kind, rho):
    n = len(frame)
    C = np.eye(n)
    for i in range(n):
        for j in range(n):
            if i != j and groups[i] == groups[j]:
                C[i, j] = rho ** abs(times[i] - times[j]) if kind == "ar1" else rho
    s = delta[strata] / np.sqrt(w)
    return s[:, None] * C * s[None, :]


@pytest.mark.parametrize("kind,phi", [("ar1", [0.3, -0.2, 0.7]), ("ar1", [0.3, -0.2, -0.4]),
                                      ("cs", [0.3, -0.2, 0.9]), ("cs", [0.1, 0.5, -2.0])])
def test_pieces_match_dense_inverse(kind, phi):
    rng = np.random.default_rng(0)
    n = 40
    g = rng.integers(0, 7, n)
    t_rows = np.empty(n, int)
    for k in range(7):  # unique integer times within each group, with gaps, rows in random order
        t_rows[g == k] = rng.choice(15, (g == k).sum(), replace=False)
    frame = pd.DataFrame({"g": g, "t": t_rows, "s": rng.choice(["a", "b", "c"], n)})
    w = rng.uniform(0.5, 2.0, n)
    var = parse_variance("ident(s)")
    cor = parse_correlation("ar1(t | g)" if kind == "ar1" else "cs(g)")
    rp = residual_pieces(frame, w, var, cor)
    phi = jnp.asarray(phi)
    delta = np.exp(np.concatenate([[0.0], np.asarray(phi[:2])]))
    if kind == "ar1":
        rho = np.tanh(float(phi[2]))
    else:
        lo = -1.0 / (rp.max_size - 1)
        rho = lo + (1 - lo) / (1 + np.exp(-float(phi[2])))
    strata = pd.Categorical(frame["s"], ["a", "b", "c"]).codes
    S = _dense_sigma(frame, w, strata, delta, g, t_rows, kind, rho)
    A = rng.normal(size=(n, 3))
    coef = np.asarray(coefficients(phi, rp))
    M = np.zeros((3, 3))
    for c, a, b, wf in zip(coef, rp.ia, rp.ib, rp.wfix):  # pair pieces Σ ½ wᵢⱼ (aᵢbⱼ′ + bⱼaᵢ′)
        P = (A[a] * wf[:, None]).T @ A[b]
        M += c * 0.5 * (P + P.T)
    for c, (ra, ga, va, rb, gb, vb, ng) in zip(coef[len(rp.ia):], rp.sums):  # group-sum pieces (CS)
        Sa = np.zeros((ng, 3))
        Sb = np.zeros((ng, 3))
        np.add.at(Sa, ga, A[ra] * va[:, None])
        np.add.at(Sb, gb, A[rb] * vb[:, None])
        M += c * 0.5 * (Sa.T @ Sb + Sb.T @ Sa)
    np.testing.assert_allclose(M, A.T @ np.linalg.solve(S, A), rtol=1e-10, atol=1e-10)
    ld = float(log_det_sigma(phi, rp)) - np.sum(np.log(w))
    np.testing.assert_allclose(ld, np.linalg.slogdet(S)[1], rtol=1e-10)


@pytest.mark.parametrize("kind,q", [("ar1", 4), ("cs", 3)])
def test_structured_lambda_gives_the_structure(kind, q):
    sl = struct_layout((kind,), (q,))
    psi = jnp.asarray([1.7, 0.4])
    theta = np.asarray(theta_from_psi(psi, sl))
    lam = np.zeros((q, q))  # θ is Λ's lower triangle column by column
    rows, cols = [], []
    for j in range(q):
        for i in range(j, q):
            rows.append(i)
            cols.append(j)
    lam[rows, cols] = theta
    rho = np.tanh(0.4) if kind == "ar1" else float(rho_cs(0.4, q))
    i, j = np.indices((q, q))
    C = rho ** np.abs(i - j) if kind == "ar1" else np.where(i == j, 1.0, rho)
    np.testing.assert_allclose(lam @ lam.T, 1.7**2 * C, rtol=1e-12)


def test_dense_reml_loglik_of_a_fit_without_r_reference():
    """varIdent by Sex and AR(1) at integer ages (lags of 2 years) within Subject, with a random intercept."""
    d = _orthodont()
    res = jaxmix.fit("distance ~ age + Sex + (1 | Subject)", d, variance="ident(Sex)",
                     correlation="ar1(age | Subject)")
    info = res.extra["structure"]
    X, y = res.design.X, res.design.y
    n, p = X.shape
    g = d["Subject"].to_numpy()
    sd = d["Sex"].map(info["sd_by_stratum"]).to_numpy(float)
    rho, age = info["rho"], d["age"].to_numpy()
    R = np.where(g[:, None] == g[None, :], rho ** (np.abs(age[:, None] - age[None, :]) / 1.0), 0.0)
    V = sd[:, None] * R * sd[None, :] + res.varcorr["vcov"][0] * (g[:, None] == g[None, :])
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
    r = y - X @ beta
    ll = -0.5 * (np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtViX)[1] + r @ Vi @ r + (n - p) * np.log(2 * np.pi))
    np.testing.assert_allclose(res.loglik, ll, atol=1e-6)
    np.testing.assert_allclose(res.fixef.to_numpy(), beta, rtol=1e-8)
    np.testing.assert_allclose(res.vcov.to_numpy(), np.linalg.inv(XtViX), rtol=1e-6, atol=1e-12)
    # the AR(1) at integer time is not the data-order AR(1): ages 2 years apart have ρ², not ρ
    order = jaxmix.fit("distance ~ age + Sex + (1 | Subject)", d, variance="ident(Sex)", correlation="ar1(Subject)")
    np.testing.assert_allclose(order.extra["structure"]["rho"], rho**2, rtol=1e-6)
    # predictions: fixed part plus the random intercepts (no residual kriging)
    pred = res.predict(d.head(4))
    m01 = res.design.terms[0].levels.index("M01")
    np.testing.assert_allclose(pred, X[:4] @ res.beta + res.b[0][m01, 0], rtol=1e-12)
    # Pearson residuals are divided by each row's SD ratio (nlme's)
    pr = res.residuals_of("pearson")
    raw = res.residuals_of("response")
    np.testing.assert_allclose(pr * sd / info["sd_by_stratum"]["Female"], raw, rtol=1e-12)


# ---- syntax and clear errors --------------------------------------------------------------------
def test_formula_structures():
    p = parse_formula("y ~ x + diag(1 + x | g) + cs(0 + f | h) + ar1(0 + f | k) + us(x | m) + (1 | n)")
    assert [(t.expr, t.group, t.structure) for t in p.random] == [
        ("1", "g", "diag"), ("0 + x", "g", "diag"), ("0 + f", "h", "cs"), ("0 + f", "k", "ar1"),
        ("x", "m", "us"), ("1", "n", "us")]
    assert p.fixed == "x"
    with pytest.raises(jaxmix.JaxmixError, match="diag"):
        parse_formula("y ~ x + cs(x || g)")


def test_config_model_section_reaches_fit_json(tmp_path):
    from jaxmix.cli import main as cli
    case = REF["orthodont_varident_REML"]
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[data]\npath = "{DATA / "Orthodont.csv"}"\n[model]\n'
                   'formula = "distance ~ age + Sex + (1 | Subject)"\nvariance = "ident(Sex)"\n'
                   '[output]\nplots = []\n')
    out = tmp_path / "out"
    assert cli.main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    rec = json.loads((out / "fit.json").read_text())
    assert abs(rec["loglik"] - case["loglik"]) < 1e-4
    st = rec["structure"]
    assert st["variance"] == "ident(Sex)" and st["correlation"] is None
    np.testing.assert_allclose(st["sd_by_level"]["Male"] / st["sd_by_level"]["Female"],
                               case["params"]["var_ratios"]["Male"], rtol=1e-4)
    cp = pd.read_csv(out / "covparms.csv")
    assert "ratio" in cp["kind"].tolist()
    assert "Residual structure: variance = ident(Sex)" in (out / "summary.txt").read_text()
    fixed = pd.read_csv(out / "fixed.csv")  # Satterthwaite's df by default, in the structure's parameters
    direct = jaxmix.fit("distance ~ age + Sex + (1 | Subject)", pd.read_csv(DATA / "Orthodont.csv"),
                        variance="ident(Sex)").coef_table(ddf="satterthwaite")
    np.testing.assert_allclose(fixed["df"], direct["df"], rtol=1e-6)
    assert 20 < fixed["df"][0] < 80
    bad = tmp_path / "b.toml"
    bad.write_text(f'[data]\npath = "{DATA / "Orthodont.csv"}"\n[model]\nformula = "distance ~ age"\n'
                   'correlation = "ar2(Subject)"\n')
    assert cli.main(["validate", str(bad)]) != 0


def test_structured_fits_refuse_what_would_be_wrong():
    d = _orthodont()
    res = jaxmix.fit("distance ~ age + (1 | Subject)", d, correlation="cs(Subject)")
    for call, match in [(lambda: res.coef_table(ddf="kenward-roger"), "kenward-roger"),
                        (lambda: res.confint(), "confint"),
                        (lambda: res.icc(), "ICC")]:
        with pytest.raises(jaxmix.JaxmixError, match=match):
            call()
    cases = [
        (dict(correlation="ar1(Sex)"), "must share their level of 'Subject'"),
        (dict(correlation="ar1(Sex | Subject)"), "time column 'Sex' must hold integers"),
        (dict(correlation="ar2(Subject)"), "ar2"),
        (dict(variance="power(age)"), "ident"),
        (dict(correlation="cs(nosuch)"), "nosuch"),
    ]
    for kw, match in cases:
        with pytest.raises(jaxmix.JaxmixError, match=match.replace("(", r"\(").replace(")", r"\)")):
            jaxmix.fit("distance ~ age + (1 | Subject)", d, **kw)
    dup = pd.concat([d, d.head(1)])
    with pytest.raises(jaxmix.JaxmixError, match="occurs twice"):
        jaxmix.fit("distance ~ age", dup, correlation="ar1(age | Subject)")
    with pytest.raises(jaxmix.JaxmixError, match="two or more columns"):
        jaxmix.fit("distance ~ age + cs(1 | Subject)", d)
    with pytest.raises(jaxmix.JaxmixError, match="for Gaussian models; family is 'poisson'"):
        jaxmix.fit_many("~ age + (1 | Subject)", d, ["distance"], family="poisson", correlation="ar1(Subject)")
    d["hi"] = (d["distance"] > 24).astype(int)
    with pytest.raises(jaxmix.JaxmixError, match="binomial"):
        jaxmix.fit("hi ~ age + ar1(0 + Sex | Subject)", d, family="binomial")
    with pytest.raises(jaxmix.JaxmixError, match="Gaussian"):
        jaxmix.fit("hi ~ age + (1 | Subject)", d, family="binomial", correlation="ar1(Subject)")


@pytest.mark.parametrize("key,rtol", [("se_machines_diag_glmmTMB", 1e-4), ("se_orthodont_varident_nlme", 2e-3)])
def test_covparm_standard_errors(key, rtol):
    """SEs from the exact Hessian vs glmmTMB's sdreport and nlme's apVar (finite differences)."""
    case = EXTRA[key]
    d = _orthodont() if "orthodont" in key else pd.read_csv(DATA / "Machines.csv")
    tab = jaxmix.fit(case["python"], d, **case.get("kwargs", {})).covparm_table()
    np.testing.assert_allclose(tab["estimate"], case["estimate"], rtol=1e-4)
    np.testing.assert_allclose(tab["se"], case["se"], rtol=rtol)


def test_group_sums_equal_the_pairs_of_rows_with_crossed_terms():
    """CS's group-sum pieces (no m² pairs) give the blocks the explicit pairs give, with a crossed term."""
    from jaxmix.core.pairs import pair_cross_products, pair_maps, sum_cross_products
    from jaxmix.core.structure import padded_system

    rng = np.random.default_rng(1)
    n = 120
    g = rng.integers(0, 9, n)  # term 1 (most levels) and the CS groups
    h = rng.integers(0, 5, n)  # crossed term with a slope
    x = rng.normal(size=n)
    Zs = [np.ones((n, 1)), np.column_stack([np.ones(n), x])]
    T = rng.normal(size=(n, 3))
    w = rng.uniform(0.5, 2, n)
    layout, _, _ = padded_system([g, h], [9, 5], Zs, T, w)
    maps = pair_maps([g, h], 9, Zs, layout)
    u = np.sqrt(w)
    rows = np.arange(n)
    got = sum_cross_products(maps, T, rows, g, u, rows, g, u, 9, layout)
    i, j = np.nonzero((g[:, None] == g[None, :]) & (np.arange(n)[:, None] < np.arange(n)[None, :]))
    off = pair_cross_products(maps, T, i, j, 2 * u[i] * u[j], layout)
    dia = pair_cross_products(maps, T, rows, rows, w, layout)
    for a, b, c in zip(got, off, dia):
        np.testing.assert_allclose(a, b + c, rtol=1e-12, atol=1e-12)


def test_simulate_structured_fit_has_the_fitted_covariance():
    """simulate() draws from the structured model: the empirical covariance of one subject's rows and
    the variances per Sex match the fitted V (random intercept + varIdent + AR(1) in age)."""
    from jaxmix.api.bootstrap import simulate

    d = _orthodont()
    res = jaxmix.fit("distance ~ age + Sex + (1 | Subject)", d, variance="ident(Sex)",
                     correlation="ar1(age | Subject)")
    info = res.extra["structure"]
    Y = simulate(res, 4000, seed=2)
    assert Y.shape == (108, 4000)
    np.testing.assert_array_equal(simulate(res, 2, seed=2, start=5), Y[:, 5:7])  # replicates one by one
    sd = d["Sex"].map(info["sd_by_stratum"]).to_numpy(float)
    age, g = d["age"].to_numpy(), d["Subject"].to_numpy()
    V = (sd[:, None] * sd[None, :] * info["rho"] ** (np.abs(age[:, None] - age[None, :]) / 1.0)
         + res.varcorr["vcov"][0]) * (g[:, None] == g[None, :])
    rows = np.flatnonzero(g == "M01")
    emp = np.cov(Y[rows])
    se = np.sqrt((V[np.ix_(rows, rows)] ** 2 + np.outer(np.diag(V)[rows], np.diag(V)[rows])) / 4000)
    assert np.all(np.abs(emp - V[np.ix_(rows, rows)]) < 4.5 * se)
    np.testing.assert_allclose(Y.mean(axis=1), res.design.X @ res.beta, atol=4.5 * np.sqrt(np.diag(V).max() / 4000))
    # a cs gls as well: the within-subject correlation
    gls = jaxmix.fit("distance ~ age + Sex", d, correlation="cs(Subject)")
    Yg = simulate(gls, 4000, seed=3)
    r = np.corrcoef(Yg[0], Yg[1])[0, 1]
    assert abs(r - gls.extra["structure"]["rho"]) < 4.5 * (1 - gls.extra["structure"]["rho"] ** 2) / np.sqrt(4000)



@pytest.mark.parametrize("key", ["satterthwaite_machines_cs", "satterthwaite_machines_diag"])
def test_satterthwaite_df_in_the_structures_parameters(key):
    """lmerTest's df for the same models written in lme4 (CS = (1 | Worker) + (1 | Worker:Machine))."""
    case = EXTRA[key]
    res = jaxmix.fit(case["python"], pd.read_csv(DATA / "Machines.csv"))
    assert abs(res.loglik - case["loglik"]) < 1e-6
    np.testing.assert_allclose(res.coef_table()["df"], case["df"], rtol=1e-5)  # the default for a structured LMM
    an = res.anova()
    np.testing.assert_allclose(an["F"], case["anova_F"], rtol=1e-6)
    if key.endswith("cs"):
        np.testing.assert_allclose(an["den_df"], case["anova_ddf"], rtol=1e-5)


def test_one_compiled_class_serves_new_data():
    """A second data set of the same class reuses the compiled programs (jaxmix.fitting.structured's
    cache) with its own cross-products: y → 2y + 3 must scale β, σ and shift the REML log-likelihood by
    −(n − p) log 2, exactly as the model's invariance says, and take no new compile."""
    from jaxmix.fitting import structured

    d = _orthodont()
    f = "distance ~ age + Sex + (1 | Subject)"
    a = jaxmix.fit(f, d, variance="ident(Sex)", correlation="ar1(age | Subject)")
    before = len(structured._PROGRAMS)
    b = jaxmix.fit(f.replace("distance", "d2"), d.assign(d2=2 * d["distance"] + 3), variance="ident(Sex)",
                   correlation="ar1(age | Subject)")
    assert len(structured._PROGRAMS) == before
    np.testing.assert_allclose(b.beta, 2 * a.beta + [3, 0, 0], rtol=1e-6)
    assert b.sigma == pytest.approx(2 * a.sigma, rel=1e-6)
    assert b.loglik == pytest.approx(a.loglik - (108 - 3) * np.log(2), abs=1e-6)
    assert b.extra["structure"]["rho"] == pytest.approx(a.extra["structure"]["rho"], rel=1e-5)
