"""Bounded minimisation of many independent problems at once, on the host: quasi-Newton steps from
a finite-difference Hessian of the exact gradient, certified by a fresh one at the end.

The objective is one compiled program that returns values and exact gradients for a batch of
points, each belonging to one of k problems (outcomes); the optimiser around it is numpy, so
nothing of the loop is compiled, and every problem's step of one iteration is evaluated in one call
of the program (``vg(X, which) -> (f, G)``, X of shape (m, d), ``which`` the problem of each row).
``jaxmix.fit`` is the case k = 1.  Per problem, vectorised over the problems still running:

1. H₀ by forward differences of the exact gradient at the start, H[:, j] ≈ (g(x + hⱼeⱼ) − g(x))/hⱼ
   with hⱼ = 10⁻⁴·max(1, |xⱼ|) in float64 (the d points of every problem in one call), or a model of
   H₀ from the caller with only some of its columns by differences (``start_hess``).
2. Projected Newton steps −H_FF⁻¹g_F on the free coordinates F (those not held at their bound by a
   gradient pointing outwards), eigenvalue-modified so that directions of negative curvature are
   followed downhill, with a backtracking line search (Armijo; near the optimum a step whose value
   rises by no more than its rounding noise is taken when it at least halves the largest free
   gradient entry).  After a full step from a positive definite H, H is updated by BFGS
   (Hₖ₊₁ = Hₖ − Hs s′H/s′Hs + yy′/y′s, with s the step and y the change of gradient); after a
   shortened step or from an indefinite H it is taken anew by differences (Newton's method far
   from the optimum, quasi-Newton steps near it).
3. When the largest free gradient entry is at its own precision, or a step fails, H is taken anew
   by differences at the point, and the iteration goes on with it until the test passes on that
   Hessian or a step fails with it.  The returned Hessian is a difference Hessian at the returned
   point: forward, with the steering step or a smaller one (``record_step``, for standard errors:
   GLMMs), or central (``central=True``).
4. Boundary: coordinates with a lower bound that end within ``zero_tol`` of it are tried exactly at
   the bound (and the rest polished again); the boundary point is kept when its objective is not
   worse (MixedModels.jl's rule).

The Newton decrement λ² = g_F′H_FF⁻¹g_F (≈ 2·(f − f*)) does not depend on the scale of the
parameters.  A problem is "converged" (status 0) only when its gradient on F is below tolerance,
its decrement is small, H_FF has no negative eigenvalue and the values around x agree with H
(:func:`precise`); otherwise a status of :mod:`jaxmix.status` (1 iteration limit, 2 non-finite
objective, 3 stopped short, 4 not a minimum, 5 values within rounding noise).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np

__all__ = ["OPTIMIZER", "HostResult", "BatchResult", "Precision", "FLOAT64", "FLOAT32", "minimize_batch",
           "minimize_bounded", "fd_hessian", "fd_hessian_batch", "fd_points", "fd_assemble", "newton_steps",
           "precise"]

#: the name the results give this optimiser (``res.optim.optimizer``)
OPTIMIZER = ("projected quasi-Newton (BFGS from a finite-difference Hessian of the exact gradient), "
             "certified on a fresh finite-difference Hessian")
NEG_CURV = 1e-7  # relative size of an eigenvalue treated as negative curvature
MAX_HALVINGS = 30


class Precision(NamedTuple):
    """Tolerances tied to the floating-point precision of the objective."""

    grad_rel: float  # the gradient of an objective f is known to about grad_rel·|f|
    dec_abs: float  # converged: Newton decrement below dec_abs + dec_rel·|f|
    dec_rel: float
    noise: float  # relative rounding noise of f's value
    fd_step: float  # relative step of the central differences


FLOAT64 = Precision(1e-8, 1e-6, 1e-9, 1e-11, 1e-4)
FLOAT32 = Precision(1e-4, 1e-2, 1e-5, 1e-6, 1e-2)


class BatchResult(NamedTuple):
    """The optimiser's record for k problems (leading axis k)."""

    x: np.ndarray  # (k, d)
    fun: np.ndarray  # (k,)
    grad: np.ndarray  # (k, d) at x (0 on coordinates held at their bound)
    hess: np.ndarray  # (k, d, d) central-difference Hessian of the exact gradient at x
    hess_min_eig: np.ndarray  # (k,) over the free coordinates
    decrement: np.ndarray  # (k,) Newton decrement on the free coordinates
    n_iter: np.ndarray  # (k,)
    n_eval: np.ndarray  # (k,) points evaluated for the problem
    on_boundary: np.ndarray  # (k, d) coordinates held exactly at their bound
    status: np.ndarray  # (k,)

    def item(self, j: int) -> "HostResult":
        """Problem j's record."""
        return HostResult(self.x[j], float(self.fun[j]), self.grad[j], self.hess[j], float(self.hess_min_eig[j]),
                          float(self.decrement[j]), int(self.n_iter[j]), int(self.n_eval[j]), self.on_boundary[j],
                          int(self.status[j]))


