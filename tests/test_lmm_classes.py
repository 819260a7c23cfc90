"""The one-term Gaussian criterion by classes of levels with equal Z'WZ blocks
(jaxmix.core.lmm_classes) and the sweep path that uses it (jaxmix.fitting.lmm, k > 1 outcomes).

References: lme4 fits of three outcomes on an unbalanced sleepstudy whose 18 subjects fall into three
classes (tests/data/export_sweep_classes.R -> sweep_classes_reference.json), the blocked criterion of
jaxmix.core.lmm, and jaxmix.fit outcome by outcome.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import jaxmix
from jaxmix.core import lmm_classes
from jaxmix.core.crossprod import CrossProducts, Index
from jaxmix.core.lmm import objective
from jaxmix.fitting import lmm as fitting_lmm
from jaxmix.spec.covariance import theta_layout
from jaxmix.spec.design import build_design
from jaxmix.spec.formula import parse_formula

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "sweep_classes_reference.json").read_text())
blocked_jit = jax.jit(objective, static_argnames=("layout", "tl", "p", "reml"))
classes_jit = jax.jit(lmm_classes.objective_classes, static_argnames=("p", "reml", "tl"))


def unbalanced() -> pd.DataFrame:
    """sleepstudy without day 9 of subjects 1-6 and day 0 of subjects 7-9 (as the R script)."""
    d = pd.read_csv(DATA / "sleepstudy.csv")
    subj = np.sort(d.Subject.unique())
    drop = (d.Subject.isin(subj[:6]) & (d.Days == 9)) | (d.Subject.isin(subj[6:9]) & (d.Days == 0))
    d = d[~drop].reset_index(drop=True)
    return d.assign(y1=d.Reaction, y2=d.Reaction * (1 + d.Days / 20), y3=100 * np.log(d.Reaction) + 2 * d.Days)


def blocks(d: pd.DataFrame, ys: list[str]):
    des = build_design(parse_formula("~ Days + (Days | Subject)"), d, require_response=False)
    t = des.terms
    Y = d[ys].to_numpy(dtype=float)
    layout, idx, _, shared, per = fitting_lmm.outcome_blocks([x.codes for x in t], [x.nlevels for x in t],
                                                             [x.Z for x in t], des.X, Y, np.ones_like(Y))
    return layout, idx, shared, per, t[0].nlevels


def test_levels_fall_into_classes_of_equal_blocks():
    _, _, shared, _, nl = blocks(unbalanced(), ["y1"])
    A11c, cnt, cls = lmm_classes.level_classes(shared[0][0, :nl])
    assert sorted(cnt.tolist()) == [3.0, 6.0, 9.0]
    assert np.array_equal(A11c[cls], shared[0][0, :nl])
    _, _, shared, _, nl = blocks(pd.read_csv(DATA / "sleepstudy.csv").assign(y1=lambda x: x.Reaction), ["y1"])
    assert lmm_classes.level_classes(shared[0][0, :nl])[1].tolist() == [18.0]  # balanced: one class


@pytest.mark.parametrize("reml", [True, False])
def test_criterion_by_classes_equals_the_blocked_one_and_lme4(reml):
    ys = ["y1", "y2", "y3"]
    layout, idx, shared, per, nl = blocks(unbalanced(), ys)
    tl = theta_layout(layout.q)
    A11c, cnt, cls = lmm_classes.level_classes(shared[0][0, :nl])
    S = lmm_classes.class_tails(per[0][:, :nl], cls, cnt.shape[0])
    n = float(REF["nobs"])
    for j, y in enumerate(ys):
        xp = CrossProducts(shared[0][0], shared[1][0], per[0][j], shared[2][0], per[1][j], per[2][j])
        th_ref = np.asarray(REF["fits"][f"{y}_{'REML' if reml else 'ML'}"]["theta"])
        for th in (th_ref, np.array([1.0, 0.0, 1.0]), np.array([0.3, -0.2, 0.05])):
            th = jnp.asarray(th)
            blocked = float(blocked_jit(th, xp, Index(*idx), layout, tl, n, 2, 0.0, reml))
            by_class, LTT = classes_jit(th, jnp.asarray(A11c), jnp.asarray(cnt), jnp.asarray(S[j]),
                                                          jnp.asarray(per[2][j]), n, 2, 0.0, reml, tl)
            assert float(by_class) == pytest.approx(blocked, rel=1e-11)  # rounding of r² (n − p)·log r²
        # at lme4's θ̂ the criterion is lme4's −2 log-likelihood
        ref = REF["fits"][f"{y}_{'REML' if reml else 'ML'}"]
        crit, LTT = classes_jit(jnp.asarray(th_ref), jnp.asarray(A11c), jnp.asarray(cnt),
                                                  jnp.asarray(S[j]), jnp.asarray(per[2][j]), n, 2, 0.0, reml, tl)
        assert float(crit) == pytest.approx(-2.0 * ref["loglik"], rel=1e-9)
        LTT = np.asarray(LTT)  # β̂ = L_X⁻ᵀ L_TT[p, :p]′ at lme4's θ̂
        beta = np.linalg.solve(LTT[:2, :2].T, LTT[2, :2])
        np.testing.assert_allclose(beta, ref["fixef"], rtol=1e-7)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_sweep_by_classes_matches_lme4_and_fit_one_by_one(method, monkeypatch):
    d = unbalanced()
    used = []
    tails = fitting_lmm.class_tails
    monkeypatch.setattr(fitting_lmm, "class_tails", lambda *a: used.append(1) or tails(*a))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sw = jaxmix.fit_many("~ Days + (Days | Subject)", d, outcomes=["y1", "y2", "y3"], method=method)
    assert used, "the sweep did not take the path by classes"
    assert (sw.status_ == 0).all()
    for j, y in enumerate(["y1", "y2", "y3"]):
        ref = REF["fits"][f"{y}_{method}"]
        assert sw.loglik_[j] == pytest.approx(ref["loglik"], abs=1e-6)
        np.testing.assert_allclose(sw.beta[j], ref["fixef"], rtol=1e-6)
        np.testing.assert_allclose(sw.se.to_numpy()[j], ref["se"], rtol=1e-5)
        np.testing.assert_allclose(sw.theta_[j], ref["theta"], atol=2e-4)
        assert sw.sigma_[j] == pytest.approx(ref["sigma"], rel=1e-5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one = jaxmix.fit(f"{y} ~ Days + (Days | Subject)", d, method=method)
        assert sw.loglik_[j] == pytest.approx(one.loglik, abs=1e-8)
        res = sw[y]  # conditional modes and variances solved on first use
        for a, b in zip(res.b, one.b):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res.condvar("Subject"), one.condvar("Subject"), rtol=1e-5)


@pytest.mark.parametrize("reml", [True, False])
def test_closed_form_gradient_equals_automatic_differentiation(reml):
    layout, idx, shared, per, nl = blocks(unbalanced(), ["y1", "y3"])
    tl = theta_layout(layout.q)
    A11c, cnt, cls = (jnp.asarray(a) for a in lmm_classes.level_classes(shared[0][0, :nl]))
    S = lmm_classes.class_tails(per[0][:, :nl], np.asarray(cls), cnt.shape[0])
    TH = np.array([[1.0, 0.0, 1.0], [0.7, -0.3, 0.2], [2.0, 0.5, 0.01]] * 2)  # 3 points x 2 outcomes
    SJ, CJ = jnp.asarray(np.repeat(S, 3, axis=0)), jnp.asarray(np.repeat(per[2], 3, axis=0))

    def both(th, s, c):
        crit = lambda z: lmm_classes.objective_classes(z, A11c, cnt, s, c, 171.0, 2, 1.5, reml, tl)[0]  # noqa: E731
        f0, g0 = jax.value_and_grad(crit)(th)
        f1, g1, _ = lmm_classes.value_grad_classes(th, A11c, cnt, s, c, 171.0, 2, 1.5, reml, tl)
        return f0, g0, f1, g1

    f0, g0, f1, g1 = (np.asarray(a) for a in jax.jit(jax.vmap(both))(jnp.asarray(TH), SJ, CJ))
    np.testing.assert_allclose(f1, f0, rtol=1e-12)
    np.testing.assert_allclose(g1, g0, rtol=1e-8, atol=1e-9 * np.max(np.abs(g0)))


def test_moment_start_is_the_reml_optimum_of_a_balanced_design():
    """Balanced data: the ANOVA estimates are REML's optimum (here lme4's θ̂ of sleepstudy)."""
    d = pd.read_csv(DATA / "sleepstudy.csv").assign(y1=lambda x: x.Reaction)
    layout, idx, shared, per, nl = blocks(d, ["y1"])
    tl = theta_layout(layout.q)
    theta = fitting_lmm.moment_start(shared[0][0, :nl], per[0][:, :nl, 2, :], per[2][:, 2, 2], [180.0], tl)
    ref = json.loads((DATA / "lme4_reference.json").read_text())["cases"]["sleepstudy_slope"]["fits"]["REML"]
    np.testing.assert_allclose(theta[0], ref["theta"], rtol=1e-5, atol=1e-6)
    # an outcome without group effects (Ω̂ not inside the parameter space) gets no start
    rng = np.random.default_rng(3)
    d2 = d.assign(y1=rng.normal(size=len(d)))
    layout, idx, shared, per, nl = blocks(d2, ["y1"])
    theta = fitting_lmm.moment_start(shared[0][0, :nl], per[0][:, :nl, 2, :], per[2][:, 2, 2], [180.0], tl)
    assert np.isnan(theta).all()


def test_sweep_of_an_unbalanced_design_starts_from_moments_and_matches_fit(monkeypatch):
    """Every subject its own class (a jittered covariate): the blocked program, from the moment starts
    where they lie inside the parameter space; the optimum is jaxmix.fit's (from Λ = I)."""
    d = pd.read_csv(DATA / "sleepstudy.csv")
    d = d.assign(t=d.Days + np.random.default_rng(5).normal(0, 0.3, len(d)))
    rng = np.random.default_rng(6)
    Y = d.Reaction.to_numpy()[:, None] + rng.normal(0, 20, (len(d), 4))
    used = []
    tails = fitting_lmm.class_tails
    monkeypatch.setattr(fitting_lmm, "class_tails", lambda *a: used.append(1) or tails(*a))
    starts = []
    moments = fitting_lmm.moment_start
    monkeypatch.setattr(fitting_lmm, "moment_start", lambda *a: starts.append(moments(*a)) or starts[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sw = jaxmix.fit_many("~ t + (t | Subject)", d, Y=Y)
        ones = [jaxmix.fit("y ~ t + (t | Subject)", d.assign(y=Y[:, j])) for j in range(Y.shape[1])]
    assert not used and starts and np.isfinite(starts[0]).all(axis=1).any()
    for j, one in enumerate(ones):
        assert (sw.status_[j] == 0) == one.converged
        assert sw.loglik_[j] == pytest.approx(one.loglik, abs=1e-8)
        np.testing.assert_allclose(sw.beta[j], one.beta, rtol=1e-7)
