"""Inference for fitted models: denominator df, t/F/Wald tests, Type III tables, covariance-parameter SEs,
ICC and R² (confidence intervals and profiles: :mod:`jaxmix.inference.intervals`).

Notation: β̂ with Φ = Var(β̂) = σ²(L_X L_X′)⁻¹ (``res.vcov_beta``); ϑ = (θ, σ) lmerTest's
variance-parameter vector; d(ϑ) the (RE)ML deviance with σ not profiled,

    d(θ, σ) = log|L_Z|² + r²(θ)/σ² + n log(2πσ²) − log|W|  [+ log|L_X|² − p log(2πσ²)  for REML]

(r²(θ) the penalised residual sum of squares at β̂(θ); minimising over σ gives the profiled criterion of
:mod:`jaxmix.core.lmm`).  Every derivative below is exact (JAX autodiff), not a finite difference.

* Satterthwaite (lmerTest): A = 2 H⁻¹ with H = ∇²d(ϑ̂) (Moore–Penrose, eigenvalues ≤ 1e-8 dropped);
  for a contrast l, v = l′Φl, g = ∇_ϑ (l′Φ(ϑ)l) and ν = 2v² / (g′Ag).  For a q-row L, lmerTest's
  recipe: rotate to the eigenvectors of LΦL′, one ν_m per row, and
  ν = 2E/(E − q) with E = Σ ν_m/(ν_m − 2) (ν = 2 if some ν_m ≤ 2).
* Kenward–Roger (pbkrtest): see :func:`kenward_roger_parts`; dense in the rows (O(n³) time, O(n²)
  memory) only when there are more than ``KR_MAX_RE_COLUMNS`` random-effect columns; otherwise Σ⁻¹ through
  the Woodbury identity (:mod:`jaxmix.inference.kr_structured`), no n x n matrix.
* Containment (SAS DDFM=CONTAIN): the smallest rank contribution among the random effects that
  contain the fixed effect's variables, else N − rank[X Z].
* Between-within (SAS DDFM=BW): with S levels of the subject factor (the grouping factor with the fewest
  levels), between-subject columns (constant within every subject) get S − rank(X_between), the others
  N − S − (rank X − rank X_between).
* Residual: N − rank X.  Asymptotic: ν = ∞ (z and χ² tests; the GLMM default).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.scipy.linalg import solve_triangular

from ..core.blocked import factorize, logdets
from ..spec.covariance import ThetaLayout, lambdas, theta_layout
from ..errors import JaxmixError, JaxmixWarning
from ..spec.formula import split_top
from ..results.mixed import register_extension
from ..dists import chi2_sf, f_sf, norm_sf, t_test

__all__ = ["coef_table", "wald_test", "contrast_matrix", "type3_anova", "type3_contrasts",
           "covparm_table", "vcov_covparms", "icc", "r2", "WaldTest",
           "satterthwaite_df", "kenward_roger_parts", "containment_df", "between_within_df", "check_ddf_size",
           "is_lmm", "lmm_state", "LmmState", "satterthwaite_parts", "satt_hessian", "covbeta", "lmm_program",
           "cache_get", "cache_put",
           "ddf_method", "contrast_df", "contrast_vcov", "fixed_term_columns", "kenward_roger_df"]

KR_MAX_RE_COLUMNS = 3000  # Kenward–Roger's structured pieces: dense m x m in the random-effect columns
KR_MAX_ROWS = 3000  # beyond KR_MAX_RE_COLUMNS, the dense n x n computation: O(n³) time, O(n²) memory
RANK_MAX_COLUMNS = 6000  # containment df: dense Gram matrix of [X Z]

_DDF = {"satterthwaite": "satterthwaite", "satt": "satterthwaite", "kenward-roger": "kenward-roger",
        "kenward_roger": "kenward-roger", "kenwardroger": "kenward-roger", "kr": "kenward-roger",
        "containment": "containment", "contain": "containment", "between-within": "between-within",
        "between_within": "between-within", "betweenwithin": "between-within", "bw": "between-within",
        "residual": "residual", "asymptotic": "asymptotic", "z": "asymptotic", "normal": "asymptotic",
        "wald": "asymptotic"}


def is_lmm(res) -> bool:
    return res.family == "gaussian" and res.method in ("REML", "ML") and res.is_mixed


def cache_get(res, key):
    """A value cached on ``res.extra`` by this module, if it was computed for this very fit.

    ``dataclasses.replace`` copies share ``extra``; the stamp (design object, θ, σ, β, method) keeps
    one fit's derivatives from being served to another.
    """
    got = res.extra.get(key)
    return got[1] if got is not None and got[0] == _stamp(res) else None


def cache_put(res, key, value):
    res.extra[key] = (_stamp(res), value)
    return value


def _stamp(res):
    return (id(res.design), np.asarray(res.theta).tobytes(), float(res.sigma), np.asarray(res.beta).tobytes(),
            res.method)


def _ddf_method(res, ddf) -> str:
    from ..spec.structinfo import refuse_structured, structure_info

    if ddf is None and structure_info(res) is not None:  # Satterthwaite in the structures' parameters; gls: n − p
        return "satterthwaite" if res.is_mixed else "residual"
    if ddf is None:
        if is_lmm(res):
            return "satterthwaite"
        return "residual" if res.method == "OLS" else "asymptotic"
    key = _DDF.get(str(ddf).strip().lower().replace(" ", "-"))
    if key is None:
        raise JaxmixError(f"unknown ddf {ddf!r}: use 'satterthwaite', 'kenward-roger', 'containment', "
                          "'between-within', 'residual' or 'asymptotic'")
    if key == "satterthwaite" and structure_info(res) is not None:
        return key
    if key in ("satterthwaite", "kenward-roger") and not is_lmm(res):
        what = ("a least-squares fit" if res.method == "OLS" else f"a {res.family} GLMM" if res.family != "gaussian"
                else "a Gaussian model without random effects (a gls fit: 'residual' gives nlme's n − p df)")
        raise JaxmixError(f"ddf={key!r} needs a linear mixed model; this is {what} "
                          "(use 'asymptotic', 'residual', 'containment' or 'between-within')")
    if key == "kenward-roger":
        refuse_structured(res, f"ddf={key!r}", "use 'satterthwaite', 'containment', 'between-within', 'residual' "
                          "or 'asymptotic'")
    if key == "kenward-roger" and res.method != "REML":
        raise JaxmixError("Kenward-Roger df are defined for REML fits (pbkrtest); refit with method='REML'")
    if key in ("containment", "between-within") and not res.is_mixed:
        raise JaxmixError(f"ddf={key!r} needs random effects; use 'residual' for a least-squares fit")
    return key


# ---------------------------------------------------------------------------------------------
# the LMM pieces, recomputed from the design (cached on the results)
class LmmState(NamedTuple):
    layout: object
    idx: object
    xp: object
    tl: ThetaLayout
    n: float
    p: int
    ldW: float
    reml: bool


def lmm_state(res) -> LmmState:
    from ..spec.structinfo import refuse_structured

    refuse_structured(res, "this lme4-model computation (profiles, ML refits)")
    if not is_lmm(res):
        raise JaxmixError("this needs a linear mixed model (a Gaussian fit with random effects)")
    got = cache_get(res, "_inf_lmm")
    if got is None:
        from ..fitting.lmm import lmm_arrays

        layout, idx, xp = lmm_arrays(res.design, jnp.float64)
        w = res.design.weights
        got = LmmState(layout, idx, xp, theta_layout(layout.q), float(res.nobs), res.design.X.shape[1],
                   float(np.sum(np.log(w[w > 0]))), res.method == "REML")
        cache_put(res, "_inf_lmm", got)
    return got


def varpar_deviance(vp, xp, idx, n, ldW, layout, tl: ThetaLayout, p: int, reml):
    """lmerTest's ``devfun_vp``: the (RE)ML deviance in ϑ = (θ, σ), σ not profiled (formula above).

    ``reml`` may be a traced 0/1 value, so that one compiled program serves both criteria.
    """
    f = factorize(lambdas(vp[:-1], tl), xp, idx, layout)
    ldL2, ldRX2, r2 = logdets(f, layout, p)
    s2 = vp[-1] ** 2
    dev = ldL2 - ldW + r2 / s2 + n * jnp.log(2.0 * jnp.pi * s2)
    return dev + reml * (ldRX2 - p * jnp.log(2.0 * jnp.pi * s2))


def covbeta(vp, xp, idx, layout, tl, p):
    """Φ(ϑ) = σ² (L_X L_X′)⁻¹."""
    f = factorize(lambdas(vp[:-1], tl), xp, idx, layout)
    m_R = layout.m_R
    LX = f.LDD[m_R : m_R + p, m_R : m_R + p]
    Li = solve_triangular(LX, jnp.eye(p, dtype=LX.dtype), lower=True)
    return vp[-1] ** 2 * Li.T @ Li


def _satt_column(vp, t, xp, idx, n, ldW, reml, *, layout, tl, p):
    """(H t, J t): the Hessian of d(ϑ) and the Jacobian of Φ(ϑ) applied to a direction t (forward mode
    over the reverse-mode gradient, exact), one column of each for t = eⱼ."""
    grad = lambda v: jax.grad(varpar_deviance)(v, xp, idx, n, ldW, layout, tl, p, reml)  # noqa: E731
    Ht = jax.jvp(grad, (vp,), (t,))[1]
    Jt = jax.jvp(lambda v: covbeta(v, xp, idx, layout, tl, p), (vp,), (t,))[1]
    return Ht, Jt


_satt_column_jit = jax.jit(_satt_column, static_argnames=("layout", "tl", "p"))


def lmm_program(m: LmmState, jitted, args: tuple, **statics):
    """``jitted`` (static ``layout``, ``tl``, ``p`` and ``statics``) compiled for the model class of
    ``m`` once per process (:func:`jaxmix.fitting.cache.compiled_program`), with the fit's XLA options
    (:func:`jaxmix.fitting.lmm.compile_options`: XLA's quick ones for small classes, whose programs
    run a few times and compiled 2–3x slower with the defaults)."""
    from ..fitting.cache import compiled_program
    from ..fitting.lmm import compile_options

    exe, _ = compiled_program(jitted, args, {}, dict(layout=m.layout, tl=m.tl, p=m.p, **statics),
                              compile_options(m.layout))
    return exe


def satt_hessian(m: LmmState, vp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """H = ∇²d(ϑ) (k, k) and J = ∂Φ/∂ϑ (p, p, k) at ϑ = ``vp``, exactly, column by column.

    One small program per model class (:func:`lmm_program`) called k times: compiling ``jax.hessian``
    and ``jax.jacfwd`` whole with XLA's defaults took 3.1–3.4 s for sleepstudy and Penicillin, this
    1.0–1.3 s."""
    vp = np.asarray(vp, dtype=np.float64)
    args = (vp, vp, m.xp, m.idx, m.n, m.ldW, float(m.reml))
    exe = lmm_program(m, _satt_column_jit, args)
    cols = [exe(vp, e, *args[2:]) for e in np.eye(vp.size)]
    H = np.stack([np.asarray(c[0], dtype=float) for c in cols], axis=1)
    J = np.stack([np.asarray(c[1], dtype=float) for c in cols], axis=-1)
    return H, J


def _pinv_sym(H, tol=1e-8):
    """lmerTest's generalised inverse: eigenvalues ≤ tol dropped."""
    ev, U = np.linalg.eigh(H)
    pos = ev > tol
    return (U[:, pos] / ev[pos]) @ U[:, pos].T


