"""Negative-binomial (NB2) and Gamma families against glmmTMB (and MASS::glm.nb, lme4's glmer.nb).

The numbers are in tests/data/families_nb_gamma.json (generator: tests/data/export_families_nb_gamma.R,
glmmTMB 1.1.5, on tests/data/grouseticks_nb.csv and gamma_sim.csv) and the team's shared reference
tests/data/families_reference.json (generator export_families_shared.R: lme4's glmer.nb / glmer fits with
glmmTMB's beside them).  glmmTMB maximises the Laplace approximation with the observed information and
estimates the shape jointly, as jaxmix does; lme4's glmer.nb alternates θ and the GLMM, so it stops at a
lower log-likelihood, and lme4's Gamma log-likelihood is not the Gamma ML one (both only bound ours).

AGQ has no glmmTMB counterpart: the AGQ log-likelihood is checked against the marginal likelihood at
the same estimates integrated per group on a fine grid with scipy's densities (an independent computation).
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

import jaxmix
from jaxmix.spec.families import get_family
from jaxmix.api.generalized import separated_columns
from conftest import DATA_DIR

TMB = json.loads((DATA_DIR / "families_nb_gamma.json").read_text())
SHARED = json.loads((DATA_DIR / "families_reference.json").read_text())

NB_F = "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)"
CASES = {  # key in TMB: (formula, data, family, link)
    "nb_glmm": (NB_F, "nb", "negative_binomial", None),
    "gamma_log_glmm": ("y ~ x + (1 | g)", "gamma", "gamma", "log"),
    "gamma_inverse_glmm": ("y ~ x + (1 | g)", "gamma", "gamma", None),  # R's default link
    "gamma_identity_glmm": ("y ~ 1 + (1 | g)", "gamma", "gamma", "identity"),
    "nb_glm": ("TICKS ~ YEAR + cHEIGHT", "nb", "negative_binomial", "log"),
    "gamma_log_glm": ("y ~ x", "gamma", "gamma", "log"),
    "gamma_identity_glm": ("y ~ 1", "gamma", "gamma", "identity"),
}
_DATA: dict = {}
_FITS: dict = {}


def data(which: str) -> pd.DataFrame:
    if which not in _DATA:
        if which == "nb":
            d = pd.read_csv(DATA_DIR / "grouseticks_nb.csv")
            d["YEAR"], d["LOCATION"] = d["YEAR"].astype(str), d["LOCATION"].astype(str)
        else:
            d = pd.read_csv(DATA_DIR / "gamma_sim.csv")
        _DATA[which] = d
    return _DATA[which]


def fitted(key: str, **kw):
    k = (key, tuple(sorted(kw.items())))
    if k not in _FITS:
        formula, which, fam, link = CASES[key]
        with warnings.catch_warnings():
            warnings.simplefilter("error", jaxmix.JaxmixWarning)
            _FITS[k] = jaxmix.fit(formula, data(which), family=fam, link=link, **kw)
    return _FITS[k]


@pytest.mark.parametrize("key", sorted(CASES))
def test_matches_glmmtmb(key):
    """logLik to 1e-4 (absolute), β, SEs and the shape to 1e-3 relative, RE SD to 1e-3, AIC/BIC with φ counted."""
    ref, r = TMB[key], fitted(key)
    assert r.converged
    assert r.loglik == pytest.approx(ref["loglik"], abs=1e-4)
    np.testing.assert_allclose(r.beta, list(ref["fixef"].values()), rtol=1e-3, atol=1e-8)
    np.testing.assert_allclose(r.se, list(ref["se"].values()), rtol=1e-3)
    assert r.dispersion == pytest.approx(ref["dispersion"], rel=1e-3)
    assert r.dispersion_table["se"].iloc[0] == pytest.approx(ref["se_dispersion"], rel=2e-3)
    assert r.n_params == ref["df"]
    assert r.aic == pytest.approx(ref["AIC"], abs=2e-4) and r.bic == pytest.approx(ref["BIC"], abs=2e-4)
    if r.is_mixed:
        assert r.varcorr["sdcor"].iloc[0] == pytest.approx(ref["re_sd"], rel=1e-3)


def test_dispersion_names_and_table():
    nb, ga = fitted("nb_glmm"), fitted("gamma_log_glmm")
    assert nb.dispersion_table["parameter"].tolist() == ["theta (NB shape)"]
    assert ga.dispersion_table["parameter"].tolist() == ["Gamma shape"]
    assert "theta (NB shape) = 2.045" in nb.summary() and "Gamma shape = 3.223" in ga.summary()
    assert fitted("nb_glm").summary().startswith("Generalized linear model fit by maximum likelihood")
    pois = jaxmix.fit("TICKS ~ YEAR + cHEIGHT", data("nb"), family="poisson")
    assert pois.dispersion is None and len(pois.dispersion_table) == 0


@pytest.mark.parametrize("key", ["nb_glmm", "gamma_log_glmm"])
def test_covparm_se_matches_glmmtmb(key):
    """covparm_table's variance SE (its Hessian now over (θ, log φ, β)) against glmmTMB's: var = sd²,
    se(var) = 2·var·se(log sd)."""
    ref, r = TMB[key], fitted(key)
    cp = r.covparm_table()
    var = ref["re_sd"] ** 2
    assert cp["estimate"].iloc[0] == pytest.approx(var, rel=2e-3)
    assert cp["se"].iloc[0] == pytest.approx(2 * var * ref["se_log_re_sd"], rel=2e-3)


def test_beats_or_matches_shared_reference():
    """The shared reference: glmmTMB's NB fit matched to 1e-4; lme4's glmer.nb (θ by alternation) is not
    above it; for the Gamma model glmmTMB's numbers (lme4's Gamma log-likelihood is not the ML one)."""
    nb = fitted("nb_glmm")
    ref = SHARED["grouseticks_nb"]
    assert nb.loglik == pytest.approx(ref["glmmTMB"]["loglik"], abs=1e-4)
    assert nb.loglik >= ref["loglik"] - 1e-6
    assert nb.dispersion == pytest.approx(ref["glmmTMB"]["dispersion"], rel=1e-3)
    np.testing.assert_allclose(nb.beta, list(ref["glmmTMB"]["fixef"].values()), rtol=1e-3)
    ga = fitted("gamma_log_glmm")
    g = SHARED["gamma_log"]["glmmTMB"]
    assert ga.loglik == pytest.approx(g["loglik"], abs=1e-4)
    assert ga.dispersion == pytest.approx(1.0 / g["dispersion"] ** 2, rel=1e-3)  # glmmTMB's sigma = 1/√shape
    np.testing.assert_allclose(ga.se, list(g["se"].values()), rtol=1e-3)


def test_nb_glm_matches_mass_glm_nb():
    """MASS::glm.nb: the same ML θ and β (its SEs hold θ fixed and use the expected information, so
    they differ from the joint observed-information ones by up to 2 %: not compared)."""
    ref, r = TMB["nb_glm_mass"], fitted("nb_glm")
    assert r.loglik == pytest.approx(ref["loglik"], abs=1e-6)
    assert r.dispersion == pytest.approx(ref["theta"], rel=1e-5)
    np.testing.assert_allclose(r.beta, list(ref["fixef"].values()), rtol=1e-5)


@pytest.mark.parametrize("key", ["nb_glmm", "gamma_log_glmm", "gamma_inverse_glmm"])
def test_predict_and_residuals_match_r(key):
    """Conditional fitted means (glmmTMB's fitted()), Pearson residuals (y − μ)/√V(μ) with R's variance
    functions and deviance residuals from R's dev.resids (MASS negative.binomial(θ), Gamma())."""
    ref, r = TMB[key], fitted(key)
    np.testing.assert_allclose(r.predict()[:10], ref["fitted_head"], rtol=1e-4)
    np.testing.assert_allclose(r.residuals_of("pearson")[:10], ref["pearson_head"], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(r.residuals_of("deviance")[:10], ref["deviance_head"], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(r.residuals_of("response"), r.design.y - r.predict(), atol=1e-12)
    assert r.deviance == pytest.approx(float(np.sum(r.residuals_of("deviance") ** 2)))


def test_predict_newdata_unseen_level_is_population_mean():
    r = fitted("nb_glmm")
    new = data("nb").iloc[:3].copy()
    new["LOCATION"] = "nowhere"
    X = np.column_stack([np.ones(3), new["YEAR"] == "96", new["YEAR"] == "97", new["cHEIGHT"]]).astype(float)
    np.testing.assert_allclose(r.predict(new), np.exp(X @ r.beta), rtol=1e-12)


def _nb_logpdf(y, mu, th):
    return stats.nbinom.logpmf(y, th, th / (th + mu))


def _gamma_logpdf(y, mu, a):
    return stats.gamma.logpdf(y, a, scale=mu / a)


@pytest.mark.parametrize("key,nagq", [("nb_glmm", 15), ("gamma_log_glmm", 11)])
def test_agq_loglik_is_the_integrated_likelihood(key, nagq):
    """AGQ (nagq > 1) log-likelihood = Σ_groups log ∫ Π f(y | β, φ, σz) φ(z) dz at its own estimates,
    the integral by the trapezoidal rule on a fine grid (scipy's densities); nagq = 1 is the Laplace fit."""
    r = fitted(key, nagq=nagq)
    assert r.method == "AGQ" and r.converged
    lap = fitted(key)
    assert fitted(key, nagq=1).loglik == lap.loglik
    t = r.design.terms[0]
    eta0 = r.design.X @ r.beta + r.design.offset
    sd = float(np.sqrt(r.varcorr["vcov"].iloc[0]))
    logpdf = _nb_logpdf if key.startswith("nb") else _gamma_logpdf
    # the trapezoidal rule on a fine grid: exponentially accurate for a smooth integrand that vanishes at ±12
    z = np.linspace(-12.0, 12.0, 4801)
    total = 0.0
    for j in range(t.nlevels):
        rows = t.codes == j
        y, e = r.design.y[rows], eta0[rows]
        lf = logpdf(y[:, None], np.exp(e[:, None] + sd * z[None, :]), r.dispersion).sum(axis=0) + stats.norm.logpdf(z)
        m = lf.max()
        total += m + np.log(integrate.trapezoid(np.exp(lf - m), z))
    assert r.loglik == pytest.approx(total, abs=1e-6)
    assert abs(r.loglik - lap.loglik) < 1.0  # the Laplace approximation is close, not equal


def test_nb_without_overdispersion_warns_at_the_poisson_limit():
    """Binomial(10, 0.3) counts are underdispersed: θ̂ → ∞, the Poisson model; a warning, no SE for θ,
    β and log-likelihood those of the Poisson fit."""
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"y": rng.binomial(10, 0.3, 300), "x": rng.normal(size=300),
                      "g": rng.integers(0, 20, 300).astype(str)})
    for f in ("y ~ x", "y ~ x + (1 | g)"):
        with pytest.warns(jaxmix.JaxmixWarning, match=r"theta \(NB shape\) = .* is at the Poisson limit"):
            r = jaxmix.fit(f, d, family="negative_binomial")
        p = jaxmix.fit(f, d, family="poisson")
        assert r.dispersion > 1e4 and np.isnan(r.dispersion_table["se"].iloc[0])
        assert r.loglik == pytest.approx(p.loglik, abs=1e-3) and r.loglik >= p.loglik - 1e-6
        np.testing.assert_allclose(r.beta, p.beta, atol=1e-3)


@pytest.mark.parametrize("key", ["nb_glm", "gamma_log_glm"])
def test_simulate_has_the_fitted_mean_and_variance(key):
    """jaxmix.api.bootstrap.simulate from a fixed-effects fit: per row, the mean of 1000 draws is μ within
    5 standard errors (all rows), and the variance averages to V = μ + μ²/θ (NB) or μ²/α (Gamma)."""
    from jaxmix.api.bootstrap import simulate

    r = fitted(key)
    Y = simulate(r, 1000, seed=3)
    mu = r.predict()
    V = mu + mu**2 / r.dispersion if r.family == "negative_binomial" else mu**2 / r.dispersion
    assert Y.shape == (r.nobs, 1000) and np.all(Y >= 0)
    if r.family == "negative_binomial":
        assert np.all(Y == np.round(Y))
    z = (Y.mean(axis=1) - mu) / np.sqrt(V / 1000)
    assert np.max(np.abs(z)) < 5
    assert np.mean(Y.var(axis=1, ddof=1) / V) == pytest.approx(1.0, abs=0.03)


def test_prior_weights_are_repeated_rows():
    """Prior weights multiply each row's log-likelihood (as glmmTMB): weight 2 on every row is the data
    stacked twice."""
    d = data("nb").assign(w=2.0)
    rw = jaxmix.fit(NB_F, d, family="negative_binomial", weights="w")
    rd = jaxmix.fit(NB_F, pd.concat([d, d]), family="negative_binomial")
    assert rw.loglik == pytest.approx(rd.loglik, abs=1e-6)
    assert rw.dispersion == pytest.approx(rd.dispersion, rel=1e-6)
    np.testing.assert_allclose(rw.beta, rd.beta, atol=1e-7)


def test_gamma_needs_positive_response():
    d = data("gamma").copy()
    d.loc[5, "y"] = 0.0
    with pytest.raises(jaxmix.JaxmixError, match=r"gamma response 'y' has values <= 0.*row 5: 0"):
        jaxmix.fit("y ~ x + (1 | g)", d, family="gamma", link="log")


def test_nb_response_checks():
    d = data("nb").copy()
    d.loc[3, "TICKS"] = -1
    with pytest.raises(jaxmix.JaxmixError, match=r"negative_binomial response 'TICKS' has negative counts"):
        jaxmix.fit(NB_F, d, family="negative_binomial")
    d = data("nb").copy()
    d["TICKS"] = d["TICKS"] + 0.5
    with pytest.warns(jaxmix.JaxmixWarning, match="non-integer counts"):
        jaxmix.fit("TICKS ~ YEAR", d, family="negative_binomial")


def test_bad_links_trials_and_fit_many_are_clear_errors():
    with pytest.raises(jaxmix.JaxmixError, match=r"unknown link 'logit' for family 'gamma'; choose one of inverse, log"):
        jaxmix.fit("y ~ x", data("gamma"), family="gamma", link="logit")
    with pytest.raises(jaxmix.JaxmixError, match=r"unknown link 'identity' for family 'negative_binomial'"):
        jaxmix.fit("TICKS ~ YEAR", data("nb"), family="negative_binomial", link="identity")
    with pytest.raises(jaxmix.JaxmixError, match="trials= is only for the binomial family"):
        jaxmix.fit("TICKS ~ YEAR", data("nb"), family="negative_binomial", trials="HEIGHT")
    with pytest.raises(jaxmix.JaxmixError, match="nagq"):
        jaxmix.fit("y ~ x + (x | g)", data("gamma"), family="gamma", link="log", nagq=5)


def test_nb_glm_bootstrap_refits_theta():
    """The parametric bootstrap of an NB GLM: θ is a column of the replicates, each refitted by ML (slow)."""
    r = fitted("nb_glm")
    bs = r.bootstrap(n=12, seed=1, progress=False)
    assert list(bs.samples.columns)[-1] == "theta (NB shape)" and bs.n_failed == 0
    se = r.dispersion_table["se"].iloc[0]
    assert abs(bs.samples["theta (NB shape)"].mean() - r.dispersion) < 4 * se / np.sqrt(12) + 0.1 * r.dispersion
    assert bs.samples["theta (NB shape)"].std() == pytest.approx(se, rel=0.6)


def test_separation_check():
    """Gamma responses are > 0: nothing to separate.  NB, like Poisson: a factor level whose counts are
    all 0 has an estimate at −∞, named in the warning."""
    X = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]])
    y = np.array([1.0, 2.0, 3.0, 0.5, 0.2, 0.1])
    assert separated_columns(get_family("gamma", "log"), X, y, np.ones(6), np.ones(6), ["a", "b"]) == []
    assert separated_columns(get_family("negative_binomial"), X, np.array([1.0, 4, 2, 0, 0, 0]), np.full(6, 2.0),
                             np.ones(6), ["a", "b"]) == ["b"]
    d = data("nb").copy()
    d.loc[d["YEAR"] == "97", "TICKS"] = 0
    with pytest.warns(jaxmix.JaxmixWarning, match=r"separated by YEAR\[T\.97\]"):
        r = jaxmix.fit(NB_F, d, family="negative_binomial")
    assert not r.converged and np.isnan(r.se).all()


