"""jaxmix.sample: the marginal likelihood and conditional draws against dense formulas, agreement with the
ML fit where the data dominate, priors and their errors, diagnostics against arviz, calibration (SBC)."""
from __future__ import annotations

import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import jaxmix
from jaxmix.errors import JaxmixError

numpyro = pytest.importorskip("numpyro")
dist = numpyro.distributions

from jaxmix.bayes import diagnostics, sample_replicates  # noqa: E402
from jaxmix.bayes.likelihood import conditional_u, gaussian_marginal_loglik, linear_predictor_re  # noqa: E402
from jaxmix.bayes.model import build_arrays, term_lambdas  # noqa: E402
from jaxmix.bayes.spec import build_spec  # noqa: E402
from jaxmix.core.blocked import factorize  # noqa: E402

from conftest import load_csv  # noqa: E402


def _dense_Z(spec):
    """The dense n x Σ levels·q Z (tests only), columns level-major within each term."""
    blocks = []
    for t in spec.design.terms:
        Zt = np.zeros((len(spec.y), t.nlevels * t.q))
        for a in range(t.q):
            Zt[np.arange(len(spec.y)), t.codes * t.q + a] = t.Z[:, a]
        blocks.append(Zt)
    return np.hstack(blocks)


def _crossed_case():
    d = load_csv("Penicillin.csv").copy()
    rng = np.random.default_rng(3)
    d["w"] = rng.uniform(0.5, 2.0, len(d))
    d["o"] = rng.normal(0, 0.5, len(d))
    d["x"] = rng.normal(size=len(d))
    spec = build_spec("diameter ~ x + (1 + x | plate) + (1 | sample)", d, weights="w", offset="o")
    lams = [np.array([[0.8, 0.0], [0.3, 0.5]]), np.array([[1.7]])]
    return spec, lams


def _block_diag(lams, spec):
    return np.asarray(jax.scipy.linalg.block_diag(*[np.kron(np.eye(t.nlevels), lam)
                                                      for t, lam in zip(spec.design.terms, lams)]))


def test_marginal_loglik_equals_dense_multivariate_normal():
    spec, lams = _crossed_case()
    arr = build_arrays(spec)
    beta, sigma = np.array([22.5, 0.4]), 0.7
    # compiled whole (op by op it compiled ~160 small programs)
    ll, _ = jax.jit(gaussian_marginal_loglik, static_argnums=(5,))(
        [jnp.asarray(l) for l in lams], jnp.asarray(beta), sigma, arr.xp, arr.idx, arr.layout, arr.n, arr.ldW)
    Z, L = _dense_Z(spec), _block_diag(lams, spec)
    w = spec.design.weights
    V = sigma**2 * (Z @ L @ L.T @ Z.T + np.diag(1.0 / w))
    mean = spec.design.offset + spec.Xc @ beta
    ref = stats.multivariate_normal(mean, V).logpdf(spec.y)
    assert float(ll) == pytest.approx(ref, rel=1e-10)


def test_conditional_draws_have_the_dense_conditional_mean_and_covariance():
    spec, lams = _crossed_case()
    arr = build_arrays(spec)
    lay = arr.layout
    beta, sigma = np.array([22.5, 0.4]), 0.7
    lj = [jnp.asarray(l) for l in lams]
    f = factorize(lj, arr.xp, arr.idx, lay)
    m = lay.l1 * lay.q1 + lay.m_R

    def b_of(z):  # b = Λu for the noise z (u is linear in z)
        u1, uR = conditional_u(f, jnp.asarray(beta), sigma, jnp.asarray(z[: lay.l1 * lay.q1].reshape(lay.l1, lay.q1)),
                               jnp.asarray(z[lay.l1 * lay.q1:]), arr.idx, lay)
        return np.concatenate([np.asarray(u1 @ lj[0].T).ravel(), np.asarray(u1[:0]).ravel(),
                               np.asarray(uR) * float(lams[1][0, 0])])

    b0 = b_of(np.zeros(m))
    M = np.stack([b_of(e) - b0 for e in np.eye(m)], axis=1)
    Z, L = _dense_Z(spec), _block_diag(lams, spec)
    w = spec.design.weights
    Omega = sigma**2 * L @ L.T
    V = Z @ Omega @ Z.T + sigma**2 * np.diag(1.0 / w)
    r = spec.y - spec.design.offset - spec.Xc @ beta
    np.testing.assert_allclose(b0, Omega @ Z.T @ np.linalg.solve(V, r), rtol=1e-9, atol=1e-10)
    cov = Omega - Omega @ Z.T @ np.linalg.solve(V, Z @ Omega)
    np.testing.assert_allclose(M @ M.T, cov, rtol=1e-8, atol=1e-10)