class HostResult(NamedTuple):
    """One problem's record (:meth:`BatchResult.item`)."""

    x: np.ndarray
    fun: float
    grad: np.ndarray
    hess: np.ndarray
    hess_min_eig: float
    decrement: float
    n_iter: int
    n_eval: int
    on_boundary: np.ndarray
    status: int


class _Counted:
    """The batched value-and-gradient function with per-problem evaluation counts; a point with a
    non-finite value or gradient gets f = +inf and g = 0."""

    def __init__(self, vg, k: int):
        self.vg, self.n = vg, np.zeros(k, dtype=np.int64)

    def __call__(self, X, which):
        X = np.asarray(X, dtype=float)
        which = np.asarray(which, dtype=np.int64)
        if X.shape[0] == 0:
            return np.zeros(0), np.zeros_like(X)
        np.add.at(self.n, which, 1)
        f, G = self.vg(X, which)
        f = np.array(f, dtype=float).reshape(X.shape[0])
        G = np.array(G, dtype=float).reshape(X.shape)
        bad = ~(np.isfinite(f) & np.all(np.isfinite(G), axis=1))
        f[bad] = np.inf
        G[bad] = 0.0
        return f, G


def fd_points(X: np.ndarray, h_rel: float, central: bool):
    """The points at which :func:`fd_hessian_batch` takes gradients: (P (m·d, d), or (2·m·d, d)
    with ``central``; h (m, d)), point j of row i at x_i + h_ij e_j (then x_i − h_ij e_j)."""
    m, d = X.shape
    h = h_rel * np.maximum(1.0, np.abs(X))  # (m, d)
    E = np.eye(d)[None, :, :] * h[:, :, None]  # (m, d, d): row j = hⱼeⱼ
    if not central:
        return (X[:, None, :] + E).reshape(m * d, d), h
    return np.concatenate([X[:, None, :] + E, X[:, None, :] - E], axis=1).reshape(m * 2 * d, d), h


def fd_assemble(Gp: np.ndarray, h: np.ndarray, G: np.ndarray | None) -> np.ndarray:
    """The symmetrised Hessians from the gradients Gp at :func:`fd_points` (forward differences
    from the gradients G at X when given, else central ones)."""
    m, d = h.shape
    if G is not None:
        H = np.swapaxes((Gp.reshape(m, d, d) - G[:, None, :]) / h[:, :, None], 1, 2)
        return 0.5 * (H + np.swapaxes(H, 1, 2))
    Gc = Gp.reshape(m, 2, d, d)  # [point, ±, j, gradient]
    H = np.swapaxes((Gc[:, 0] - Gc[:, 1]) / (2.0 * h[:, :, None]), 1, 2)  # H[:, :, j]
    return 0.5 * (H + np.swapaxes(H, 1, 2))


def fd_hessian_batch(vg: Callable, X: np.ndarray, which: np.ndarray, h_rel: float = 1e-4,
                     G: np.ndarray | None = None, Gp: np.ndarray | None = None, forward: np.ndarray | None = None,
                     return_plus: bool = False):
    """Symmetrised differences of the exact gradient for m points at once (one call of ``vg``).

    Central (2·m·d points): H[:, j] ≈ (g(x + hⱼeⱼ) − g(x − hⱼeⱼ)) / 2hⱼ, hⱼ = h_rel·max(1, |xⱼ|).
    Forward, when the gradients G at X are given (m·d points): H[:, j] ≈ (g(x + hⱼeⱼ) − g(x)) / hⱼ,
    half the cost and less precise (O(h) against O(h²)): good enough to steer the iterations.
    ``forward`` (m,) bool picks per point (G needed where it is set; default: all forward when G is
    given).  Central with the forward half known: ``Gp`` (m, d, d), Gp[i, j] = g(xᵢ + hⱼeⱼ), is used
    where its first entry is finite, so only the d points xᵢ − hⱼeⱼ are new there.  ``return_plus``:
    also return g(x + hⱼeⱼ) (m, d, d), for a central Hessian at the same point later."""
    m, d = X.shape
    if d == 0 or m == 0:
        H0 = np.zeros((m, d, d))
        return (H0, np.zeros((m, d, d))) if return_plus else H0
    fwd = np.full(m, G is not None) if forward is None else np.asarray(forward, dtype=bool)
    known = np.zeros(m, dtype=bool) if Gp is None else (~fwd & np.isfinite(Gp[:, 0, 0]))
    h = h_rel * np.maximum(1.0, np.abs(X))  # (m, d)
    E = np.eye(d)[None, :, :] * h[:, :, None]  # (m, d, d): row j = hⱼeⱼ
    need_p, need_m = ~known, ~fwd  # the points x + hⱼeⱼ and x − hⱼeⱼ still to evaluate
    Pp, Pm = X[need_p][:, None, :] + E[need_p], X[need_m][:, None, :] - E[need_m]
    which = np.asarray(which)
    _, Gall = vg(np.concatenate([Pp.reshape(-1, d), Pm.reshape(-1, d)]),
                 np.concatenate([np.repeat(which[need_p], d), np.repeat(which[need_m], d)]))
    Gplus = np.empty((m, d, d))
    Gplus[need_p] = Gall[: Pp.shape[0] * d].reshape(-1, d, d)  # [point, j, gradient]
    if known.any():
        Gplus[known] = Gp[known]
    Gminus = np.empty((m, d, d))
    Gminus[need_m] = Gall[Pp.shape[0] * d :].reshape(-1, d, d)
    if fwd.any():
        Gminus[fwd] = np.asarray(G)[fwd][:, None, :]  # the forward differences' "minus" point is x itself
    span = np.where(fwd, 1.0, 2.0)[:, None, None] * h[:, :, None]
    H = np.swapaxes((Gplus - Gminus) / span, 1, 2)  # H[:, :, j]
    H = 0.5 * (H + np.swapaxes(H, 1, 2))
    return (H, Gplus) if return_plus else H