def test_fit_record_and_config():
    from jaxmix.cli.config import parse_config
    from jaxmix.cli.records import fit_record

    c = parse_config({"data": {"path": "g.csv"}, "model": {"formula": NB_F, "family": "negative_binomial"}})
    assert c.models["model"].family == "negative_binomial" and c.models["model"].method == "Laplace"
    sc = parse_config({"data": {"path": "g.csv"}, "sweep": {"formula": "~ x", "outcomes": ["y"], "family": "gamma"}})
    assert sc.sweep.family == "gamma"
    rec = fit_record(fitted("nb_glmm"), environment=False)
    ref = TMB["nb_glmm"]
    assert rec["family"] == "negative_binomial" and rec["n_params"] == ref["df"]
    assert rec["aic"] == pytest.approx(ref["AIC"], abs=2e-4)
    assert rec["dispersion"] == [{"parameter": "theta (NB shape)", "estimate": pytest.approx(ref["dispersion"], rel=1e-3),
                                  "se": pytest.approx(ref["se_dispersion"], rel=2e-3)}]
    json.dumps(rec)


def test_config_run_writes_the_shape(tmp_path):
    """``jaxmix run`` on a config with family = "gamma": fit.json and summary.txt carry the shape (slow)."""
    from jaxmix.cli import main as cli
    data("gamma").to_csv(tmp_path / "g.csv", index=False)
    (tmp_path / "g.toml").write_text('[data]\npath = "g.csv"\n[model]\nformula = "y ~ x + (1 | g)"\n'
                                     'family = "gamma"\nlink = "log"\n')
    out = tmp_path / "out"
    assert cli.main(["run", str(tmp_path / "g.toml"), "--out", str(out), "--quiet"]) == 0
    rec = json.loads((out / "fit.json").read_text())
    ref = TMB["gamma_log_glmm"]
    assert rec["family"] == "gamma" and rec["link"] == "log" and rec["n_params"] == 4
    assert rec["loglik"] == pytest.approx(ref["loglik"], abs=1e-4)
    assert rec["dispersion"][0]["parameter"] == "Gamma shape"
    assert rec["dispersion"][0]["estimate"] == pytest.approx(ref["dispersion"], rel=1e-3)
    assert rec["dispersion"][0]["se"] == pytest.approx(ref["se_dispersion"], rel=2e-3)
    assert "Gamma shape = 3.223" in (out / "summary.txt").read_text()