def test_glmm_linear_predictor_equals_dense_Zb():
    spec, lams = _crossed_case()
    arr = build_arrays(spec)
    lay = arr.layout
    rng = np.random.default_rng(0)
    u1, uR = rng.normal(size=(lay.l1, lay.q1)), rng.normal(size=lay.m_R)
    eta = linear_predictor_re(jnp.asarray(u1), jnp.asarray(uR), [jnp.asarray(l) for l in lams], arr.Z1, arr.ZR,
                              arr.idx, lay)
    u = np.concatenate([u1.ravel(), uR])
    np.testing.assert_allclose(np.asarray(eta), _dense_Z(spec) @ _block_diag(lams, spec) @ u, rtol=1e-12)


def test_diagnostics_equal_arviz():
    az = pytest.importorskip("arviz")
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.standard_normal((4, 400)), axis=1) * 0.1 + rng.standard_normal((4, 400))
    x[2] += 0.4
    assert diagnostics.rhat(x) == pytest.approx(float(az.rhat(x, method="rank")), rel=1e-10)
    assert diagnostics.ess_bulk(x) == pytest.approx(float(az.ess(x, method="bulk")), rel=0.03)
    assert diagnostics.ess_tail(x) == pytest.approx(float(az.ess(x, method="tail")), rel=0.03)
    iid = rng.standard_normal((4, 500))
    assert diagnostics.ess_bulk(iid) == pytest.approx(float(az.ess(iid, method="bulk")), rel=0.03)


@pytest.fixture(scope="module")
def sleep_post():
    d = load_csv("sleepstudy.csv")
    return jaxmix.sample("Reaction ~ Days + (Days | Subject)", d, chains=2, draws=400, warmup=300, seed=1,
                         progress=False)


def test_summary_rows_named_as_the_fit(sleep_post, sleep_reml):
    s = sleep_post.summary()
    vc = sleep_reml.varcorr
    sd = [f"sd {r.group}: {r.var1}" for r in vc.itertuples() if pd.isna(r.var2) and r.group != "Residual"]
    cor = [f"cor {r.group}: {r.var1}, {r.var2}" for r in vc.itertuples() if not pd.isna(r.var2)]
    assert list(s.index) == list(sleep_reml.fixef.index) + sd + cor + ["sigma"]
    assert list(s.columns) == ["mean", "sd", "2.5%", "97.5%", "r_hat", "ess_bulk", "ess_tail"]
    assert (s["r_hat"] < 1.05).all() and (s["ess_bulk"] > 100).all()
    dr = sleep_post.draws
    assert dr.shape == (800, 2 + len(s)) and list(dr.columns[:2]) == ["chain", "draw"]
    assert sleep_post.divergences == 0
    # the posterior mean of the uncentred intercept is the mean of α̃ − x̄·β over the draws
    x̄ = load_csv("sleepstudy.csv")["Days"].mean()
    alpha_c = np.asarray(sleep_post.samples["alpha"]).ravel()
    assert s.loc["Intercept", "mean"] == pytest.approx(np.mean(alpha_c - x̄ * sleep_post["Days"].ravel()), rel=1e-12)