def _together(fun, parts):
    """``fun`` at the points of several (X, which) parts in one call; the (f, G) of each part."""
    f, G = fun(np.concatenate([pt[0] for pt in parts]), np.concatenate([pt[1] for pt in parts]))
    out, s = [], 0
    for X, _ in parts:
        out.append((f[s : s + X.shape[0]], G[s : s + X.shape[0]]))
        s += X.shape[0]
    return out


def fd_hessian(vg: Callable, x: np.ndarray, h_rel: float = 1e-4) -> np.ndarray:
    """:func:`fd_hessian_batch` for one point of a one-problem ``vg(x) -> (f, g)``."""
    x = np.asarray(x, dtype=float)

    def vgb(X, which):
        out = [vg(xi) for xi in X]
        return np.array([o[0] for o in out], dtype=float), np.array([o[1] for o in out], dtype=float)

    return fd_hessian_batch(vgb, x[None, :], np.zeros(1, dtype=np.int64), h_rel)[0]


NEG_STEP = 0.1  # shortest step along a direction of negative curvature, relative to max(1, |x|∞)


def _neg_step(X: np.ndarray) -> np.ndarray:
    """The shortest step along negative curvature, NEG_STEP·max(1, |x|∞), per row of X (m, d)."""
    return NEG_STEP * np.maximum(1.0, np.max(np.abs(np.where(np.isfinite(X), X, 0.0)), axis=1, initial=0.0))


def _jacobi(H: np.ndarray, on: np.ndarray):
    """The Jacobi-scaled Hessians on the coordinates ``on`` (m, d) bool: (S, D) with D = |diag H|^(-1/2)
    on them (1 where that is not finite and positive, 0 off them) and S = D H D with unit rows and
    columns off them (non-finite entries 0), so that one batched eigen-decomposition serves every set."""
    fm = on.astype(float)
    h = np.abs(np.diagonal(H, axis1=1, axis2=2))
    okd = (h > 0) & np.isfinite(h)
    D = np.where(okd, 1.0 / np.sqrt(np.where(okd, h, 1.0)), 1.0) * fm
    S = H * D[:, :, None] * D[:, None, :] + np.eye(H.shape[1])[None] * (1.0 - fm)[:, :, None]
    return np.where(np.isfinite(S), S, 0.0), D