def satterthwaite_parts(res):
    """(H, A = 2H⁺, J) at ϑ̂: the Hessian of d(ϑ), lmerTest's vcov_varpar and ∂Φ/∂ϑ (p, p, k)."""
    from ..spec.structinfo import structure_info

    info = structure_info(res)
    if info is not None:  # computed by the structured fit in its own parameters (jaxmix.fitting.structured)
        return info["satterthwaite"]
    got = cache_get(res, "_inf_satt")
    if got is None:
        m = lmm_state(res)
        H, J = satt_hessian(m, np.append(res.theta, res.sigma))
        H = (H + H.T) / 2
        got = (H, 2.0 * _pinv_sym(H), J)
        cache_put(res, "_inf_satt", got)
    return got


def satterthwaite_df(res, L) -> np.ndarray:
    """ν = 2 (l′Φl)² / (g′Ag) for every row l of L (lmerTest's ``contest1D``)."""
    _, A, J = satterthwaite_parts(res)
    L = np.atleast_2d(np.asarray(L, dtype=float))
    v = np.einsum("ri,ij,rj->r", L, res.vcov_beta, L)
    g = np.einsum("ri,ijk,rj->rk", L, J, L)
    return 2.0 * v**2 / np.einsum("rk,kl,rl->r", g, A, g)


def _fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """lmerTest's ``get_Fstat_ddf``: the F denominator df from the q row-wise ν_m."""
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * E / (E - nu.size)


# ---------------------------------------------------------------------------------------------
# Kenward–Roger
def _dense_Z(design) -> tuple[np.ndarray, list[int]]:
    """Z (n x Σ ℓ_k q_k), term blocks level-major (lme4's order), and each block's first column."""
    n = design.nobs
    blocks, offs, off = [], [], 0
    for t in design.terms:
        Zk = np.zeros((n, t.nlevels * t.q))
        cols = t.codes[:, None] * t.q + np.arange(t.q)[None, :]
        np.put_along_axis(Zk, cols, t.Z, axis=1)
        blocks.append(Zk)
        offs.append(off)
        off += Zk.shape[1]
    return np.column_stack(blocks), offs