def test_sleepstudy_posterior_means_near_reml(sleep_post, sleep_reml):
    s = sleep_post.summary()
    se = sleep_reml.se
    for name in sleep_reml.fixef.index:
        assert abs(s.loc[name, "mean"] - sleep_reml.fixef[name]) < 0.25 * se[name], name


def test_posterior_predictive_and_arviz(sleep_post):
    y = load_csv("sleepstudy.csv")["Reaction"].to_numpy()
    yrep = sleep_post.posterior_predictive(n=200, seed=2)
    assert yrep.shape == (200, len(y))
    # conditional on the subjects' effects: replicated subject means track the observed ones
    subj = load_csv("sleepstudy.csv")["Subject"].to_numpy()
    for s_ in np.unique(subj)[:5]:
        m = subj == s_
        assert abs(yrep[:, m].mean() - y[m].mean()) < 3 * sleep_post.summary().loc["sigma", "mean"] / np.sqrt(m.sum())
    with pytest.raises(JaxmixError, match="n must be"):
        sleep_post.posterior_predictive(n=0)
    pytest.importorskip("arviz")
    idata = sleep_post.to_arviz()
    assert idata.posterior["Days"].shape == (2, 400)


def _simulated_lmm(seed=0, groups=60, per=12):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=groups * per)
    y = 2.0 + 0.5 * x + rng.normal(0, 0.8, groups)[g] + rng.normal(0, 1.0, groups * per)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{k}" for k in g]})


def test_data_dominate_posterior_means_within_a_fraction_of_an_se():
    d = _simulated_lmm()
    post = jaxmix.sample("y ~ x + (1 | g)", d, chains=2, draws=500, warmup=400, seed=3, progress=False)
    ml = jaxmix.fit("y ~ x + (1 | g)", d)
    s = post.summary()
    for name in ml.fixef.index:
        assert abs(s.loc[name, "mean"] - ml.fixef[name]) < 0.2 * ml.se[name]
    vc = ml.varcorr
    # SDs: posterior mean within 0.3 posterior SD of the REML estimate (the data dominate the prior)
    assert abs(s.loc["sd g: Intercept", "mean"] - vc["sdcor"][0]) < 0.3 * s.loc["sd g: Intercept", "sd"]
    assert abs(s.loc["sigma", "mean"] - ml.sigma) < 0.3 * s.loc["sigma", "sd"]


def test_logistic_glmm_agrees_with_laplace():
    rng = np.random.default_rng(4)
    groups, per = 40, 25
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=groups * per)
    eta = -0.3 + 0.8 * x + rng.normal(0, 0.7, groups)[g]
    d = pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))), "x": x, "g": g.astype(str)})
    post = jaxmix.sample("y ~ x + (1 | g)", d, family="binomial", chains=2, draws=400, warmup=400, seed=5,
                         progress=False)
    ml = jaxmix.fit("y ~ x + (1 | g)", d, family="binomial")
    s = post.summary()
    assert "sigma" not in s.index and post.integrated is False
    for name in ml.fixef.index:
        assert abs(s.loc[name, "mean"] - ml.fixef[name]) < 0.25 * ml.se[name], name
    yrep = post.posterior_predictive(n=20)
    assert set(np.unique(yrep)) <= {0.0, 1.0}


def test_binomial_trials():
    cb = load_csv("cbpp.csv").astype({"period": str})
    post = jaxmix.sample("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb, family="binomial",
                         chains=1, draws=200, warmup=200, progress=False)
    ml = jaxmix.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb, family="binomial")
    s = post.summary()
    assert list(s.index) == list(ml.fixef.index) + ["sd herd: Intercept"]
    yrep = post.posterior_predictive(n=10)
    assert (yrep <= cb["size"].to_numpy()).all() and (yrep >= 0).all()
    # the period effects: within 0.5 SE of Laplace (200 draws, a prior on the coefficients)
    assert np.all(np.abs(s["mean"].to_numpy()[1:4] - ml.fixef.to_numpy()[1:4]) < 0.5 * ml.se.to_numpy()[1:4])