def test_nb_log_likelihood_stays_exact_at_the_poisson_limit():
    """log Γ(y + θ) − log Γ(θ) − y log θ = Σ_{k<y} log(1 + k/θ) to 1e-12 for θ from 2.5 to 10¹² (the
    difference of two log-gamma values lost 1e-8 at θ = 10⁷ and 1e-3 at 10¹²), and the NB
    log-likelihood tends to the Poisson one as θ grows."""
    import math

    import jax
    import jax.numpy as jnp

    from jaxmix.spec.families import _log_rising_over_power

    jax.config.update("jax_enable_x64", True)
    for th in (2.5, 999.0, 1e3, 1e7, 1e12):
        for y in (0, 1, 5, 40):
            exact = math.fsum(math.log1p(k / th) for k in range(y))
            got = float(_log_rising_over_power(jnp.asarray(float(y)), jnp.asarray(th)))
            assert abs(got - exact) < 1e-12 * max(1.0, abs(exact)), (th, y, got, exact)
    fn, fp = get_family("negative_binomial", "log"), get_family("poisson", "log")
    y, eta = jnp.array([0.0, 1.0, 3.0, 12.0]), jnp.array([-1.0, 0.2, 1.1, 2.5])
    for th, tol in ((1e8, 1e-6), (1e12, 1e-10)):
        np.testing.assert_allclose(fn.loglik(y, jnp.full(4, th), eta), fp.loglik(y, jnp.ones(4), eta), atol=tol)


