"""Parametric bootstrap through the batched sweep path: reproducible by seed, chunked with a progress
bar, percentile intervals for every parameter; LMM, GLMM (binomial with trials) and a plain GLM."""
import numpy as np
import pandas as pd
import pytest

import jaxmix
from jaxmix import progress as prog
from jaxmix.api.bootstrap import BootstrapResult, simulate

from conftest import load_csv


@pytest.fixture(scope="module")
def boot(sleep_reml):
    return jaxmix.bootstrap(sleep_reml, n=40, seed=7, batch_size=20, progress=False)


def test_reproducible_by_seed(boot, sleep_reml, monkeypatch, capsys):
    monkeypatch.setattr(prog, "_tqdm", lambda: None)  # the text bar: chunks of 20 -> a bar on stderr
    again = sleep_reml.bootstrap(n=40, seed=7, batch_size=20)
    pd.testing.assert_frame_equal(again.samples, boot.samples)
    err = capsys.readouterr().err
    assert "bootstrap: [" in err and "40/40 replicate" in err
    other = jaxmix.bootstrap(sleep_reml, n=40, seed=8, batch_size=20, progress=False)
    assert not np.allclose(other.samples.to_numpy(), boot.samples.to_numpy())


def test_intervals_for_every_parameter(boot, sleep_reml):
    assert isinstance(boot, BootstrapResult) and boot.n == 40 and boot.n_failed == 0
    names = ["Intercept", "Days", "sd(Intercept|Subject)", "sd(Days|Subject)", "cor(Intercept,Days|Subject)",
             "sigma"]
    assert list(boot.samples.columns) == names
    ci = boot.ci(0.9)
    assert list(ci.columns) == ["estimate", "lower", "upper"] and list(ci.index) == names
    assert (ci["lower"] <= ci["upper"]).all()
    np.testing.assert_allclose(ci["estimate"].iloc[:2], sleep_reml.beta)
    assert ci.loc["sigma", "estimate"] == pytest.approx(sleep_reml.sigma)
    # the estimates lie inside their 90% intervals, and the bootstrap SEs are near the model's
    inside = (ci["lower"] <= ci["estimate"]) & (ci["estimate"] <= ci["upper"])
    assert inside.iloc[[0, 1, 2, 3, 5]].all()
    assert boot.se["Days"] == pytest.approx(sleep_reml.se["Days"], rel=0.4)
    assert "percentile intervals" in boot.summary()


def test_simulated_responses_follow_the_model(sleep_reml):
    y = simulate(sleep_reml, 400, seed=1)
    assert y.shape == (180, 400)
    fitted0 = sleep_reml.design.X @ sleep_reml.beta
    # marginal mean Xβ and variance σ² + var(Zb) (about 25.6² + 24.7² at day 0)
    assert np.mean(y, axis=1) == pytest.approx(fitted0, abs=15.0)  # 4 SE of a mean of 400 at day 9
    assert abs(np.mean(y - fitted0[:, None])) < 4.0
    day0 = sleep_reml.design.X[:, 1] == 0
    assert np.sqrt(np.var(y[day0], axis=1).mean()) == pytest.approx(np.hypot(25.59, 24.74), rel=0.15)
    np.testing.assert_allclose(simulate(sleep_reml, 3, seed=1, start=2), y[:, 2:5], rtol=1e-12)  # one key each


def test_glmm_and_glm_bootstrap():
    cbpp = load_csv("cbpp.csv").astype({"period": str, "herd": str})
    res = jaxmix.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    bs = jaxmix.bootstrap(res, n=12, seed=3, progress=False)
    sims = simulate(res, 5, seed=3)
    assert (sims >= 0).all() and (sims <= cbpp["size"].to_numpy()[:, None]).all()
    assert list(bs.samples.columns) == ["Intercept", "period[T.2]", "period[T.3]", "period[T.4]", "sd(Intercept|herd)"]
    assert bs.n_failed == 0 and (bs.ci()["lower"] < bs.ci()["upper"]).all()
    again = jaxmix.bootstrap(res, n=12, seed=3, progress=False)
    pd.testing.assert_frame_equal(again.samples, bs.samples)
    glm = jaxmix.fit("cbind(incidence, size - incidence) ~ period", cbpp, family="binomial")
    gb = jaxmix.bootstrap(glm, n=6, seed=1, progress=False)
    assert list(gb.samples.columns) == ["Intercept", "period[T.2]", "period[T.3]", "period[T.4]"]
    assert gb.n_failed == 0


def test_gamma_glmm_bootstrap_refits_the_shape():
    """Gamma(log) GLMM (tests/data/gamma_sim.csv, simulated by export_families_shared.R with shape 3,
    β = (1, 0.5), SD 0.4): replicates drawn at the fitted shape and refitted in one batched program.
    The replicates' means sit within Monte-Carlo error of the estimates they were drawn from, and their
    SDs are near the standard errors from the observed information (an independent computation)."""
    g = load_csv("gamma_sim.csv")
    res = jaxmix.fit("y ~ x + (1 | g)", g, family="gamma", link="log")
    bs = jaxmix.bootstrap(res, n=24, seed=2, progress=False)
    assert list(bs.samples.columns) == ["Intercept", "x", "sd(Intercept|g)", "Gamma shape"]
    assert bs.n_failed == 0
    s = bs.samples
    for col, est, se in [("Intercept", res.beta[0], res.se.iloc[0]), ("x", res.beta[1], res.se.iloc[1]),
                         ("Gamma shape", res.dispersion, res.dispersion_table["se"].iloc[0])]:
        assert abs(s[col].mean() - est) < 4 * se / np.sqrt(len(s))
        assert s[col].std() == pytest.approx(se, rel=0.5)
    assert bs.estimate["Gamma shape"] == res.dispersion and abs(res.dispersion - 3.0) < 3 * s["Gamma shape"].std()


def test_structured_bootstrap_refits_the_structures():
    """varIdent by Sex (nlme's Orthodont model): replicates from simulate_structured, each refitted with
    the same residual structure; the replicates' means are within Monte-Carlo error of the estimates they
    were drawn from and their SDs near the model's standard errors (slow: one structured fit each)."""
    d = load_csv("Orthodont.csv")
    res = jaxmix.fit("distance ~ age + Sex + (1 | Subject)", d, variance="ident(Sex)")
    bs = jaxmix.bootstrap(res, n=10, seed=4, progress=False)
    assert list(bs.samples.columns) == ["Intercept", "age", "Sex[T.Male]", "var(Intercept|Subject)", "sigma^2",
                                        "SD ratio Male/Female|Residual"]
    assert bs.n_failed == 0
    tab = res.extra["structure"]["table"]
    ests = np.concatenate([res.beta, tab["estimate"]])
    ses = np.concatenate([res.se, tab["se"]])
    s = bs.samples.to_numpy()
    assert np.all(np.abs(s.mean(axis=0) - ests) < 4.5 * ses / np.sqrt(len(s)))
    np.testing.assert_allclose(s[:, 1].std(ddof=1), res.se["age"], rtol=0.6)
    again = jaxmix.bootstrap(res, n=3, seed=4, progress=False)
    np.testing.assert_allclose(again.samples.to_numpy(), s[:3], rtol=1e-10)