def test_strong_priors_override_the_data():
    d = load_csv("sleepstudy.csv")
    post = jaxmix.sample("Reaction ~ Days + (1 | Subject)", d, chains=1, draws=200, warmup=200, progress=False,
                         priors={"fixef": {"normal": [-5.0, 0.01]}, "sigma": dist.Exponential(1.0),
                                 "sd": {"half_normal": [40.0]}, "intercept": {"normal": [300, 100]}})
    assert post.summary().loc["Days", "mean"] == pytest.approx(-5.0, abs=0.05)
    assert post.priors["fixef"] == "{'normal': [-5.0, 0.01]}"
    per = jaxmix.sample("Reaction ~ Days + (1 | Subject)", d, chains=1, draws=200, warmup=200, progress=False,
                        priors={"fixef": {"Days": {"normal": [30.0, 0.01]}}})
    assert per.summary().loc["Days", "mean"] == pytest.approx(30.0, abs=0.05)


@pytest.mark.parametrize("priors, match", [
    ({"fixed": {"normal": [0, 1]}}, "unknown prior class 'fixed'.*did you mean 'fixef'"),
    ({"fixef": {"norml": [0, 1]}}, "unknown prior distribution 'norml'.*did you mean 'normal'"),
    ({"fixef": {"normal": [0]}}, "'normal' for 'fixef' takes 2 finite number"),
    ({"sd": {"half_normal": [-1]}}, "scale must be positive"),
    ({"sigma": {"normal": [0, 1]}}, "'sigma' must be on positive values"),
    ({"sd": {"lkj": 2}}, "'lkj' is for correlations"),
    ({"cor": {"normal": [0, 1]}}, "prior for 'cor' must be LKJ"),
    ({"fixef": {"Dayz": {"normal": [0, 1]}}}, "not a fixed effect.*did you mean 'Days'"),
    ({"fixef": "normal(0, 1)"}, "must be a numpyro distribution or one spec"),
    ({"fixef": dist.Normal(jnp.zeros(3), 1.0)}, "batch shape"),
    ([1, 2], "priors must be a dict"),
])
def test_bad_prior_specs_are_clear_errors(priors, match):
    d = load_csv("sleepstudy.csv")
    with pytest.raises(JaxmixError, match=match):
        jaxmix.sample("Reaction ~ Days + (Days | Subject)", d, priors=priors, progress=False)


def test_bad_arguments_are_clear_errors():
    d = load_csv("sleepstudy.csv")
    with pytest.raises(JaxmixError, match="chains must be"):
        jaxmix.sample("Reaction ~ Days + (1 | Subject)", d, chains=0)
    with pytest.raises(JaxmixError, match="chain_method"):
        jaxmix.sample("Reaction ~ Days + (1 | Subject)", d, chain_method="threads")
    with pytest.raises(JaxmixError, match="binomial response 'Reaction'"):
        jaxmix.sample("Reaction ~ Days + (1 | Subject)", d, family="binomial")
    with pytest.raises(JaxmixError, match="Dayz"):
        jaxmix.sample("Reaction ~ Dayz + (1 | Subject)", d)


