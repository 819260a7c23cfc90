"""The GEE estimating equations, solved as statsmodels' ``GEE.fit`` solves them, for K outcomes at once.

For clusters i with rows y_i, means μ_i = g⁻¹(X_i β + o_i), D_i = ∂μ_i/∂β = diag(∂μ/∂η) X_i and
working covariance V_i = A_i^½ R(α) A_i^½ (A_i = diag V(μ_i); the scale φ cancels), β solves

    U(β) = Σ_i D_iᵀ V_i⁻¹ (y_i − μ_i) = 0.

Iteration (``statsmodels.genmod.generalized_estimating_equations.GEE.fit`` with its defaults):
start from the GLM fit (IRLS, i.e. independence scoring to convergence); then repeat
β ← β + B⁻¹ U(β) with B = Σ_i D_iᵀ V_i⁻¹ D_i (Fisher scoring), stop once ‖U(β)‖₂ < ``ctol`` at the
step's start (after at least one update of α when α is estimated), else re-estimate α from the
Pearson residuals (:func:`jaxmix.gee.corr.estimate_dependence`).  Then

    cov_naive  = φ̂ B⁻¹,        cov_robust = B⁻¹ (Σ_i U_i U_iᵀ) B⁻¹   (the sandwich),

with U_i the cluster's term of U and φ̂ = 1 (binomial, Poisson) or Σ r² / (N − p) (Gaussian).
Binomial trials n_j enter as prior weights: the response is the proportion y_j/n_j and
A_i = diag(V(μ)/n), as in a GLM with trials (and geepack's ``weights``).
Each outcome stops on its own test; the arrays of those still running are updated together.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import JaxmixError
from .corr import Clusters, estimate_dependence, gram, initial_dependence, quad_forms
from .family import GeeFamily

__all__ = ["GeeSolution", "solve_gee", "glm_start"]


@dataclass
class GeeSolution:
    """Per outcome (leading axis K): β, both covariances, α, φ, iterations, convergence."""

    beta: np.ndarray  # (K, p)
    cov_robust: np.ndarray  # (K, p, p)
    cov_naive: np.ndarray  # (K, p, p)
    dep: np.ndarray  # (K,) or (K, q, q)
    scale: np.ndarray  # (K,)
    n_iter: np.ndarray  # (K,)
    score_norm: np.ndarray  # (K,)
    converged: np.ndarray  # (K,) bool
    nobs: np.ndarray  # (K,)


def _solve(B: np.ndarray, b: np.ndarray) -> np.ndarray:
    """B⁻¹ b per outcome; the pseudo-inverse where B is singular (as statsmodels)."""
    try:
        return np.linalg.solve(B, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return np.einsum("kpq,kq->kp", np.linalg.pinv(B), b)


def _scaled(fam: GeeFamily, X, offset, beta, Y, M, prior=1.0):
    """u = D/√(V(μ)/w) (K, n, p), e = (y − μ)/√(V(μ)/w) (K, n), both zero where M = 0 (w: prior weights)."""
    eta = beta @ X.T + offset
    mu = fam.linkinv(eta)
    sd = np.sqrt(fam.variance(mu) / prior)
    u = X[None] * (fam.mu_eta(eta) / sd * M)[..., None]
    e = np.where(M > 0, (Y - mu) / sd, 0.0)
    return u, e


def glm_start(fam: GeeFamily, X, offset, Y, M, prior=1.0, max_iter: int = 100, tol: float = 1e-12) -> np.ndarray:
    """The GLM (independence) estimates of every outcome by IRLS from statsmodels' starting μ.

    First step: weighted least squares of z = η₀ + (y − μ₀)/μ'(η₀) on X with weights μ'(η₀)²/V(μ₀),
    η₀ = g(μ₀); then Fisher scoring β ← β + (Σ u uᵀ)⁻¹ Σ u e until the step is below ``tol`` relative.
    """
    n_obs = M.sum(1, keepdims=True)
    ybar = np.where(M > 0, Y, 0.0).sum(1, keepdims=True) / n_obs
    mu0 = fam.start_mu(np.where(M > 0, Y, ybar), ybar)
    eta0 = fam.linkfun(mu0)
    d0 = fam.mu_eta(eta0)
    w = d0 * d0 / fam.variance(mu0) * M * prior
    z = eta0 - offset + (np.where(M > 0, Y, mu0) - mu0) / d0
    beta = _solve(np.matmul(X.T * w[:, None, :], X), (w * z) @ X)
    for _ in range(max_iter):
        u, e = _scaled(fam, X, offset, beta, Y, M, prior)
        step = _solve(gram(u), np.matmul(e[:, None, :], u)[:, 0])
        beta = beta + step
        if np.all(np.abs(step) <= tol * (1.0 + np.abs(beta))):
            break
    return beta


def _scale(fam: GeeFamily, e: np.ndarray, M: np.ndarray, p: int) -> np.ndarray:
    """φ̂: 1 for binomial/Poisson, Σ r² / (N − p) for the Gaussian (statsmodels' ``estimate_scale``)."""
    if fam.fixed_scale:
        return np.ones(e.shape[0])
    return (e * e).sum(1) / (M.sum(1) - p)


def solve_gee(fam: GeeFamily, corstr: str, cl: Clusters, X: np.ndarray, offset: np.ndarray, Y: np.ndarray,
              M: np.ndarray, maxiter: int = 60, ctol: float = 1e-6, prior=1.0, start=None) -> GeeSolution:
    """Fit K outcomes (rows of Y, observed where M = 1) on the cluster-sorted rows ``X``, ``offset``
    (``prior``: per-row prior weights, the binomial trials, with Y the proportions).  ``start`` (K, p):
    β to start from (an outcome's row that is not finite starts from its GLM fit, the default)."""
    K, p = Y.shape[0], X.shape[1]
    if start is None:
        beta = glm_start(fam, X, offset, Y, M, prior)
    else:
        beta = np.array(start, dtype=float).reshape(K, p)
        redo = ~np.all(np.isfinite(beta), axis=1)
        if redo.any():
            beta[redo] = glm_start(fam, X, offset, Y[redo], M[redo], prior)
    dep = initial_dependence(corstr, K, cl)
    sizes = np.add.reduceat(M, cl.starts, axis=1)
    update_dep = corstr != "independence" and sizes.max(initial=0) > 1
    n_iter = np.zeros(K, int)
    norm = np.full(K, np.inf)
    act = np.arange(K)
    u, e = _scaled(fam, X, offset, beta, Y, M, prior)  # at the current β of the outcomes in ``act``
    for itr in range(maxiter):
        g, B = quad_forms(corstr, dep[act], cl, M[act], u, e)
        score = g.sum(1)
        beta[act] += _solve(B, score)
        norm[act] = np.sqrt((score * score).sum(1))
        n_iter[act] = itr + 1
        stop = norm[act] < ctol
        if update_dep:
            stop &= itr > 0
        act = act[~stop]
        if not len(act):
            break
        u, e = _scaled(fam, X, offset, beta[act], Y[act], M[act], prior)
        if update_dep:
            dep[act] = estimate_dependence(corstr, cl, M[act], e, p)
            if corstr == "unstructured":
                _check_pd(dep[act])
    u, e = _scaled(fam, X, offset, beta, Y, M, prior)
    g, B = quad_forms(corstr, dep, cl, M, u, e)
    try:
        Binv = np.linalg.inv(B)
    except np.linalg.LinAlgError:
        Binv = np.linalg.pinv(B)
    scale = _scale(fam, e, M, p)
    meat = np.einsum("kgp,kgq->kpq", g, g)
    return GeeSolution(beta=beta, cov_robust=Binv @ meat @ Binv, cov_naive=Binv * scale[:, None, None], dep=dep,
                       scale=scale, n_iter=n_iter, score_norm=norm, converged=norm < ctol, nobs=M.sum(1))


def _check_pd(R: np.ndarray) -> None:
    try:
        np.linalg.cholesky(R)
    except np.linalg.LinAlgError:
        raise JaxmixError("the estimated unstructured working correlation is not positive definite "
                          "(too few clusters for its time points?); use corstr='exchangeable' or 'ar1'") from None