def test_data_constant_is_the_eta_free_part_summed_once_and_kept_out_of_the_program():
    """``data_constant`` (numpy, on the host) equals Σ w (ℓ − kernel) by the family's own JAX functions
    at any η for the binomial (with trials) and the Poisson, and is None where the constant depends on
    the shape (NB, Gamma); the Laplace deviance without it plus it is the deviance with it."""
    import jax
    import jax.numpy as jnp
    from jaxmix.core.glmm import GlmmData, laplace_objective
    from jaxmix.core.structure import padded_system
    from jaxmix.spec.covariance import theta_layout
    from jaxmix.spec.families import data_constant

    rng = np.random.default_rng(5)
    n = 40
    ntr = rng.integers(1, 9, n).astype(float)
    w = rng.uniform(0.5, 2.0, n)
    w[3] = 0.0
    for fam, y in [(get_family("binomial", "logit"), rng.binomial(ntr.astype(int), 0.3).astype(float)),
                   (get_family("binomial", "cloglog"), rng.binomial(ntr.astype(int), 0.6).astype(float)),
                   (get_family("poisson"), rng.poisson(3.0, n).astype(float))]:
        eta = jnp.asarray(rng.normal(size=n))
        want = float(jnp.sum(w * (fam.loglik(y, ntr, eta) - fam.kernel(y, ntr, eta))))
        assert abs(want) > 1.0  # a constant that matters
        np.testing.assert_allclose(data_constant(fam, y, ntr, w), want, rtol=1e-12)
        if fam.link == "cloglog":
            continue
        codes = rng.integers(0, 6, n)
        layout, idx, _ = padded_system([codes], [6], [np.ones((n, 1))], np.zeros((n, 1)), np.ones(n), tail_cross=False,
                                       row_index=True)
        d = GlmmData(jnp.ones((n, 1)), jnp.zeros((n, 0)), jnp.ones((n, 1)), jnp.asarray(y), jnp.asarray(ntr),
                     jnp.asarray(w), jnp.zeros(n))
        tl = theta_layout(layout.q)
        prm = jnp.array([0.7, -0.4 if fam.name == "binomial" else 1.0])
        obj = jax.jit(lambda p, dd, c: laplace_objective(p, fam, dd, idx, layout, tl, constant=c), static_argnums=2)
        full, part = obj(prm, d, True), obj(prm, d, False)
        np.testing.assert_allclose(float(part) - 2.0 * want, float(full), rtol=1e-12)
    for name in ("negative_binomial", "gamma"):
        assert data_constant(get_family(name), np.ones(3), np.ones(3), np.ones(3)) is None


