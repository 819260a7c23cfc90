"""Satterthwaite df of structured fits (``variance=``, ``correlation=``): jaxmix differentiates
Φ(ϑ) = σ²(L_X L_X′)⁻¹ and the REML deviance exactly; checked here against

* an independent dense computation in numpy: V(ϑ) = σ_b² ZZ′ + σ² diag(δ²) (108 x 108), the REML
  log-likelihood, its Hessian and ∂(l′Φl)/∂ϑ by central differences, ν = 2(l′Φl)²/(g′A g), A = (−H)⁻¹;
* emmeans' Satterthwaite for nlme fits (tests/data/structured_df.json, generator
  tests/data/export_structured_df.R), which uses nlme's finite-difference apVar: agreement to 1 %.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxmix
from jaxmix.inference.wald import contrast_df

DATA = Path(__file__).parent / "data"
REF = json.loads((DATA / "structured_df.json").read_text())
L = np.array([[1.0, 11.0, 0.0], [1.0, 11.0, 1.0]])  # the EMMs of Male and Female at age 11


def _orthodont():
    d = pd.read_csv(DATA / "Orthodont.csv")
    d["Sex"] = pd.Categorical(d["Sex"], ["Male", "Female"])
    return d


def test_varident_satterthwaite_df_equals_a_dense_computation():
    d = _orthodont()
    r = jaxmix.fit("distance ~ age + Sex + (1 | Subject)", d, variance="ident(Sex)")
    X, y = r.design.X, r.design.y
    n, p = X.shape
    g = pd.factorize(d["Subject"])[0]
    ZZ = (g[:, None] == g[None, :]).astype(float)
    male = (d["Sex"] == "Male").to_numpy()

    def V(t):
        sb2, s2, ratio = t
        return sb2 * ZZ + np.diag(s2 * np.where(male, ratio**2, 1.0))

    def reml(t):
        Vi = np.linalg.inv(V(t))
        A = X.T @ Vi @ X
        e = y - X @ np.linalg.solve(A, X.T @ Vi @ y)
        return -0.5 * (np.linalg.slogdet(V(t))[1] + np.linalg.slogdet(A)[1] + e @ Vi @ e + (n - p) * np.log(2 * np.pi))

    sd = r.extra["structure"]["sd_by_stratum"]
    t0 = np.array([r.varcorr["vcov"][0], sd["Female"] ** 2, sd["Male"] / sd["Female"]])
    assert reml(t0) == pytest.approx(r.loglik, abs=1e-8)
    h = 1e-4 * t0
    E = np.diag(h)
    H = np.array([[(reml(t0 + E[i] + E[j]) - reml(t0 + E[i] - E[j]) - reml(t0 - E[i] + E[j])
                    + reml(t0 - E[i] - E[j])) / (4 * h[i] * h[j]) for j in range(3)] for i in range(3)])
    A = np.linalg.inv(-H)
    rows = np.vstack([L, np.eye(3)[1:]])
    dense = []
    for l in rows:
        f = lambda t: l @ np.linalg.inv(X.T @ np.linalg.solve(V(t), X)) @ l  # noqa: E731
        gr = np.array([(f(t0 + E[i]) - f(t0 - E[i])) / (2 * h[i]) for i in range(3)])
        dense.append(2 * f(t0) ** 2 / (gr @ A @ gr))
    np.testing.assert_allclose(contrast_df(r, rows, "satterthwaite"), dense, rtol=1e-5)
    np.testing.assert_allclose(r.coef_table()["df"].iloc[1:], dense[2:], rtol=1e-5)  # the default df


@pytest.mark.parametrize("key,kw,formula", [
    ("varident_lme", dict(variance="ident(Sex)"), "distance ~ age + Sex + (1 | Subject)"),
    ("ar1_lme", dict(correlation="ar1(Subject)"), "distance ~ age + Sex + (1 | Subject)"),
    ("cs_gls", dict(correlation="cs(Subject)"), "distance ~ age + Sex")])
def test_satterthwaite_df_near_emmeans(key, kw, formula):
    ref = REF[key]
    r = jaxmix.fit(formula, _orthodont(), **kw)
    assert r.loglik == pytest.approx(ref["loglik"], abs=1e-4)
    np.testing.assert_allclose(np.sqrt(np.diag(L @ r.vcov_beta @ L.T)), ref["se"], rtol=1e-4)
    np.testing.assert_allclose(contrast_df(r, L, "satterthwaite"), ref["df"], rtol=1e-2)