def test_import_without_numpyro_and_the_error_naming_the_extra():
    code = ("import sys; sys.modules['numpyro'] = None\n"
            "import jaxmix, pandas as pd\n"
            "try:\n    jaxmix.sample('y ~ 1', pd.DataFrame({'y': [1.0, 2.0]}))\n"
            "except jaxmix.JaxmixError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert "ERR" in out.stdout and "jaxmix[bayes]" in out.stdout, out.stderr[-2000:]


# ---- simulation-based calibration (Talts et al. 2018) -------------------------------------------------
def _sbc_ranks(family: str, reps: int, seed: int, groups=6, per=6, draws=1000, thin=10, warmup=500):
    """Ranks of the true (prior-drawn) parameters among thinned posterior draws, per parameter."""
    rng = np.random.default_rng(seed)
    n = groups * per
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=n)
    x -= x.mean()  # centred: the sampled intercept is the intercept
    priors = {"intercept": {"normal": [0, 1]}, "fixef": {"normal": [0, 1]}, "sd": {"half_normal": [1]},
              "sigma": {"exponential": [1]}}
    if family != "gaussian":
        priors.pop("sigma")

    def simulate():
        a, b, tau = rng.normal(), rng.normal(), abs(rng.normal())
        eta = a + b * x + rng.normal(0, tau, groups)[g]
        if family == "gaussian":
            s = rng.exponential()
            y = eta + rng.normal(0, s, n)
            truth = [a, b, tau, s]
        else:
            y = rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float)
            truth = [a, b, tau]
        return pd.DataFrame({"y": y, "x": x, "g": g.astype(str)}), truth

    sims = [simulate() for _ in range(reps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        posts = sample_replicates("y ~ x + (1 | g)", [d for d, _ in sims], family=family, priors=priors, chains=1,
                                  draws=draws, warmup=warmup, seed=seed)
    ranks = []
    for post, (_, truth) in zip(posts, sims):
        v = post.values[0, ::thin, :]
        ranks.append([(v[:, j] < t).sum() for j, t in enumerate(truth)])
    return np.asarray(ranks), draws // thin


def _uniform_p(ranks, L, bins=5):
    """Chi-square p-values of the ranks (0..L) in equal bins, per parameter."""
    edges = np.linspace(0, L + 1, bins + 1)
    out = []
    for j in range(ranks.shape[1]):
        counts, _ = np.histogram(ranks[:, j], bins=edges)
        out.append(stats.chisquare(counts).pvalue)
    return np.asarray(out)


def test_sbc_quick_random_intercept():
    ranks, L = _sbc_ranks("gaussian", reps=30, seed=11, draws=500, thin=5, warmup=300)
    p = _uniform_p(ranks, L)
    assert (p > 1e-3).all(), p


def test_sbc_quick_logistic():
    ranks, L = _sbc_ranks("binomial", reps=30, seed=12)
    p = _uniform_p(ranks, L)
    assert (p > 1e-3).all(), p


@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_sbc_ranks_uniform(family):
    ranks, L = _sbc_ranks(family, reps=100, seed=21, draws=2000, thin=20)
    p = _uniform_p(ranks, L, bins=10)
    assert (p > 1e-3).all(), p
    # and the pooled ranks by Kolmogorov-Smirnov against the uniform distribution
    assert stats.kstest(((ranks + 0.5) / (L + 1)).ravel(), "uniform").pvalue > 1e-3


def test_default_priors_are_scaled_to_the_data():
    from jaxmix.bayes.priors import default_priors

    d = load_csv("sleepstudy.csv")
    pri = default_priors(build_spec("Reaction ~ Days + (Days | Subject)", d))
    sy, sx = d["Reaction"].std(), d["Days"].std()
    assert float(pri.intercept.loc) == pytest.approx(d["Reaction"].mean(), rel=1e-12)
    assert float(pri.intercept.scale) == pytest.approx(2.5 * sy, rel=1e-12)
    assert float(pri.slopes.scale[0]) == pytest.approx(2.5 * sy / sx, rel=1e-12)
    rms_days = np.sqrt(np.mean(d["Days"] ** 2))
    np.testing.assert_allclose(np.asarray(pri.sd[0].scale), [2.5 * sy, 2.5 * sy / rms_days], rtol=1e-12)
    assert float(pri.cor[0].concentration) == 2.0
    assert float(pri.sigma.rate) == pytest.approx(1 / sy, rel=1e-12)
    cb = load_csv("cbpp.csv")
    glmm = default_priors(build_spec("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb,
                                     family="binomial"))
    assert float(glmm.intercept.loc) == 0.0 and float(glmm.intercept.scale) == 2.5 and glmm.sigma is None