def check_ddf_size(ddf: str, design) -> None:
    """Refuse (JaxmixError) a df method too large for ``design``: Kenward-Roger above ``KR_MAX_RE_COLUMNS``
    random-effect columns (dense m x m pieces) unless it has at most ``KR_MAX_ROWS`` rows, containment
    above ``RANK_MAX_COLUMNS`` columns of [X Z].  Needs only the design, not a fit."""
    if ddf == "kenward-roger":
        from .kr_structured import re_columns

        n, m = design.nobs, re_columns(design)
        if m > KR_MAX_RE_COLUMNS and n > KR_MAX_ROWS:
            raise JaxmixError(f"Kenward-Roger needs dense {m} x {m} random-effect matrices here ({n} rows); it is "
                              f"limited to {KR_MAX_RE_COLUMNS} random-effect columns (or {KR_MAX_ROWS} rows). "
                              "Use ddf='satterthwaite' (exact, no size limit)")
    if ddf == "containment":
        n, p = design.X.shape
        m = sum(t.nlevels * t.q for t in design.terms)
        if p + m > RANK_MAX_COLUMNS:
            raise JaxmixError(f"containment df need the rank of the dense {n} x {p + m} matrix [X Z]; limited to "
                              f"{RANK_MAX_COLUMNS} columns. Use ddf='satterthwaite' or 'between-within'")


def kenward_roger_parts(res):
    """pbkrtest's ``vcovAdj``: (Φ_A, P, W) for a REML fit.

    With Σ = Σ_r γ_r G_r (γ: the variances and covariances of ``varcorr`` and σ², G_r = Z E_r Z′ with
    E_r = I_ℓ ⊗ (e_i e_j′ + e_j e_i′) or W⁻¹ for σ²), Σ⁻¹ = S:

        P_r = −X′S G_r S X,  Q_rs = X′S G_r S G_s S X,  I_rs = tr(S G_r S G_s) − 2 tr(Φ Q_rs) + tr(Φ P_r Φ P_s)
        W = 2 I⁻¹,  U = Σ_rs W_rs (Q_rs − P_r Φ P_s),  Φ_A = Φ + 2 Φ U Φ.

    Computed with Σ⁻¹ applied through the Woodbury identity (:mod:`jaxmix.inference.kr_structured`: no n x n
    matrix; dense in the m random-effect columns) when m ≤ ``KR_MAX_RE_COLUMNS``; otherwise dense in the
    n rows (O(n³) time, O(n²) memory), refused above ``KR_MAX_ROWS`` rows.
    """
    got = cache_get(res, "_inf_kr")
    if got is not None:
        return got
    design = res.design
    check_ddf_size("kenward-roger", design)
    from .kr_structured import kr_pieces, re_columns

    if re_columns(design) <= KR_MAX_RE_COLUMNS:
        P, Q, IE, Phi = kr_pieces(res)
    else:
        P, Q, IE, Phi = kr_pieces_dense(res)
    ev = np.linalg.eigvalsh(IE)
    W = 2.0 * (np.linalg.inv(IE) if np.min(np.abs(ev)) > 1e-10 else np.linalg.pinv(IE))
    k = len(P)
    U = np.zeros_like(Phi)
    for r in range(k):
        for s in range(k):
            U += W[r, s] * (Q[r][s] - P[r] @ Phi @ P[s])
    PhiA = Phi + 2.0 * Phi @ U @ Phi
    got = (PhiA, P, W, Phi)
    cache_put(res, "_inf_kr", got)
    return got


def kr_pieces_dense(res):
    """(P, Q, I_E, Φ) of :func:`kenward_roger_parts` from the dense n x n Σ (small n, huge m)."""
    design = res.design
    n = design.nobs
    X = design.X
    Z, offs = _dense_Z(design)
    m = Z.shape[1]
    tl = theta_layout([t.q for t in design.terms])
    omegas = res.term_covariances()
    s2 = res.sigma**2
    winv = 1.0 / design.weights
    # the entries (a, b) of each E_r in the coordinates of Z_aug = [Z, W^{-1/2}]
    ent, gamma = [], []
    for k, t in enumerate(design.terms):
        base = offs[k] + np.arange(t.nlevels) * t.q
        for i, j in zip(tl.rows[k], tl.cols[k]):
            a, b = base + i, base + j
            ent.append((np.concatenate([a, b]), np.concatenate([b, a])) if i != j else (a, a))
            gamma.append(omegas[k][i, j])
    ent.append((m + np.arange(n), m + np.arange(n)))
    gamma.append(s2)
    D = np.zeros((m, m))
    for (a, b), g in zip(ent[:-1], gamma[:-1]):
        D[a, b] = g
    Sigma = Z @ D @ Z.T + s2 * np.diag(winv)
    S = np.linalg.inv(Sigma)
    S = (S + S.T) / 2
    sw = np.sqrt(winv)
    SZa = np.column_stack([S @ Z, S * sw[None, :]])  # S Z_aug
    Aug = np.vstack([Z.T, np.diag(sw)]) @ SZa  # Z_aug′ S Z_aug
    B = SZa.T @ X  # Z_aug′ S X
    Phi = np.linalg.inv(X.T @ S @ X)
    k = len(ent)
    P = [-(B[a].T @ B[b]) for a, b in ent]
    Q = [[None] * k for _ in range(k)]
    IE = np.zeros((k, k))
    for r in range(k):
        ar, br = ent[r]
        for s in range(r, k):
            as_, bs = ent[s]
            # Q_rs = Σ_{(a,b)∈E_r} Σ_{(c,d)∈E_s} B[a]′ A[b,c] B[d]
            Abc = Aug[np.ix_(br, as_)]
            Q[r][s] = B[ar].T @ Abc @ B[bs]
            Q[s][r] = Q[r][s].T
            ktr = float(np.sum(Abc * Aug[np.ix_(bs, ar)].T))
            IE[r, s] = IE[s, r] = (ktr - 2.0 * np.sum(Phi * Q[r][s].T)
                                   + np.sum((Phi @ P[r]) * (P[s] @ Phi)))
    return P, Q, IE, Phi