def newton_steps(G: np.ndarray, H: np.ndarray, free: np.ndarray, at_bound: np.ndarray,
                 min_len: np.ndarray | None = None):
    """Eigenvalue-modified Newton steps on the free coordinates of m problems; their decrements, the
    smallest eigenvalue of each Jacobi-scaled D H_FF D (+inf with no free coordinate) and whether
    there is no negative curvature.

    The coordinates that are not free get unit rows and columns (and no gradient), so one batched
    ``eigh`` serves every free set.  Along a direction of negative curvature with no slope (a saddle,
    or θ = 0 of a criterion that is even in θ) the step goes towards the feasible side of the
    coordinates at their bound.  Along a direction of negative curvature the step is at least
    ``min_len`` (m,) long in the original coordinates (largest entry): near θ = 0 of a criterion
    that is even in θ the Newton step −g/|H| equals θ, and the iterations would only double it."""
    m, d = G.shape
    if d == 0:
        return np.zeros((m, 0)), np.zeros(m), np.full(m, np.inf), np.ones(m, dtype=bool)
    fm = free.astype(float)
    # Jacobi scaling D = |diag H|^(-1/2): steps, decrement and curvature test do not change when a
    # coordinate is rescaled (a covariate measured in other units scales its θ or β entry)
    Hm, D = _jacobi(H, free)
    gm = np.where(free, G * D, 0.0)
    w, V = np.linalg.eigh(Hm)
    # eigenvectors of the unit block of fixed coordinates carry no gradient and get no step
    on_free = np.einsum("mdk,md->mk", V**2, fm) > 0.5
    gv = np.einsum("mdk,md->mk", V, gm)
    scale = np.max(np.where(on_free, np.abs(w), 0.0), axis=1, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    wabs = np.maximum(np.abs(w), 1e-10 * scale + 1e-14)
    coef = -gv / wabs
    neg = on_free & (w < -NEG_CURV * (1.0 + scale))
    bsum = np.einsum("mdk,md->mk", V, (at_bound & free).astype(float))
    inward = np.where(bsum >= 0, 1.0, -1.0)
    sign = np.where(gv > 0, -1.0, np.where(gv < 0, 1.0, inward))
    floor = 0.1
    if min_len is not None:  # per eigen-direction, the coefficient of a step min_len long
        length = np.max(np.abs(V * D[:, :, None]), axis=1)  # (m, k)
        floor = np.maximum(0.1, np.asarray(min_len, dtype=float)[:, None] / np.where(length > 0, length, np.inf))
    mag = np.maximum(np.abs(coef), floor)
    # downhill by a slope of rounding size would leave the feasible side at a bound (the projection
    # undoes the step; at θ = 0 of a criterion even in θ the slope is 0 up to rounding): go inwards,
    # where the curvature alone decides (a real slope keeps its sign: against it, short steps rise)
    out = (bsum != 0) & (sign != inward) & (np.abs(gv) < 1e-6 * np.abs(w) * mag)
    sign = np.where(out, inward, sign)
    coef = np.where(neg, sign * mag, coef)
    coef = np.where(on_free, coef, 0.0)
    step = np.einsum("mdk,mk->md", V, coef) * D
    dec = np.sum(np.where(on_free, gv**2 / wabs, 0.0), axis=1)
    wmin = np.min(np.where(on_free, w, np.inf), axis=1)
    is_min = ~np.any(neg, axis=1)
    return step, dec, wmin, is_min


def _free(X, G, H, lower, fixed, gtiny=None):
    """Coordinates not held: held are the fixed ones and those at their bound with a gradient
    pushing outwards, unless the curvature along the coordinate is negative and outweighs that
    gradient within a step of NEG_STEP·max(1, |x|∞) (gⱼα − ½|Hⱼⱼ|α² < 0 at α of that length: at θ = 0
    of a criterion that is even in θ the gradient is 0, and only the curvature shows the way off the
    bound).  Bound coordinates whose gradient is below ``gtiny`` (m,) (its rounding size) are released
    together when the Hessian on them and the free coordinates has a direction of negative curvature
    (a zero column of Λ can have none along its own entries and one across them)."""
    at_bound = X <= lower
    diag = np.diagonal(H, axis1=1, axis2=2)
    curved = (diag < 0) & (G < 0.5 * np.abs(diag) * _neg_step(X)[:, None])
    held = fixed | (at_bound & (G >= 0) & ~curved)
    if gtiny is not None:
        flat = held & ~fixed & at_bound & (G < np.asarray(gtiny)[:, None])
        P = np.flatnonzero(flat.any(axis=1))
        if P.size:
            w = np.linalg.eigvalsh(_jacobi(H[P], ~held[P] | flat[P])[0])
            neg = w[:, 0] < -NEG_CURV * (1.0 + np.max(np.abs(w), axis=1))
            held[P[neg]] &= ~flat[P[neg]]
    return ~held, at_bound


def _bfgs(H, s, y):
    """BFGS update of Hessian approximations, and where it was made (not where y′s or s′Hs is not
    safely positive)."""
    Hs = np.einsum("mij,mj->mi", H, s)
    sHs = np.einsum("mi,mi->m", s, Hs)
    sy = np.einsum("mi,mi->m", s, y)
    ok = (sy > 1e-10 * np.linalg.norm(s, axis=1) * np.linalg.norm(y, axis=1)) & (sHs > 0)
    sy_, sHs_ = np.where(ok, sy, 1.0), np.where(ok, sHs, 1.0)
    upd = H - np.einsum("mi,mj->mij", Hs, Hs) / sHs_[:, None, None] + np.einsum("mi,mj->mij", y, y) / sy_[:, None, None]
    return np.where(ok[:, None, None], upd, H), ok


def _mirror(x: np.ndarray, xc: np.ndarray, mirror) -> np.ndarray:
    """The signs (m, d) that bring the trial points xc (m, d) of steps from x back to the feasible side
    of the objective's sign symmetries: for each (j, idx) of ``mirror`` where xcⱼ < 0 and the mirrored
    point is nearer the bound than x (|xcⱼ| < xⱼ), coordinates j and idx are negated (f(x) = f(x with
    them negated); θⱼⱼ of a column of Λ and the entries below it).  A step that overshoots the bound by
    more is not trusted past it (it is projected onto it)."""
    r = np.ones_like(xc)
    for j, idx in mirror:
        neg = (xc[:, j] < 0.0) & (-xc[:, j] < x[:, j])
        if neg.any():
            r[neg, j] = -1.0
            for i in idx:
                r[neg, i] = -1.0
    return r


def _descend(fun, X, F, G, which, lower, fixed, gtol_of, dtol_of, max_iter, prec, central=False, mirror=(),
             record_step=None, start_hess=None):
    """Projected (quasi-)Newton iterations for m problems until each one's largest free gradient
    entry is below ``gtol_of(f)`` and its Newton decrement below ``dtol_of(f)`` on a Hessian taken at
    the point, or a step fails on one.

    ``mirror``: sign symmetries (j, idx) of the objective, f(x) = f(x with xⱼ and x_idx negated), with
    xⱼ bounded below by 0.  A trial point with xⱼ below 0 (by less than xⱼ was above it) is evaluated
    both reflected (xⱼ and x_idx negated: the step of the objective extended evenly across the bound)
    and projected onto the bound, in the same call, and the lower of the two is the trial point.  The
    projection alone would stop at xⱼ = 0, where such an objective has no slope along xⱼ: a saddle,
    when the optimum has xⱼ > 0, that only a difference Hessian there reveals (a crossed model whose
    small variance's start is far above it: 27 → 19 evaluations).  The BFGS update after a reflected
    step is made on the side the step started from and reflected (R H R, R = diag(±1)).

    ``record_step``: the Hessian that certifies a point (taken where the test passes on a BFGS Hessian)
    and the one returned are forward differences with this relative step instead of ``prec.fd_step``.

    Returns X, F, G, H (differences at X: central ones with ``central``), free, decrement, smallest eigenvalue of H_FF,
    whether H_FF has no negative curvature, and the iterations."""
    m, d = X.shape
    X, F, G = X.copy(), F.copy(), G.copy()
    # forward differences of the exact gradient (``exact``: taken at the current point, not updated);
    # central ones where the gradient's own precision is poor (float32)
    fwd = prec.fd_step
    gtiny_of = lambda f: prec.grad_rel * (1.0 + np.abs(f))  # noqa: E731  (a gradient of rounding size)
    steer_central = prec.fd_step >= 1e-3
    if steer_central:  # central differences throughout: the record is one of them
        record_step = None
    cen = np.zeros(m, dtype=bool)  # H by central differences at the point
    rec = np.zeros(m, dtype=bool)  # H by forward differences with ``record_step`` at the point
    # g(x + hⱼeⱼ) of the last forward-difference Hessian, while x has not moved (NaN otherwise): a
    # central Hessian at the same x then needs only the d points x − hⱼeⱼ
    plus = np.full((m, d, d), np.nan)

    def diff_hessian(R, use_central=steer_central, step=None):
        cen[R] = use_central
        rec[R] = step is not None
        if step is not None:  # forward differences with the record's step
            plus[R] = np.nan
            return fd_hessian_batch(fun, X[R], which[R], step, G[R])
        Hr, plus[R] = fd_hessian_batch(fun, X[R], which[R], fwd, G[R], plus[R], np.full(R.size, not use_central),
                                       return_plus=True)
        return Hr

    # Hessians whose gradients are evaluated in the same call as other points (fewer calls of the
    # program, the same points): hess_points now, hess_finish with their gradients
    def hess_points(R, step=None):
        P, h = fd_points(X[R], fwd if step is None else step, steer_central)
        return P, np.repeat(which[R], P.shape[0] // max(R.size, 1)), (R, h, None if steer_central else G[R].copy(),
                                                                       step is not None)

    def hess_finish(spec, Gp):
        R, h, GR, recorded = spec
        cen[R] = steer_central
        rec[R] = recorded
        H[R] = fd_assemble(Gp, h, GR)
        # g(x + hⱼeⱼ), for a central Hessian here later (with the steering step only)
        plus[R] = np.nan if recorded else Gp.reshape(R.size, -1, d, d)[:, 0]

    if start_hess is None or steer_central:
        H = diff_hessian(np.arange(m))
        exact = np.ones(m, dtype=bool)
    else:  # a model of H with its columns ``cols`` by forward differences (not exact: renewed before the test)
        H, cols = start_hess(X, which)
        H = np.array(H, dtype=float)
        cols = np.flatnonzero(cols)
        if cols.size:  # fd_points' points and steps of these columns only
            P, h = fd_points(X, fwd, False)
            P, h = P.reshape(m, d, d)[:, cols].reshape(-1, d), h[:, cols]
            _, Gp = fun(P, np.repeat(which, cols.size))
            Hc = (Gp.reshape(m, cols.size, d) - G[:, None, :]) / h[:, :, None]  # [point, column, row]
            H[:, :, cols] = np.swapaxes(Hc, 1, 2)
            H[:, cols, :] = Hc
            H[:, cols[:, None], cols[None, :]] = 0.5 * (Hc[:, :, cols] + np.swapaxes(Hc[:, :, cols], 1, 2))
        exact = np.zeros(m, dtype=bool)
    it = np.zeros(m, dtype=np.int64)
    free = np.ones((m, d), dtype=bool)
    dec, wmin, is_min = np.zeros(m), np.full(m, np.inf), np.ones(m, dtype=bool)
    running = np.isfinite(F)
    while running.any():
        A = np.flatnonzero(running)
        fr, atb = _free(X[A], G[A], H[A], lower, fixed[A], gtiny_of(F[A]))
        step, dA, wA, mA = newton_steps(G[A], H[A], fr, atb, _neg_step(X[A]))
        free[A], dec[A], wmin[A], is_min[A] = fr, dA, wA, mA
        gmax = np.max(np.where(fr, np.abs(G[A]), 0.0), axis=1) if d else np.zeros(A.size)
        small = (gmax < gtol_of(F[A])) & (dA < dtol_of(F[A])) & mA
        # a small gradient counts on an exact Hessian only: take one where H is BFGS's
        renew = small & ~exact[A]
        stop = (small & exact[A]) | (it[A] >= max_iter)
        running[A[stop]] = False
        renew_spec = None
        if renew.any():  # evaluated with the step's first trial points below
            R = A[renew]
            renew_spec = hess_points(R, record_step)
            exact[R] = True
        go = ~stop & ~renew
        if not go.any():
            if renew_spec is not None:
                hess_finish(renew_spec[2], fun(renew_spec[0], renew_spec[1])[1])
            continue
        B, step, dB, gmaxB = A[go], step[go], dA[go], gmax[go]
        frB = fr[go]
        t = np.ones(B.size)
        moved = np.zeros(B.size, dtype=bool)
        Xn, Fn, Gn = X[B].copy(), F[B].copy(), G[B].copy()
        Rn = np.ones((B.size, d))  # the reflection of each accepted point (``mirror``)
        pending = np.ones(B.size, dtype=bool)
        noise = prec.noise * (1.0 + np.abs(F[B]))
        for _ in range(MAX_HALVINGS):
            P = np.flatnonzero(pending)
            if P.size == 0:
                break
            xt = np.where(fixed[B[P]], X[B[P]], X[B[P]] + t[P, None] * step[P])
            rc = _mirror(X[B[P]], xt, mirror)
            xc = np.where(fixed[B[P]], X[B[P]], np.maximum(xt * rc, lower))
            # a step across a mirrored bound: the reflected and the projected points, the lower kept
            two = np.flatnonzero(np.any(rc < 0.0, axis=1))
            xp = np.maximum(xt[two], lower)  # xt is x itself on the fixed coordinates
            pts = (np.concatenate([xc, xp]), np.concatenate([which[B[P]], which[B[P[two]]]]))
            if renew_spec is not None:
                (fc, gc), (_, Gh) = _together(fun, [pts, renew_spec[:2]])
                hess_finish(renew_spec[2], Gh)
                renew_spec = None
            else:
                fc, gc = fun(*pts)
            fc, gc, fp, gp = fc[: P.size], gc[: P.size], fc[P.size :], gc[P.size :]
            lower_p = fp < fc[two]
            sw = two[lower_p]
            xc[sw], fc[sw], gc[sw], rc[sw] = xp[lower_p], fp[lower_p], gp[lower_p], 1.0
            gnew = np.max(np.where(frB[P], np.abs(gc), 0.0), axis=1) if d else np.zeros(P.size)
            ok = (fc < F[B[P]] - 1e-4 * t[P] * np.maximum(dB[P], 0.0)) | (
                (fc <= F[B[P]] + noise[P]) & (gnew < 0.5 * gmaxB[P]))
            Q = P[ok]
            Xn[Q], Fn[Q], Gn[Q], Rn[Q] = xc[ok], fc[ok], gc[ok], rc[ok]
            moved[Q] = True
            pending[Q] = False
            t[pending] *= 0.5
        it[B] += 1
        # failed steps: on a BFGS Hessian take an exact one and try again; on an exact one, stop
        failed = ~moved
        retry = B[failed & ~exact[B]]
        specs = []
        if retry.size:  # a failed step on an updated Hessian: one at the point, and again
            specs.append(hess_points(retry))
            exact[retry] = True
        running[B[failed & exact[B] & ~np.isin(B, retry)]] = False
        M = np.flatnonzero(moved)
        if M.size:
            BM, RM = B[M], Rn[M]
            # the step and the change of gradient on the side of the bound the step started from
            # (reflected back: the gradient at the reflected point of x is R g(x)), the update reflected
            s, y = RM * Xn[M] - X[BM], RM * Gn[M] - G[BM]
            X[BM], F[BM], G[BM] = Xn[M], Fn[M], Gn[M]
            plus[BM] = np.nan
            rec[BM] = cen[BM] = False
            # BFGS after a full step from a positive definite H (near the optimum); an exact
            # Hessian after a shortened step, from an indefinite H, or where the update fails
            Hu, upd = _bfgs(H[BM], s, y)
            Hu = Hu * RM[:, :, None] * RM[:, None, :]
            upd &= (t[M] == 1.0) & (wmin[BM] > 0)
            H[BM[upd]] = Hu[upd]
            exact[BM[upd]] = False
            R = BM[~upd]
            if R.size:
                specs.append(hess_points(R))
                exact[R] = False
        if specs:  # the retried and the new difference Hessians in one call
            for spec, (_, Gh) in zip(specs, _together(fun, [sp[:2] for sp in specs])):
                hess_finish(spec[2], Gh)
    # the record's Hessian is taken at the final point (central differences: for standard errors; where
    # the test passed on a forward-difference Hessian at this point, its d points x + hⱼeⱼ are reused)
    want_rec = ~rec if record_step is not None else np.zeros(m, dtype=bool)
    R = np.flatnonzero((~exact | (central & ~cen) | want_rec) & np.isfinite(F))
    if R.size:
        H[R] = diff_hessian(R, central or steer_central, None if central else record_step)
        fr, atb = _free(X[R], G[R], H[R], lower, fixed[R], gtiny_of(F[R]))
        _, dec[R], wmin[R], is_min[R] = newton_steps(G[R], H[R], fr, atb)
        free[R] = fr
    return X, F, G, H, free, dec, wmin, is_min, it


def precise(fun, X, F, H, free, which, tol, rise: float = 1e-8) -> np.ndarray:
    """Whether each problem's values at x and x ± δ agree with its Hessian to within ``tol``.

    δ spans the free eigen-directions of the Jacobi-scaled Hessian D H D (D = |diag H|^(-1/2)), with
    δ′Hδ/2 = ``rise`` (objective units, far below ``tol``), so that the quadratic model is exact there
    up to terms of order rise²: a larger second difference f(x + δ) + f(x − δ) − 2 f(x) − δ′Hδ is the
    objective's rounding noise, which hides its minimum (an LMM's cross-products at a residual SD
    below ~1e-3 of a group SD)."""
    m, d = X.shape
    if d == 0 or m == 0:
        return np.ones(m, dtype=bool)
    S, D = _jacobi(H, free > 0)
    w, V = np.linalg.eigh(S)
    wabs = np.maximum(np.abs(w), 1e-10 * np.max(np.abs(w), axis=1, keepdims=True) + 1e-14)
    nfree = np.maximum(free.sum(axis=1), 1.0)
    delta = D * np.einsum("mdk,mk->md", V, np.sqrt(2.0 * rise / nfree)[:, None] / np.sqrt(wabs))
    f2, _ = fun(np.concatenate([X + delta, X - delta]), np.concatenate([which, which]))
    second = f2[:m] + f2[m:] - 2.0 * F - np.einsum("mi,mij,mj->m", delta, H, delta)
    return np.abs(second) < tol


def minimize_batch(vg: Callable, X0: np.ndarray, lower: np.ndarray, *, gtol: float = 1e-4,
                   max_iter: int = 500, zero_tol: float = 1e-4, prec: Precision = FLOAT64,
                   central: bool = False, flips: Sequence[tuple[int, Sequence[int]]] = (),
                   mirror: Sequence[tuple[int, Sequence[int]]] = (), record_step: float | None = None,
                   start_hess: Callable | None = None) -> BatchResult:
    """Minimise k functions fⱼ from the rows of ``X0`` (k, d) subject to x ≥ ``lower`` (d,) (−inf for
    unbounded), given ``vg(X, which) -> (f, G)`` for points X (m, d) of problems ``which`` (m,).

    Args:
      gtol: tolerance on the largest gradient entry on the free coordinates (objective units);
        ``prec.grad_rel``·|f| is added, the precision to which the gradient of a large objective is
        known.  The iterations go on to a thousandth of it (Newton converges quadratically: a step
        or two); the status uses ``gtol`` itself and the decrement.
      max_iter: iteration limit per problem.
      zero_tol: bounded coordinates within this of their bound are tried exactly at it.
      prec: :data:`FLOAT64` or :data:`FLOAT32`, the precision of the objective's values.
      central: the returned Hessian by central differences (2d gradients, error O(h²)) instead of
        forward ones (d gradients, O(h)).
      record_step: the returned Hessian, and the one that certifies the optimum (the same d
        gradients), by forward differences with this relative step, smaller than ``prec.fd_step``'s
        (for standard errors at the cost of a forward Hessian: with 1e-5, GLMMs' standard errors
        within ~1e-5 of those of the exact Hessian, d gradients fewer than a central one).
      start_hess: ``start_hess(X, which) -> (H, cols)``, a model of each start's Hessian (m, d, d) and
        the columns (d,) bool to take instead by forward differences (their rows too): a GLMM's β
        block from its Fisher information, its θ columns by differences (2 gradients, not d).  The
        model steers the first steps only; the optimum is certified on a difference Hessian.
      flips: symmetries of the objective at a bound: (j, idx) says that where coordinate j is at its
        bound, negating the coordinates idx leaves f unchanged (a column of a Cholesky factor Λ whose
        diagonal θⱼⱼ is 0: ΛΛ′ does not change when its entries below the diagonal change sign).  The
        two points are then the same model, but only one of them can show that raising θⱼⱼ lowers f
        (∂f/∂θⱼⱼ = 2Σᵢ θᵢⱼ ∂f/∂Σᵢⱼ changes sign with them): a point that satisfies the bound's
        first-order condition in one parameterisation may not in the other.  Where the gradient at the
        flipped point pushes coordinate j off its bound, the descent goes on from there and its end is
        kept when the objective is lower.
      mirror: sign symmetries that hold everywhere, (j, idx): f(x) = f(x with xⱼ and x_idx negated), xⱼ
        bounded below by 0 (a column of Λ: θⱼⱼ and the entries below it).  A step across xⱼ = 0 is
        tried reflected as well as projected (see :func:`_descend`).
    """
    X0 = np.atleast_2d(np.asarray(X0, dtype=float))
    k, d = X0.shape
    lower = np.asarray(lower, dtype=float).reshape(d)
    fun = _Counted(vg, k)
    which = np.arange(k)
    X = np.maximum(X0, lower)
    F, G = fun(X, which)
    gtol_f = lambda f: gtol + prec.grad_rel * np.abs(f)  # noqa: E731
    pol = lambda f: 1e-3 * gtol_f(f)  # noqa: E731
    dtol_f = lambda f: np.maximum(prec.dec_abs, 1e-2 * gtol) + prec.dec_rel * np.abs(f)  # noqa: E731
    dpol = lambda f: 1e-3 * dtol_f(f)  # noqa: E731
    nofix = np.zeros((k, d), dtype=bool)

    def polish(X, F, G, which):
        """Descent from (X, F, G), then the coordinates near their bound tried exactly at it."""
        X, F, G, H, free, dec, wmin, is_min, it = _descend(fun, X, F, G, which, lower, nofix[which], pol, dpol,
                                                            max_iter, prec, central, mirror, record_step,
                                                            start_hess)
        near = np.isfinite(lower) & (X > lower) & (X - lower < zero_tol)
        tryb = np.flatnonzero(near.any(axis=1) & np.isfinite(F))
        if tryb.size:  # the bound itself
            Xb = np.where(near[tryb], lower, X[tryb])
            Fb, Gb = fun(Xb, which[tryb])
            Xb, Fb, Gb, Hb, freeb, decb, wb, minb, itb = _descend(fun, Xb, Fb, Gb, which[tryb], lower, near[tryb],
                                                                  pol, dpol, max_iter, prec, central, mirror,
                                                                  record_step)
            it[tryb] += itb
            keep = np.isfinite(Fb) & (Fb <= F[tryb] + 1e-8 * (1.0 + np.abs(F[tryb])))
            K, kb = tryb[keep], np.flatnonzero(keep)
            X[K], F[K], G[K], H[K], free[K] = Xb[kb], Fb[kb], Gb[kb], Hb[kb], freeb[kb]
            dec[K], wmin[K], is_min[K] = decb[kb], wb[kb], minb[kb]
        return [X, F, G, H, free, dec, wmin, is_min, it]

    state = polish(X, F, G, which)
    for _ in range(4 if flips else 0):  # the symmetric points of a bound (see ``flips``)
        X, F = state[0], state[1]
        Xf, kf, jf = [], [], []
        for j, idx in flips:
            idx = np.asarray(idx, dtype=np.int64)
            on = np.flatnonzero((X[:, j] <= lower[j]) & np.isfinite(F) & np.any(X[:, idx] != 0.0, axis=1))
            Xj = X[on].copy()
            Xj[:, idx] = -Xj[:, idx]
            Xf.append(Xj)
            kf.append(on)
            jf.append(np.full(on.size, j))
        Xf, kf, jf = np.concatenate(Xf), np.concatenate(kf), np.concatenate(jf)
        if kf.size == 0:
            break
        Ff, Gf = fun(Xf, kf)
        inward = Gf[np.arange(kf.size), jf] < -pol(Ff)  # the gradient there pushes θⱼ off its bound
        if not inward.any():
            break
        cand = polish(Xf[inward], Ff[inward], Gf[inward], kf[inward])
        kc = kf[inward]
        improved = False
        for i in np.argsort(cand[1]):  # per problem, its best candidate where it is lower
            kk = kc[i]
            if np.isfinite(cand[1][i]) and cand[1][i] < state[1][kk] - 1e-8 * (1.0 + np.abs(state[1][kk])):
                it_k = state[8][kk] + cand[8][i]
                for part, c in zip(state, cand):
                    part[kk] = c[i]
                state[8][kk] = it_k
                improved = True
        if not improved:
            break
    X, F, G, H, free, dec, wmin, is_min, it = state
    held = ~free
    G = np.where(held, 0.0, G)
    gmax = np.max(np.abs(G), axis=1) if d else np.zeros(k)
    status = np.where(gmax < gtol_f(F), 0, np.where(it >= max_iter, 1, 3))
    status = np.where(dec < dtol_f(F), status,
                      np.where(it >= max_iter, 1, 3))
    status = np.where(is_min, status, 4)
    dec_tol = dtol_f(F)
    C = np.flatnonzero(status == 0)
    if C.size:  # the values must agree with the Hessian: else the optimum is hidden in rounding noise
        tol_p = np.maximum(dec_tol[C], 100.0 * prec.noise * (1.0 + np.abs(F[C])))  # above float32's own noise
        ok = precise(fun, X[C], F[C], H[C], free[C].astype(float), which[C], tol_p)
        status[C[~ok]] = 5
    status = np.where(np.isfinite(F), status, 2)
    bad = ~np.isfinite(F)
    H = np.where(bad[:, None, None], np.nan, H)
    on_b = held & np.isfinite(lower) & (X <= lower)
    return BatchResult(X, F, G, H, np.where(bad, np.nan, wmin), np.where(bad, np.nan, dec), it, fun.n.copy(),
                       on_b, status.astype(np.int64))


def minimize_bounded(vg: Callable, x0: np.ndarray, lower: np.ndarray, **kw) -> HostResult:
    """:func:`minimize_batch` for one problem given ``vg(x) -> (f, g)``."""
    x0 = np.asarray(x0, dtype=float)

    def vgb(X, which):
        out = [vg(xi) for xi in X]
        return np.array([float(o[0]) for o in out]), np.array([np.asarray(o[1], dtype=float) for o in out])

    return minimize_batch(vgb, x0[None, :], lower, **kw).item(0)
