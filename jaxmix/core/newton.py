"""Bounded minimisation on the host: L-BFGS-B, then Newton steps on a Hessian from the exact gradient.

The objective is one compiled program returning the value and its exact gradient; the optimiser
around it is numpy and scipy, so nothing of the loop is compiled.  Steps:

1. ``scipy.optimize.minimize(method="L-BFGS-B")`` with the lower bounds (0 for the diagonal of Λ).
2. Newton polish: the Hessian H by central differences of the exact gradient (2k gradient calls),
   the projected Newton step −H_FF⁻¹g_F on the free coordinates F (those not held at their bound by
   a gradient pointing outwards), eigenvalue-modified so that directions of negative curvature are
   followed downhill, and a backtracking line search, until the gradient is at its own precision
   (or stops shrinking); H is kept between full steps that shrink the decrement tenfold.  The Newton decrement λ² = g_F′H_FF⁻¹g_F (≈ 2·(f − f*)) does not depend
   on the scale of the parameters: the convergence test uses it beside the gradient.
3. Boundary: coordinates with a lower bound that end within ``zero_tol`` of it are tried exactly at
   the bound (and the rest polished again); the boundary point is kept when its objective is not
   worse (MixedModels.jl's rule).

The result is "converged" (status 0) only when the gradient on F is below tolerance, the decrement
is small and H_FF has no negative eigenvalue; otherwise a status of :data:`jaxmix.optimize.STATUS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
from scipy.optimize import minimize as scipy_minimize

__all__ = ["OPTIMIZER", "HostResult", "Precision", "FLOAT64", "FLOAT32", "minimize_bounded", "fd_hessian"]

#: the name the results give this optimiser (``res.optim.optimizer``)
OPTIMIZER = ("L-BFGS-B (scipy) on the exact gradient, then Newton steps on the central-difference "
             "Hessian of the exact gradient")
NEG_CURV = 1e-7  # relative size of an eigenvalue treated as negative curvature
#: L-BFGS-B stops on a relative decrease below this; the Newton polish takes it from there
LBFGSB_FTOL = 1e-10


class Precision(NamedTuple):
    """Tolerances tied to the floating-point precision of the objective."""

    grad_rel: float  # the gradient of an objective f is known to about grad_rel·|f|
    dec_abs: float  # converged: Newton decrement below dec_abs + dec_rel·|f|
    dec_rel: float
    noise: float  # relative rounding noise of f's value
    fd_step: float  # relative step of the central differences


FLOAT64 = Precision(1e-8, 1e-6, 1e-9, 1e-11, 1e-4)
FLOAT32 = Precision(1e-4, 1e-2, 1e-5, 1e-6, 1e-2)


@dataclass
class HostResult:
    x: np.ndarray
    fun: float
    grad: np.ndarray  # at x (0 on coordinates held at their bound)
    hess: np.ndarray  # central-difference Hessian of the exact gradient at x
    hess_min_eig: float  # over the free coordinates
    decrement: float  # Newton decrement on the free coordinates
    n_iter: int
    n_eval: int
    on_boundary: np.ndarray  # coordinates held exactly at their bound
    status: int


class _Counted:
    """The value-and-gradient function with an evaluation count; non-finite values become +inf."""

    def __init__(self, vg):
        self.vg, self.n = vg, 0

    def __call__(self, x):
        self.n += 1
        f, g = self.vg(np.asarray(x, dtype=float))
        f, g = float(f), np.asarray(g, dtype=float)
        if not (np.isfinite(f) and np.all(np.isfinite(g))):
            return np.inf, np.zeros_like(g)
        return f, g


def fd_hessian(vg: Callable, x: np.ndarray, h_rel: float = 1e-4) -> np.ndarray:
    """Symmetrised central differences of the exact gradient: H[:, j] ≈ (g(x + hⱼeⱼ) − g(x − hⱼeⱼ)) / 2hⱼ."""
    k = x.shape[0]
    H = np.zeros((k, k))
    for j in range(k):
        h = h_rel * max(1.0, abs(x[j]))
        e = np.zeros(k)
        e[j] = h
        H[:, j] = (vg(x + e)[1] - vg(x - e)[1]) / (2.0 * h)
    return 0.5 * (H + H.T)


def _newton_step(g, H, free, at_bound):
    """Eigenvalue-modified Newton step on the free coordinates, its decrement and H_FF's eigenvalues.

    Along a direction of negative curvature with no slope (a saddle, or θ = 0 of a criterion that is
    even in θ) the step goes towards the feasible side of the coordinates at their bound."""
    F = np.flatnonzero(free)
    step = np.zeros_like(g)
    if F.size == 0:
        return step, 0.0, np.array([np.inf])
    w, V = np.linalg.eigh(H[np.ix_(F, F)])
    gv = V.T @ g[F]
    scale = np.max(np.abs(w)) if w.size else 1.0
    wabs = np.maximum(np.abs(w), 1e-10 * scale + 1e-14)
    coef = -gv / wabs
    neg = w < -NEG_CURV * (1.0 + scale)
    # negative curvature: downhill along the eigenvector, at least 0.1 (at a saddle g ≈ 0)
    inward = np.where(V[at_bound[F]].sum(axis=0) >= 0, 1.0, -1.0)
    sign = np.where(gv > 0, -1.0, np.where(gv < 0, 1.0, inward))
    coef = np.where(neg, sign * np.maximum(np.abs(coef), 0.1), coef)
    step[F] = V @ coef
    return step, float(np.sum(gv**2 / wabs)), w


def _polish(vg, x, f, g, lower, fixed, gtol, max_newton, prec):
    """Projected Newton iterations from x until the largest free gradient entry is below ``gtol`` or
    stops shrinking; ``fixed`` coordinates stay where they are.

    Next to the optimum the decrease of f falls below its rounding noise while a Newton step still
    shrinks the gradient: a step is taken when f decreases (Armijo), or when f rises by no more than
    its noise and the largest free gradient entry at least halves."""
    it = 0
    H = fd_hessian(vg, x, prec.fd_step)
    while True:
        # held at the bound: a gradient pushing outwards, or none and no negative curvature
        at_bound = x <= lower
        free = ~(fixed | (at_bound & ((g > 0) | ((g == 0) & (np.diag(H) >= 0)))))
        step, dec, w = _newton_step(g, H, free, at_bound)
        minimum = w[0] >= -NEG_CURV * (1.0 + np.max(np.abs(w)))
        gmax = np.max(np.abs(g[free])) if free.any() else 0.0
        if (gmax < gtol and minimum) or it >= max_newton:
            return x, f, g, H, free, dec, w, it
        t, moved = 1.0, False
        noise = prec.noise * (1.0 + abs(f))
        for _ in range(30):
            xn = np.maximum(x + t * step, lower)
            xn[fixed] = x[fixed]
            fn, gn = vg(xn)
            if fn < f - 1e-4 * t * max(dec, 0.0) or (
                    fn <= f + noise and (np.max(np.abs(gn[free])) if free.any() else 0.0) < 0.5 * gmax):
                moved = True
                break
            t *= 0.5
        it += 1
        if not moved:
            return x, f, g, H, free, dec, w, it
        x, f, g = xn, fn, gn
        # near the optimum the Hessian hardly changes: keep it while full steps shrink the decrement
        # tenfold (2k gradient calls saved per step); take it anew after a shortened or slow step
        if t < 1.0 or _newton_step(g, H, free, x <= lower)[1] > 0.1 * dec:
            H = fd_hessian(vg, x, prec.fd_step)


def minimize_bounded(vg: Callable, x0: np.ndarray, lower: np.ndarray, *, gtol: float = 1e-4,
                     max_iter: int = 500, zero_tol: float = 1e-4, max_newton: int = 50,
                     prec: Precision = FLOAT64) -> HostResult:
    """Minimise f from ``x0`` subject to x ≥ ``lower`` (−inf for unbounded), given ``vg(x) -> (f, ∇f)``.

    Args:
      gtol: tolerance on the largest gradient entry on the free coordinates (objective units);
        1e-8·|f| is added, the precision to which the gradient of a large objective is known.
      max_iter: L-BFGS-B iteration limit.
      zero_tol: bounded coordinates within this of their bound are tried exactly at it.
      max_newton: Newton iteration limit of each polish.
      prec: :data:`FLOAT64` or :data:`FLOAT32`, the precision of the objective's values.
    """
    fun = _Counted(vg)
    x0 = np.asarray(x0, dtype=float)
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    k = x0.shape[0]
    if k == 0:
        f, g = fun(x0)
        return HostResult(x0, f, g, np.zeros((0, 0)), np.inf, 0.0, 0, fun.n, np.zeros(0, bool),
                          0 if np.isfinite(f) else 2)
    opt = scipy_minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                         options=dict(maxiter=max_iter, ftol=LBFGSB_FTOL, gtol=gtol * 1e-2, maxcor=20))
    x = np.maximum(np.asarray(opt.x, dtype=float), lower)
    f, g = fun(x)
    n_iter = int(opt.nit)
    if not np.isfinite(f):
        return HostResult(x, f, g, np.full((k, k), np.nan), np.nan, np.nan, n_iter, fun.n,
                          np.zeros(k, bool), 2)
    gtol_f = lambda f: gtol + prec.grad_rel * abs(f)  # noqa: E731
    # the polish goes on to the gradient's own precision (Newton converges quadratically: a step or two)
    pol_gtol = lambda f: 1e-3 * (gtol + prec.grad_rel * abs(f))  # noqa: E731
    nofix = np.zeros(k, dtype=bool)
    x, f, g, H, free, dec, w, it = _polish(fun, x, f, g, lower, nofix, pol_gtol(f), max_newton, prec)
    n_iter += it
    near = np.isfinite(lower) & (x > lower) & (x - lower < zero_tol)
    if near.any():  # try the bound itself
        xb = np.where(near, lower, x)
        fb, gb = fun(xb)
        if np.isfinite(fb):
            xb, fb, gb, Hb, freeb, decb, wb, itb = _polish(fun, xb, fb, gb, lower, near, pol_gtol(fb),
                                                          max_newton, prec)
            n_iter += itb
            if fb <= f + 1e-8 * (1.0 + abs(f)):
                x, f, g, H, free, dec, w = xb, fb, gb, Hb, freeb, decb, wb
    held = ~free
    g = np.where(held, 0.0, g)
    gmax = np.max(np.abs(g)) if k else 0.0
    minimum = w[0] >= -NEG_CURV * (1.0 + np.max(np.abs(w)))
    if not np.isfinite(f):
        status = 2
    elif not minimum:
        status = 4
    elif gmax < gtol_f(f) and dec < max(prec.dec_abs, 1e-2 * gtol) + prec.dec_rel * abs(f):  # f within ~dec/2 of f*
        status = 0
    else:
        status = 1 if n_iter >= max_iter else 3
    on_b = held & np.isfinite(lower) & (x <= lower)
    return HostResult(x, f, g, H, float(w[0]), float(dec), n_iter, fun.n, on_b, status)