def _kr_test(res, L, c):
    """pbkrtest's ``KRmodcomp`` F for H0: Lβ = c (L of full row rank): (F, ddf, Wald/q, scaling)."""
    PhiA, P, W, Phi = kenward_roger_parts(res)
    q = L.shape[0]
    Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
    TP = Theta @ Phi
    A1 = A2 = 0.0
    k = len(P)
    for i in range(k):
        ui = TP @ P[i] @ Phi
        for j in range(i, k):
            e = 1.0 if i == j else 2.0
            uj = TP @ P[j] @ Phi
            A1 += e * W[i, j] * np.trace(ui) * np.trace(uj)
            A2 += e * W[i, j] * np.sum(ui * uj.T)
    Bq = (A1 + 6.0 * A2) / (2.0 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    den = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
    V0 = 1 + c1 * Bq
    V0 = 0.0 if abs(V0) < 1e-10 else V0
    V1, V2 = 1 - c2 * Bq, 1 - c3 * Bq
    rho = (1.0 / q) * ((1 - A2 / q) / V1) ** 2 * V0 / V2
    df2 = 4 + (q + 2) / (q * rho - 1)
    scale = 1.0 if abs(df2 - 4) < 1e-2 else df2 * (1 - A2 / q) / (df2 - 2)
    d = L @ res.beta - c
    wald = float(d @ np.linalg.solve(L @ PhiA @ L.T, d)) / q
    return scale * wald, float(df2), wald, scale


def kenward_roger_df(res, L) -> np.ndarray:
    """pbkrtest's ``Lb_ddf`` for every row of L (the df lmerTest reports with ddf='Kenward-Roger')."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    return np.array([_kr_test(res, l[None, :], np.zeros(1))[1] for l in L])


# ---------------------------------------------------------------------------------------------
# design-based df: containment, between-within, residual
def _spec_column_vars(spec, names: list[str]) -> list[set]:
    """Data variables of each named column of a formulaic model spec."""
    data_vars = set(spec.required_variables)
    cols = list(spec.column_names)
    out_of = {}
    for term, ix in spec.term_indices.items():
        vs = set(spec.term_variables.get(term, set())) & data_vars
        for i in ix:
            out_of[cols[i]] = vs
    return [out_of.get(nm, set()) for nm in names]


def _rank_contributions(blocks: list[np.ndarray], tol: float = 1e-9) -> list[int]:
    """Sequential rank contributions of column blocks: rank[B₁..B_e] − rank[B₁..B_{e−1}]."""
    basis = None
    out = []
    for Bk in blocks:
        R = Bk if basis is None else Bk - basis @ (basis.T @ Bk)
        if basis is not None:
            R = R - basis @ (basis.T @ R)
        if R.shape[1] == 0:
            out.append(0)
            continue
        U, s, _ = np.linalg.svd(R, full_matrices=False)
        scale = max(np.max(np.linalg.norm(Bk, axis=0)), 1.0)
        keep = s > tol * scale * max(R.shape)
        out.append(int(keep.sum()))
        basis = U[:, keep] if basis is None else np.column_stack([basis, U[:, keep]])
    return out


def containment_df(res) -> np.ndarray:
    """SAS DDFM=CONTAIN per fixed-effect column (random effects taken in formula order)."""
    d = res.design
    X = d.X
    n, p = X.shape
    m = sum(t.nlevels * t.q for t in d.terms)
    check_ddf_size("containment", d)
    xvars = _spec_column_vars(d.fixed_spec, d.x_names) if d.fixed_spec is not None else [set()] * p
    order = {rt: i for i, rt in enumerate(d.parsed.random)}
    terms = sorted(d.terms, key=lambda t: order.get(t.term, 0))
    effects, blocks = [], [X]
    for t in terms:
        cvars = _spec_column_vars(t.spec, t.columns) if t.spec is not None else [set()] * t.q
        for a in range(t.q):
            Zk = np.zeros((n, t.nlevels))
            Zk[np.arange(n), t.codes] = t.Z[:, a]
            blocks.append(Zk)
            effects.append(cvars[a] | set(t.term.factors))
    contrib = _rank_contributions(blocks)
    resid = n - sum(contrib)
    df = np.empty(p)
    for j in range(p):
        cands = [c for c, ev in zip(contrib[1:], effects) if xvars[j] <= ev]
        df[j] = min(cands) if cands else resid
    return df


def between_within_df(res) -> np.ndarray:
    """SAS DDFM=BW per fixed-effect column; the subject is the grouping factor with the fewest levels."""
    d = res.design
    X = d.X
    n, p = X.shape
    subj = min(d.terms, key=lambda t: t.nlevels)  # ties: lme4 order
    S = subj.nlevels
    codes = subj.codes
    lo = np.full((S, p), np.inf)
    hi = np.full((S, p), -np.inf)
    np.minimum.at(lo, codes, X)
    np.maximum.at(hi, codes, X)
    scale = np.maximum(np.max(np.abs(X), axis=0), 1e-300)
    between = np.all(hi - lo <= 1e-10 * scale, axis=0)
    rank_b = np.linalg.matrix_rank(X[:, between]) if between.any() else 0
    rank_x = np.linalg.matrix_rank(X) if p else 0
    return np.where(between, S - rank_b, n - S - (rank_x - rank_b)).astype(float)


def residual_df(res) -> float:
    X = res.design.X
    return float(res.nobs - (np.linalg.matrix_rank(X) if X.shape[1] else 0))


def _design_df(res, method: str) -> np.ndarray:
    key = f"_inf_df_{method}"
    got = cache_get(res, key)
    if got is None:
        if method == "containment":
            got = containment_df(res)
        elif method == "between-within":
            got = between_within_df(res)
        else:
            got = np.full(len(res.beta), residual_df(res))
        cache_put(res, key, got)
    return got


def coef_df(res, method: str) -> np.ndarray:
    """Denominator df of every coefficient's t test under ``method``."""
    p = len(res.beta)
    if method == "asymptotic":
        return np.full(p, np.inf)
    if method == "satterthwaite":
        return satterthwaite_df(res, np.eye(p))
    if method == "kenward-roger":
        return kenward_roger_df(res, np.eye(p))
    return _design_df(res, method)


def ddf_method(res, ddf) -> str:
    """The canonical name of ``ddf`` for this fit ('satterthwaite', 'kenward-roger', ...; None: the
    fit's default), or a JaxmixError naming the method that does not apply."""
    return _ddf_method(res, ddf)


def contrast_vcov(res, method: str) -> np.ndarray:
    """Var(β̂) used with ``method``: Φ_A (pbkrtest's adjusted covariance) for Kenward–Roger, else Φ."""
    return kenward_roger_parts(res)[0] if method == "kenward-roger" else np.asarray(res.vcov_beta)


def contrast_df(res, L, method: str) -> np.ndarray:
    """Denominator df of the t test of each row l of L under ``method``: Satterthwaite (lmerTest's
    ``contest1D``), Kenward–Roger (pbkrtest's ``Lb_ddf``), ∞ (asymptotic), or for the design-based
    methods the smallest df of the coefficients the row involves."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    if method == "asymptotic":
        return np.full(L.shape[0], np.inf)
    if method == "satterthwaite":
        return satterthwaite_df(res, L)
    if method == "kenward-roger":
        return kenward_roger_df(res, L)
    per = _design_df(res, method)
    return np.array([float(np.min(per[np.abs(row) > 1e-12])) if np.any(np.abs(row) > 1e-12) else np.nan
                     for row in L])


def fixed_term_columns(design) -> dict[str, list[int]]:
    """{fixed term label (formulaic's, e.g. ``"Sex"``, ``"age:Sex"``): its columns of X}; no intercept."""
    return {label: xc for label, _, xc in _fixed_terms(design)}


# ---------------------------------------------------------------------------------------------
# coefficient table and Wald tests
def coef_table(res, ddf=None, level: float = 0.95) -> pd.DataFrame:
    """Fixed effects with t (or z) tests and intervals: estimate, se, df, statistic, p, ci_low, ci_high.

    t = β̂_j / se_j with se_j = √Φ_jj (√Φ_A,jj for Kenward–Roger), p = 2 P(T_ν > |t|) and the interval
    β̂_j ± t_{ν, (1+level)/2} se_j; ν from ``ddf`` (module docstring; ∞ gives z).
    """
    method = _ddf_method(res, ddf)
    if not 0 < level < 1:
        raise JaxmixError(f"level must be between 0 and 1, got {level}")
    est = np.asarray(res.beta, dtype=float)
    V = kenward_roger_parts(res)[0] if method == "kenward-roger" else res.vcov_beta
    se = np.sqrt(np.diag(V))
    df = coef_df(res, method)
    stat = est / se
    p, crit = t_test(stat, df, level)
    out = pd.DataFrame({"estimate": est, "se": se, "df": df, "statistic": stat, "p": p,
                        "ci_low": est - crit * se, "ci_high": est + crit * se}, index=list(res.x_names))
    out.attrs["ddf"] = method
    return out


_NUM = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _parse_linear(expr: str, names: list[str], whole: str):
    """'2*a - b + 3' -> (coefficient vector over ``names``, constant)."""
    s = re.sub(r"\s+", "", expr)
    keys = {re.sub(r"\s+", "", nm): i for i, nm in enumerate(names)}
    if "Intercept" in keys and "(Intercept)" not in keys:
        keys["(Intercept)"] = keys["Intercept"]
    ordered = sorted(keys, key=len, reverse=True)
    vec, const, pos = np.zeros(len(names)), 0.0, 0
    if not s:
        raise JaxmixError(f"empty side in hypothesis {whole!r}")

    def name_at(i):
        for k in ordered:
            if s.startswith(k, i):
                return k
        return None

    while pos < len(s):
        sign = 1.0
        while pos < len(s) and s[pos] in "+-":
            sign = -sign if s[pos] == "-" else sign
            pos += 1
        start, coef, nm = pos, 1.0, name_at(pos)
        if nm is None:
            mnum = _NUM.match(s, pos)
            if not mnum:
                _unknown(s, start, names, whole)
            coef, pos = float(mnum.group(0)), mnum.end()
            if pos < len(s) and s[pos] == "*":
                pos += 1
                start, nm = pos, name_at(pos)
                if nm is None:
                    _unknown(s, pos, names, whole)
            elif pos < len(s) and s[pos] not in "+-":
                _unknown(s, start, names, whole)
            else:
                const += sign * coef
                continue
        pos += len(nm)
        if pos < len(s) and s[pos] == "*":
            mnum = _NUM.match(s, pos + 1)
            if not mnum:
                _unknown(s, pos + 1, names, whole)
            coef *= float(mnum.group(0))
            pos = mnum.end()
        if pos < len(s) and s[pos] not in "+-":
            _unknown(s, start, names, whole)
        vec[keys[nm]] += sign * coef
    return vec, const


def _unknown(s: str, pos: int, names, whole):
    m = re.match(r"[^+\-*=]+", s[pos:])
    tok = m.group(0) if m else s[pos:]
    if not tok:
        raise JaxmixError(f"hypothesis {whole!r} ends where a coefficient name or number was expected")
    raise JaxmixError(f"unknown term {tok!r} in hypothesis {whole!r}; the fixed effects are "
                      f"{', '.join(map(repr, names))}")


def contrast_matrix(res, hypothesis, rhs=None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(L, c, labels) for H0: Lβ = c from a string ``"Days = 0, x1 - x2 = 0"`` or a matrix L."""
    names = list(res.x_names)
    p = len(names)
    if isinstance(hypothesis, str):
        rows, cs, labels = [], [], []
        for piece in split_top(hypothesis, ","):
            piece = piece.strip()
            if not piece:
                continue
            sides = split_top(piece, "=")
            if len(sides) > 2:
                raise JaxmixError(f"hypothesis {piece!r} has more than one '='")
            lv, lc = _parse_linear(sides[0], names, piece)
            rv, rc = _parse_linear(sides[1], names, piece) if len(sides) == 2 else (np.zeros(p), 0.0)
            if not np.any(lv - rv):
                raise JaxmixError(f"hypothesis {piece!r} involves no fixed effect")
            rows.append(lv - rv)
            cs.append(rc - lc)
            labels.append(piece)
        if not rows:
            raise JaxmixError("empty hypothesis")
        L, c = np.vstack(rows), np.asarray(cs)
    else:
        L = np.asarray(hypothesis, dtype=float)
        if L.ndim == 1:
            L = L[None, :]
        if L.ndim != 2 or L.shape[1] != p:
            raise JaxmixError(f"contrast matrix has {L.shape[-1] if L.ndim else 0} columns but the model has "
                              f"{p} fixed effects ({', '.join(names)})")
        if not np.all(np.isfinite(L)):
            raise JaxmixError("contrast matrix has non-finite entries")
        c = np.zeros(L.shape[0]) if rhs is None else np.broadcast_to(np.asarray(rhs, dtype=float), (L.shape[0],)).copy()
        labels = [" + ".join(f"{v:g}*{nm}" for v, nm in zip(row, names) if v) + f" = {ci:g}" for row, ci in zip(L, c)]
    return L, c, labels


@dataclass
class WaldTest:
    """A joint test of H0: Lβ = c.  ``statistic`` is F (finite ``den_df``) or χ² (``den_df`` = ∞)."""

    statistic: float
    num_df: int
    den_df: float
    p: float
    ddf: str
    hypotheses: list = field(default_factory=list)
    L: np.ndarray = field(repr=False, default=None)
    rhs: np.ndarray = field(repr=False, default=None)

    @property
    def F(self) -> float:
        return self.statistic if np.isfinite(self.den_df) else self.statistic / self.num_df

    @property
    def chi2(self) -> float:
        return self.statistic * self.num_df if np.isfinite(self.den_df) else self.statistic

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"statistic": [self.statistic], "num_df": [self.num_df], "den_df": [self.den_df],
                             "p": [self.p], "ddf": [self.ddf]})


def _full_rank_rows(L, c, V):
    """Rotate L to the eigenvectors of LVL′ with positive eigenvalues (lmerTest's ``contestMD``)."""
    d, P = np.linalg.eigh(L @ V @ L.T)
    order = np.argsort(d)[::-1]
    d, P = d[order], P[:, order]
    pos = d > max(np.sqrt(np.finfo(float).eps) * d[0], 0)
    return P[:, pos].T @ L, P[:, pos].T @ c, d[pos]


def wald_test(res, hypothesis, ddf=None, rhs=None) -> WaldTest:
    """Joint Wald test of H0: Lβ = c.

    With d = Lβ̂ − c and q = rank L: F = d′(LΦL′)⁻¹d / q on (q, ν) df, ν by ``ddf`` (Satterthwaite:
    lmerTest's ``contestMD``; Kenward–Roger: pbkrtest's scaled F with Φ_A; containment, between-within,
    residual: the smallest df of the coefficients involved); ``ddf='asymptotic'`` gives χ² = qF on q df.
    """
    method = _ddf_method(res, ddf)
    L0, c0, labels = contrast_matrix(res, hypothesis, rhs)
    V = res.vcov_beta
    L, c, d = _full_rank_rows(L0, c0, V)
    q = L.shape[0]
    if q == 0:
        raise JaxmixError("the hypothesis has no estimable row (L Var(beta) L' is zero)")
    t2 = (L @ res.beta - c) ** 2 / d
    F = float(np.sum(t2) / q)
    if method == "asymptotic":
        chi2 = q * F
        return WaldTest(chi2, q, np.inf, float(chi2_sf(chi2, q)), method, labels, L0, c0)
    if method == "kenward-roger":
        F, den, _, _ = _kr_test(res, L, c)
        F = float(F)
    elif method == "satterthwaite":
        den = _fstat_ddf(satterthwaite_df(res, L))
    else:
        used = np.any(np.abs(L0) > 1e-12, axis=0)
        den = float(np.min(_design_df(res, method)[used]))
    return WaldTest(F, q, den, float(f_sf(F, q, den)), method, labels, L0, c0)


# ---------------------------------------------------------------------------------------------
# Type III tests
def _fixed_terms(design):
    """[(label, formulaic term, X columns)] for the non-intercept terms that kept a column."""
    spec = design.fixed_spec
    cols = list(spec.column_names)
    pos = {nm: i for i, nm in enumerate(design.x_names)}
    out = []
    for term, ix in spec.term_indices.items():
        label = str(term)
        if label in ("1", "0"):
            continue
        xcols = [pos[cols[i]] for i in ix if cols[i] in pos]
        if xcols:
            out.append((label, term, xcols))
    return out


def _term_factors(term) -> frozenset:
    return frozenset(str(f.expr) for f in term.factors if str(f.expr) not in ("1",))


def _categorical_vars(spec):
    """{data column: categories} for the categorical factors of a spec; None if one is not a plain column."""
    out = {}
    data_vars = set(spec.required_variables)
    for expr, (kind, state) in (spec.encoder_state or {}).items():
        if getattr(kind, "value", kind) != "categorical":
            continue
        m = re.fullmatch(r"\s*(?:C\(\s*)?`?([A-Za-z_.][A-Za-z0-9_.]*)`?\s*\)?\s*", str(expr))
        if not m or m.group(1) not in data_vars or "categories" not in state:
            return None
        out[m.group(1)] = list(state["categories"])
    return out


def type3_contrasts(design, seed: int = 0) -> dict[str, np.ndarray]:
    """lmerTest's Type III contrasts (``get_contrasts_type3``) for each fixed term.

    L₀ = (X⁺ X̃)′ expresses every column of the over-parameterised design X̃ (all levels of every
    factor) in the model's coefficients; the columns of L₀ for a term contained in higher-order terms
    are replaced by their residuals on those terms' columns (highest order first), and the rows of L₀
    for the model's own columns give the term's contrast.  X⁺X̃ is fixed by the formula, so it is
    evaluated on a synthetic frame (every combination of the factor levels, random covariate values).
    Without nested terms this is the test that the term's coefficients are 0.
    """
    terms = _fixed_terms(design)
    p = design.X.shape[1]
    eye = np.eye(p)
    basic = {label: eye[xc] for label, _, xc in terms}
    facs = {label: _term_factors(term) for label, term, _ in terms}
    contained = {a: [b for b in facs if b != a and facs[a] < facs[b]] for a in facs}
    if not any(contained.values()):
        return basic
    spec = design.fixed_spec
    cats = _categorical_vars(spec)
    if cats is None:
        warnings.warn("Type III contrasts: a categorical factor is not a plain column; testing the terms' "
                      "coefficients = 0 instead", JaxmixWarning, stacklevel=3)
        return basic
    import itertools

    import formulaic

    rng = np.random.default_rng(seed)
    combos = list(itertools.product(*cats.values())) if cats else [()]
    reps = max(3, int(np.ceil(4 * p / max(len(combos), 1))))
    frame = pd.DataFrame([c for c in combos for _ in range(reps)], columns=list(cats))
    for v in sorted(set(spec.required_variables) - set(cats)):
        frame[v] = rng.uniform(1.0, 2.0, len(frame))
    try:
        Xs = spec.get_model_matrix(frame, output="pandas")[list(design.x_names)].to_numpy(dtype=float)
        full = formulaic.model_matrix(spec.update(ensure_full_rank=False, structure=None), frame, output="pandas")
        rdX = full.to_numpy(dtype=float)
    except Exception as exc:  # pragma: no cover - depends on user transforms
        warnings.warn(f"Type III contrasts could not be built ({exc}); testing the terms' coefficients = 0",
                      JaxmixWarning, stacklevel=3)
        return basic
    if np.linalg.matrix_rank(Xs) < p:
        return basic
    L = (np.linalg.pinv(Xs) @ rdX).T  # rows: columns of X̃, columns: coefficients
    L[np.abs(L) < 1e-10] = 0.0
    cmap = {label: xc for label, _, xc in terms}
    for label in sorted(facs, key=lambda a: -len(facs[a])):
        if contained[label]:
            C = L[:, sorted({j for b in contained[label] for j in cmap[b]})]
            Y = L[:, cmap[label]]
            L[:, cmap[label]] = Y - C @ np.linalg.lstsq(C, Y, rcond=None)[0]
    # the rows of X̃ that are the model's own columns
    rows = []
    for j in range(p):
        hit = np.flatnonzero(np.all(np.abs(rdX - Xs[:, [j]]) < 1e-9, axis=0))
        if hit.size == 0:
            return basic
        rows.append(hit[0])
    L = L[rows]
    out = {}
    for label, _, xc in terms:
        Lt = L[:, xc].T
        Lt[np.abs(Lt) < 1e-8] = 0.0
        out[label] = Lt[np.sum(np.abs(Lt), axis=1) > 1e-8]
    return out


def type3_anova(res, ddf=None) -> pd.DataFrame:
    """Type III table, one row per fixed term (lmerTest's ``anova(m, type = 3)``).

    Each term's F = d′(LΦL′)⁻¹d / q for its Type III contrast L (:func:`type3_contrasts`), with
    ``sum_sq`` = F q σ² and ``mean_sq`` = F σ² as lmerTest prints them.  GLMMs and ``ddf='asymptotic'``
    give Wald χ² = qF on q df instead.
    """
    method = _ddf_method(res, ddf)
    rows = []
    for label, L in type3_contrasts(res.design).items():
        if L.shape[0] == 0:
            continue
        wt = wald_test(res, L, ddf=method)
        if method == "asymptotic":
            rows.append((label, wt.statistic, wt.num_df, wt.p))
        else:
            s2 = res.sigma**2
            rows.append((label, wt.F * wt.num_df * s2, wt.F * s2, wt.num_df, wt.den_df, wt.F, wt.p))
    cols = ["chi2", "df", "p"] if method == "asymptotic" else ["sum_sq", "mean_sq", "num_df", "den_df", "F", "p"]
    out = pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows], columns=cols)
    out.attrs["ddf"] = method
    return out


# ---------------------------------------------------------------------------------------------
# covariance parameters
def _vech_cov(theta, sigma, tl: ThetaLayout, scale_sigma: bool):
    """The varcorr estimates: per term the variances, then the covariances (column-major lower), then σ²."""
    parts = []
    s2 = sigma**2 if scale_sigma else 1.0
    for lam, qk in zip(lambdas(theta, tl), tl.q):
        om = s2 * lam @ lam.T
        parts.append(jnp.diagonal(om))
        r, c = np.tril_indices(qk, -1)
        order = np.lexsort((r, c))  # column-major
        parts.append(om[r[order], c[order]])
    if scale_sigma:
        parts.append(jnp.reshape(s2, (1,)))
    return jnp.concatenate(parts)


def _vech_cov_of(v, tl: ThetaLayout, scale_sigma: bool):
    """:func:`_vech_cov` of ϑ = (θ, σ) (``scale_sigma``) or of θ."""
    return _vech_cov(v[:-1], v[-1], tl, True) if scale_sigma else _vech_cov(v, 1.0, tl, False)


#: the varcorr estimates and their Jacobian in one small compiled program per θ layout (jacfwd op by
#: op dispatched ~80 primitives, each compiled on its own: 2–3 s for a first covparm table)
_vech_cov_jac = jax.jit(lambda v, tl, scale_sigma: (_vech_cov_of(v, tl, scale_sigma),
                                                    jax.jacfwd(_vech_cov_of)(v, tl, scale_sigma)),
                        static_argnames=("tl", "scale_sigma"))


def _glmm_hessian(res) -> np.ndarray:
    """Exact Hessian of the GLMM deviance in (θ, β) at the estimates (recomputed from the design)."""
    h = getattr(res.optim, "hess", None)
    if h is not None:
        return np.asarray(h, dtype=float)
    got = cache_get(res, "_inf_glmm_hess")
    if got is not None:
        return got
    from .glmm_profile import glmm_deviance

    fun, _, options = glmm_deviance(res, newton_steps=2)
    disp = res.extra.get("dispersion")
    log_phi = [np.log(disp["estimate"])] if disp is not None else []
    H = np.asarray(jax.jit(jax.hessian(fun), compiler_options=options)(
        jnp.asarray(np.concatenate([res.theta, log_phi, res.beta]))),
                   dtype=float)
    return cache_put(res, "_inf_glmm_hess", H)


def _covparm_parts(res):
    """(estimates, covariance) of the varcorr variances/covariances by the delta method.

    LMM: Cov(ϑ̂) = 2 H⁺ (H = ∇²d(ϑ) of the fit's criterion) and φ(ϑ) = (vech σ²ΛΛ′ per term, σ²);
    GLMM: Cov(θ̂) the θ block of 2 H⁻¹ of the Laplace deviance in (θ, β), φ = vech ΛΛ′.
    Cov(φ̂) = J Cov(ϑ̂) J′, J = ∂φ/∂ϑ.  At a stationary point this equals inverting the Hessian of the
    criterion written in φ directly.
    """
    if not res.is_mixed:
        raise JaxmixError("covariance parameters need a model with random effects")
    tl = theta_layout([t.q for t in res.design.terms])
    if is_lmm(res):
        _, A, _ = satterthwaite_parts(res)
        vp = np.append(res.theta, res.sigma)
    else:
        H = _glmm_hessian(res)
        nt = tl.size
        free = np.ones(H.shape[0], bool)
        free[:nt] = ~((np.asarray(res.theta) == 0) & tl.is_diagonal())
        C = np.full(H.shape, np.nan)
        C[np.ix_(free, free)] = 2.0 * np.linalg.pinv(H[np.ix_(free, free)])
        A = np.nan_to_num(C[:nt, :nt])
        vp = np.asarray(res.theta, dtype=float)
    est, J = _vech_cov_jac(jnp.asarray(vp), tl=tl, scale_sigma=is_lmm(res))
    est, J = np.asarray(est, dtype=float), np.asarray(J, dtype=float)
    V = J @ A @ J.T
    return est, V


def _covparm_rows(res) -> pd.DataFrame:
    vc = res.varcorr
    return vc[["group", "var1", "var2"]].reset_index(drop=True)


def covparm_table(res) -> pd.DataFrame:
    """SAS's "Covariance Parameter Estimates": group, var1, var2, estimate, se, z, p.

    Rows as ``res.varcorr``; estimate = variance or covariance; se = √diag Cov(φ̂) (delta method, see
    :func:`vcov_covparms`); z = estimate/se; p one-sided P(Z > z) for variances (bounded below by 0,
    SAS's ``Pr > Z``), two-sided for covariances.  Variances estimated as exactly 0 (boundary) and
    their covariances get se = NaN.
    """

    from ..spec.structinfo import structure_info

    if structure_info(res) is not None:
        return structured_covparm_table(res)
    est, V = _covparm_parts(res)
    rows = _covparm_rows(res)
    se = np.sqrt(np.maximum(np.diag(V), 0.0))
    is_cov = rows["var2"].notna().to_numpy()
    zero = np.zeros(len(rows), bool)
    vc = res.varcorr
    for i in range(len(rows)):
        if not is_cov[i] and est[i] == 0:
            zero[i] = True
    for i in np.flatnonzero(is_cov):
        g = rows.loc[i, "group"]
        for v in (rows.loc[i, "var1"], rows.loc[i, "var2"]):
            j = vc.index[(vc["group"] == g) & (vc["var1"] == v) & vc["var2"].isna()]
            if len(j) and est[j[0]] == 0:
                zero[i] = True
    se = np.where(zero, np.nan, se)
    z = est / se
    p = np.where(is_cov, 2 * norm_sf(np.abs(z)), norm_sf(z))
    out = rows.copy()
    out["estimate"], out["se"], out["z"], out["p"] = est, se, z, p
    return out


def structured_covparm_table(res) -> pd.DataFrame:
    """The covariance parameters of a structured fit, each structure's own (:mod:`jaxmix.spec.re_structure`,
    :mod:`jaxmix.spec.residual`): group, var1, var2, kind (variance, covariance, rho, ratio), estimate, se, z, p.

    se from the exact Hessian of the deviance with σ not profiled (:mod:`jaxmix.fitting.structured`);
    p one-sided for variances, two-sided for correlations and covariances, and for SD ratios the
    two-sided test of ratio = 1."""

    from ..spec.structinfo import structure_info

    out = structure_info(res)["table"].copy()
    est, se = out["estimate"].to_numpy(float), out["se"].to_numpy(float)
    kind = out["kind"].to_numpy()
    se = np.where((kind == "variance") & (est == 0), np.nan, se)
    centre = np.where(kind == "ratio", 1.0, 0.0)
    z = (est - centre) / se
    out["se"], out["z"] = se, z
    out["p"] = np.where(kind == "variance", norm_sf(z), 2 * norm_sf(np.abs(z)))
    return out


def _covparm_labels(res) -> list[str]:
    out = []
    for _, r in _covparm_rows(res).iterrows():
        if r["group"] == "Residual":
            out.append("Residual")
        elif pd.isna(r["var2"]):
            out.append(f"{r['group']}: {r['var1']}")
        else:
            out.append(f"{r['group']}: {r['var1']}, {r['var2']}")
    return out


def vcov_covparms(res) -> pd.DataFrame:
    """Asymptotic covariance of the variance/covariance estimates (rows of :func:`covparm_table`)."""
    from ..spec.structinfo import structure_info

    info = structure_info(res)
    if info is not None:
        lab = [" ".join(str(v) for v in r if v is not None and v == v) for r in
               info["table"][["group", "var1", "var2"]].itertuples(index=False)]
        return pd.DataFrame(info["vcov"], index=lab, columns=lab)
    _, V = _covparm_parts(res)
    lab = _covparm_labels(res)
    return pd.DataFrame(V, index=lab, columns=lab)


# ---------------------------------------------------------------------------------------------
# ICC and R²
def _re_variances(res) -> dict[str, float]:
    """Per grouping factor, the mean over rows of z_i′Ω z_i (the variance the term adds to the linear predictor)."""
    out: dict[str, float] = {}
    for t, om in zip(res.design.terms, res.term_covariances()):
        v = float(np.mean(np.einsum("na,ab,nb->n", t.Z, om, t.Z)))
        out[t.group] = out.get(t.group, 0.0) + v
    return out


def _residual_variance(res, re_total: float) -> float:
    """σ²_ε: σ² (Gaussian) or the distribution-specific variance on the latent scale (Nakagawa et al. 2017)."""
    if res.family == "gaussian":
        from ..spec.structinfo import has_residual_structure, refuse_structured

        if has_residual_structure(res):
            refuse_structured(res, "the ICC and R² (one residual variance)")
        return res.sigma**2
    if res.family == "binomial":
        return {"logit": np.pi**2 / 3, "probit": 1.0, "cloglog": np.pi**2 / 6}.get(res.link, np.nan)
    if res.family == "poisson" and res.link == "log":
        lam = np.exp(np.mean(res.design.X @ res.beta + res.design.offset) + re_total / 2)
        return float(np.log1p(1.0 / lam))
    raise JaxmixError(f"no latent residual variance for family {res.family!r} with link {res.link!r}")


def _fixed_variance(res) -> float:
    eta = res.design.X @ res.beta
    return float(np.var(eta, ddof=1)) if eta.size > 1 else 0.0


def icc(res) -> pd.DataFrame:
    """Intraclass correlation per grouping factor (Nakagawa, Johnson & Schielzeth 2017).

    v_g = mean_i z_i′Ω_g z_i (= σ²_g for a random intercept); icc = v_g / (Σ_g v_g + σ²_ε) and
    icc_conditional = v_g / (σ²_f + Σ_g v_g + σ²_ε), σ²_f = Var(Xβ̂), σ²_ε as in :func:`r2`.
    """
    if not res.is_mixed:
        raise JaxmixError("the ICC needs a model with random effects")
    v = _re_variances(res)
    tot = sum(v.values())
    se2 = _residual_variance(res, tot)
    sf = _fixed_variance(res)
    return pd.DataFrame({"variance": list(v.values()),
                         "icc": [x / (tot + se2) for x in v.values()],
                         "icc_conditional": [x / (sf + tot + se2) for x in v.values()]},
                        index=pd.Index(list(v), name="group"))


def r2(res) -> pd.Series:
    """Marginal and conditional R² (Nakagawa & Schielzeth 2013; Johnson 2014 for random slopes).

    R²_m = σ²_f / (σ²_f + Σ v_g + σ²_ε), R²_c = (σ²_f + Σ v_g) / (σ²_f + Σ v_g + σ²_ε) with σ²_f = Var(Xβ̂)
    (n − 1 denominator), v_g as in :func:`icc`, σ²_ε = σ² (Gaussian), π²/3 (logit), 1 (probit), π²/6
    (cloglog), log(1 + 1/λ) with λ = exp(mean(Xβ̂) + Σ v_g/2) (Poisson, log link; lognormal approximation).
    """
    if not res.is_mixed:
        raise JaxmixError("R² for mixed models needs random effects; use res.r_squared for least squares")
    v = sum(_re_variances(res).values())
    se2 = _residual_variance(res, v)
    sf = _fixed_variance(res)
    tot = sf + v + se2
    return pd.Series({"marginal": sf / tot, "conditional": (sf + v) / tot}, name="r2")


# the results' methods of these names (jaxmix.results.mixed.register_extension)
register_extension("coef_table", coef_table)
register_extension("wald_test", wald_test)
register_extension("type3_anova", type3_anova)
register_extension("covparm_table", covparm_table)
register_extension("vcov_covparms", vcov_covparms)
register_extension("icc", icc)
register_extension("r2", r2)