def test_softplus_log_likelihoods_match_scipy():
    """The binomial-logit and NB kernels (through the fast softplus) and their η-derivatives equal
    scipy's log-pmfs and the analytic scores, from η = −700 to 700."""
    import jax
    import jax.numpy as jnp
    from scipy.special import expit

    jax.config.update("jax_enable_x64", True)
    eta = np.array([-700.0, -40.0, -3.0, -1e-3, 0.0, 1e-3, 2.5, 40.0, 700.0])
    fb = get_family("binomial", "logit")
    for y, n in [(0.0, 1.0), (1.0, 1.0), (3.0, 7.0)]:
        ll = np.asarray(fb.loglik(jnp.full(9, y), jnp.full(9, n), jnp.asarray(eta)))
        mid = np.abs(eta) < 30  # scipy's logpmf via μ itself rounds to 0 or 1 beyond
        np.testing.assert_allclose(ll[mid], stats.binom.logpmf(y, n, expit(eta[mid])), rtol=1e-12, atol=1e-12)
        g = np.asarray(jax.vmap(jax.grad(lambda e: fb.loglik(y, n, e)))(jnp.asarray(eta)))
        np.testing.assert_allclose(g, y * expit(-eta) - (n - y) * expit(eta), rtol=1e-12, atol=1e-300)
        assert np.all(np.isfinite(ll))
    fn = get_family("negative_binomial", "log")
    th, y = 2.5, 4.0
    e = eta[np.abs(eta) < 30]
    ll = np.asarray(fn.loglik(jnp.full(e.size, y), jnp.full(e.size, th), jnp.asarray(e)))
    np.testing.assert_allclose(ll, stats.nbinom.logpmf(y, th, th / (th + np.exp(e))), rtol=1e-10, atol=1e-10)
    g = np.asarray(jax.vmap(jax.grad(lambda t: fn.loglik(y, th, t)))(jnp.asarray(e)))
    np.testing.assert_allclose(g, th * (y - np.exp(e)) / (np.exp(e) + th), rtol=1e-10, atol=1e-12)


def test_glm_programs_serve_every_data_set_of_a_rows_bucket():
    """The GLM-with-dispersion programs pad the rows to a bucket (weight 0, copies of the first row):
    a second data set in the same bucket compiles nothing, and padding leaves the fit unchanged."""
    from jaxmix.fitting import cache, dispersion
    from jaxmix.spec.families import get_family

    fam = get_family("negative_binomial", "log")
    d = data("nb")
    fits = []
    for n in (300, 330):  # both pad to 384 rows
        X = np.column_stack([np.ones(n), d["cHEIGHT"].to_numpy()[:n]])
        y = d["TICKS"].to_numpy(float)[:n]
        args = dispersion.glm_program_args(X, y, np.ones(n), np.zeros(n))
        assert [a.shape[0] for a in args] == [384] * 4 and args[2][n:].sum() == 0.0
        np.testing.assert_array_equal(args[0][n:], np.repeat(X[:1], 384 - n, axis=0))
        before = len(cache._COMPILED)
        fits.append(dispersion.fit_glm_dispersion(fam, X, y, np.ones(n), np.zeros(n), np.zeros(2), 1.0))
        compiled = len(cache._COMPILED) - before
        # the same fit by hand on the unpadded rows: −2 log L at the estimates
        beta, phi, dev = fits[-1][:3]
        eta = X @ beta
        assert dev == pytest.approx(-2.0 * float(np.sum(fam.loglik(y, phi * np.ones(n), eta))), rel=1e-12)
    assert compiled == 0
    assert fits[0][4].status == 0 and fits[1][4].status == 0
