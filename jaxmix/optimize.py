"""The optimiser loop: optax L-BFGS on the exact gradient, then quasi-Newton steps from exact Hessians.

Everything here is pure and jit/vmap-able: a failed fit is a status code, never an exception, so one
bad outcome in a vmapped batch cannot stop the others.

The covariance parameters are optimised without bounds: the likelihood is unchanged when a column of Λ
changes sign, so an unconstrained optimum maps onto lme4's space (diagonal of Λ ≥ 0) by flipping
columns.  Diagonal entries that end within ``zero_tol``/√H_ii of 0 are then set exactly to 0 and the others
re-polished; the boundary fit is kept when its objective is not worse (MixedModels.jl's rule).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax import tree_utils as otu

from .linalg import eigh_sym, eigvalsh_sym
from .status import MESSAGES, OPTIMIZER, status_message

__all__ = ["OptResult", "minimize", "STATUS", "status_message"]

#: the optimiser's status codes (:mod:`jaxmix.status`, the one table for fit and sweep)
STATUS = {int(c): MESSAGES[c] for c in sorted(OPTIMIZER)}


class OptResult(NamedTuple):
    x: jnp.ndarray
    fun: jnp.ndarray
    grad: jnp.ndarray  # exact gradient at x (0 for coordinates fixed on the boundary)
    hess: jnp.ndarray  # exact Hessian at x over all coordinates
    hess_min_eig: jnp.ndarray  # smallest eigenvalue of the Hessian over the free coordinates
    n_iter: jnp.ndarray  # L-BFGS iterations
    n_eval: jnp.ndarray  # objective evaluations (L-BFGS line searches and Newton trials)
    on_boundary: jnp.ndarray  # bool mask: coordinates set exactly to 0
    status: jnp.ndarray  # key of STATUS
    aux: object = None  # the objective's carried state at the end (see minimize's aux0)


def _lbfgs(fun, x0, max_iter: int, gtol: float, rtol: float = 0.0):
    opt = optax.lbfgs(linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=30))
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        x, state, nev = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        ls = otu.tree_get(state, "info")
        nls = getattr(ls, "num_linesearch_steps", 1)
        return optax.apply_updates(x, updates), state, nev + nls

    def cont(carry):
        _, state, _ = carry
        k = otu.tree_get(state, "count")
        g = otu.tree_get(state, "grad")
        v = otu.tree_get(state, "value")
        err = otu.tree_norm(g)
        return (k == 0) | ((k < max_iter) & (err >= gtol + rtol * jnp.abs(v)) & jnp.isfinite(v))

    x, state, nev = jax.lax.while_loop(cont, step, (x0, opt.init(x0), jnp.asarray(0)))
    return x, otu.tree_get(state, "count"), nev


def _grad_hess(fun, x, aux, free):
    """Value, exact gradient and Hessian (one linearisation of the gradient), restricted to ``free``.

    ``fun(x, aux) -> (value, aux)``; the Hessian is taken at fixed ``aux`` (a start value that does not
    change the objective, such as the start of the inner mode iterations).  Returns
    (f, g·free, H on the free coordinates (identity elsewhere), full H, aux)."""

    def with_value(z):
        v, a = fun(z, aux)
        return v, (v, a)

    # reverse-over-reverse: on the CPU backend much faster than vmapped forward-over-reverse through
    # the scatters of the cross-products
    g, H, (f, aux) = _value_and_jacrev(jax.grad(with_value, has_aux=True), x)
    H = 0.5 * (H + H.T)
    Hm = H * free[:, None] * free[None, :] + jnp.eye(x.shape[0], dtype=x.dtype) * (1.0 - free)
    return f, g * free, Hm, H, aux


_NEG_CURV = 1e-7  # relative size of a Hessian eigenvalue treated as negative curvature


def _value_and_jacrev(f, x):
    """f(x) and its Jacobian by reverse mode (one VJP per output); f returns (y, aux)."""
    y, vjp, aux = jax.vjp(f, x, has_aux=True)
    (J,) = jax.vmap(vjp)(jnp.eye(y.shape[0], dtype=y.dtype))
    return y, J, aux


def jacobi_scale(H):
    """D = |diag H|^(-1/2) (1 where a diagonal entry is 0): D H D has a unit diagonal.

    Computed on D H D, the Newton step D (D H D)⁻¹ D g, the Newton decrement and the test for negative
    curvature do not change when a coordinate is rescaled (a covariate measured in other units scales
    its θ and β entries)."""
    h = jnp.abs(jnp.diagonal(H))
    ok = (h > 0) & jnp.isfinite(h)
    return jnp.where(ok, 1.0 / jnp.sqrt(jnp.where(ok, h, 1.0)), 1.0)


def _newton_direction(g, H, free):
    """Newton direction with an eigenvalue-modified Hessian, the inverse of that Hessian, and the
    Newton decrement g′H⁻¹g (twice the decrease the quadratic model predicts), all scale-free.

    Directions of negative curvature are followed downhill with at least a step of 0.1 (in the
    coordinates scaled by :func:`jacobi_scale`): at a saddle or a maximum (θ = 0 of an even
    criterion, say) the gradient vanishes and a plain Newton step would not move.
    """
    D = jacobi_scale(H)
    w, V = eigh_sym(H * D[:, None] * D[None, :])
    gv = V.T @ (D * g)
    wabs = jnp.maximum(jnp.abs(w), 1e-10 * jnp.max(jnp.abs(w)) + 1e-14)
    coef = -gv / wabs
    neg = w < -_NEG_CURV * (1.0 + jnp.max(jnp.abs(w)))
    downhill = jnp.where(gv > 0, -1.0, 1.0)
    coef = jnp.where(neg, downhill * jnp.maximum(jnp.abs(coef), 0.1), coef)
    Binv = D[:, None] * ((V / wabs[None, :]) @ V.T) * D[None, :]
    return D * (V @ coef) * free, Binv, jnp.sum(gv * gv / wabs)


def _scaled_min_eig(H):
    """Smallest eigenvalue of the Jacobi-scaled Hessian D H D and the largest in size (scale-free)."""
    D = jacobi_scale(H)
    w = eigvalsh_sym(H * D[:, None] * D[None, :])
    return w[0], jnp.max(jnp.abs(jnp.where(jnp.isfinite(w), w, 0.0)))


def _line_search(vg, x, fx, g, aux, step, noise):
    """Backtracking (up to 20 times) until f(x + t·step) < f(x) + 1e-4·t·g′step (Armijo).

    Each retry takes the minimiser of the quadratic that matches f(x), the slope g′step and the last
    f(x + t·step), kept within [t/10, t/2] (×0.5 after a non-finite value).

    When the predicted decrease −g′step is below ``noise`` (the rounding noise of the objective's
    value, ~1e-11·|f| in double precision) the full step is accepted unless f rises by more than
    ``noise``: next to the optimum a decrease cannot be seen in f, but the step still reduces the
    gradient.

    Returns (t, f, gradient) at the accepted point (t = 0 when no decrease was found), the aux of the
    accepted point, the number of evaluations and whether f decreased by more than its noise
    (Armijo).  ``vg(x, aux) -> ((value, aux), gradient)``.
    """
    slope = jnp.minimum(jnp.vdot(g, step), 0.0)

    tiny = -slope < noise

    def ok(t, v):
        return jnp.isfinite(v) & ((v < fx + 1e-4 * t * slope) | (tiny & (v <= fx + noise)))

    def body(h):
        t, v, _, _, i = h
        # the minimiser of the quadratic through f(x), the slope and f(x + t·step), kept in [t/10, t/2]
        q = -slope * t * t / (2.0 * (v - fx - slope * t))
        q = jnp.where(jnp.isfinite(q) & jnp.isfinite(v), jnp.clip(q, 0.1 * t, 0.5 * t), 0.5 * t)
        t = jnp.where(i == 0, t, q)
        (v, an), gn = vg(x + t * step, aux)
        return t, jnp.where(jnp.isfinite(v), v, jnp.inf), gn, an, i + 1

    moves = jnp.any(step != 0)

    def cond(h):
        t, v, _, _, i = h
        return (i == 0) | (~ok(t, v) & (i < 21) & moves)

    init = (jnp.asarray(1.0, x.dtype), jnp.asarray(jnp.inf, x.dtype), g, aux, 0)
    t, v, gn, an, i = jax.lax.while_loop(cond, body, init)
    good = ok(t, v)
    an = jax.tree_util.tree_map(lambda a, b: jnp.where(good, a, b), an, aux)
    decreased = good & (v < fx + 1e-4 * t * slope)  # a decrease beyond the rounding noise
    return jnp.where(good, t, 0.0), jnp.where(good, v, fx), jnp.where(good, gn, g), an, i, decreased


def _quasi_newton(fun, x, fx, g, aux, H, free, tol, dtol, noise, refresh, max_inner: int = 100):
    """Steps from x: the damped Newton step on the exact Hessian H, then BFGS updates of H⁻¹.

    Each BFGS step costs one objective value and gradient, against one exact Hessian for a Newton step
    (the Hessian is ~10–30 objective evaluations).  Started from the exact (eigenvalue-modified)
    inverse Hessian, BFGS converges superlinearly in a few steps; the caller checks the result with a
    new exact Hessian.  Stops when max|g| < tol and g′B⁻¹g < dtol (the decrement on the current
    inverse-Hessian estimate B⁻¹), when a step gives no decrease, after max_inner
    steps, or when a shortened step decreased f by no more than its rounding noise.  With ``refresh``
    it only evaluates the objective at x itself (x is new: the start, or a point on the boundary),
    which gives f(x) and the aux of x.
    Returns (x, f(x), aux, number of objective evaluations).
    """
    vg = jax.value_and_grad(fun, has_aux=True)
    step0, Binv, _ = _newton_direction(g, H, free)
    D = jacobi_scale(H)
    step0 = jnp.where(refresh, 0.0, step0)
    eye = jnp.eye(x.shape[0], dtype=x.dtype)

    def body(c):
        x, fx, g, aux, Binv, k, nev, _ = c
        p = jnp.where(k == 0, step0, -(Binv @ g) * free)  # the first step: the (modified) Newton step
        t, fn, gn, aux, ni, decreased = _line_search(vg, x, fx, g, aux, p, noise)
        gn = gn * free
        s = t * p
        yv = gn - g
        sy = jnp.vdot(s, yv)
        # the curvature condition, in the coordinates scaled by D (scale-free)
        rho = jnp.where(sy > 1e-12 * jnp.linalg.norm(s / D) * jnp.linalg.norm(D * yv), 1.0 / sy, 0.0)
        A = eye - rho * jnp.outer(s, yv)
        Bn = jnp.where(rho > 0, A @ Binv @ A.T + rho * jnp.outer(s, s), Binv)
        # a shortened step that only passed within the noise: the objective's precision is reached
        return x + s, fn, gn, aux, Bn, k + 1, nev + ni, (t == 0) | refresh | (~decreased & (t < 1.0))

    def cond(c):
        x, fx, g, aux, Binv, k, nev, stop = c
        first = k == 0
        big = (jnp.max(jnp.abs(g)) >= tol) | (jnp.vdot(g, Binv @ g) >= dtol)
        return ((k < max_inner) & ~stop & (first | big)
                & (jnp.isfinite(fx) | (refresh & first)))

    init = (x, fx, g, aux, Binv, jnp.asarray(0), jnp.asarray(0), jnp.asarray(False))
    x, fx_new, _, aux, _, _, nev, _ = jax.lax.while_loop(cond, body, init)
    return x, fx_new, aux, nev


def _precise(fun, x, aux, H, free, tol, rise=1e-8):
    """Whether the objective's values at x and x ± δ agree with its exact Hessian to within ``tol``.

    δ spans the free eigen-directions of the Jacobi-scaled Hessian, with δ′Hδ/2 = ``rise`` (objective
    units, far below ``tol``), so that the quadratic model is exact there up to terms of order rise²:
    a larger second difference f(x + δ) + f(x − δ) − 2 f(x) − δ′Hδ is the objective's rounding noise,
    which hides its minimum (an LMM's cross-products at a residual SD below ~1e-3 of a group SD).
    """
    D = jacobi_scale(H)
    w, V = eigh_sym(H * D[:, None] * D[None, :])
    wabs = jnp.maximum(jnp.abs(w), 1e-10 * jnp.max(jnp.abs(w)) + 1e-14)
    nfree = jnp.maximum(jnp.sum(free), 1.0)
    delta = D * (V @ (jnp.sqrt(2.0 * rise / nfree) / jnp.sqrt(wabs))) * free
    f0, f1, f2 = (fun(x + t * delta, aux)[0] for t in (0.0, 1.0, -1.0))
    return jnp.abs(f1 + f2 - 2.0 * f0 - jnp.vdot(delta, H @ delta)) < tol


def minimize(fun: Callable, x0, diag_mask, flip: Callable, max_iter: int = 500, gtol: float = 1e-4,
             zero_tol: float = 1e-4, lbfgs: bool = True, max_newton: int = 50, aux0=None,
             hess_fun: Callable | None = None, flip_aux: Callable | None = None) -> OptResult:
    """Minimise ``fun`` over θ from ``x0``: (L-BFGS,) quasi-Newton, boundary check, quasi-Newton again.

    Each outer iteration takes the damped Newton step on the last exact Hessian followed by BFGS steps
    (one value and gradient each) started from its inverse until the gradient is below tolerance, and
    then computes the exact gradient and Hessian at the point reached; they confirm the minimum (or
    start the next iteration), so a typical fit costs two or three exact Hessians.  The first
    iteration (and the first after the boundary switch) only evaluates the objective at its point.

    Args:
      fun: scalar objective (the profiled deviance, REML criterion or Laplace deviance).
      x0: start.
      diag_mask: 1.0 for entries on a diagonal of Λ (bounded by 0), else 0.0.
      flip: maps x to the equivalent point with non-negative diagonals (column sign flips).
      max_iter: L-BFGS iteration limit.
      gtol: convergence tolerance on the largest absolute gradient entry (objective units); in
        float64 1e-8·|objective| is added (1e-3·|objective| in float32), the precision to which the
        gradient of a large objective is known.  Converged (status 0) also needs the Newton decrement
        g′H⁻¹g below gtol/100 (plus 1e-9·|objective|, 1e-4 in float32: the objective's noise), and the objective's
        values next to x to agree with its Hessian within that tolerance (else status 5).
      zero_tol: diagonal entries x_i with |x_i|·√H_ii below this are tried at exactly 0.
      lbfgs: run optax L-BFGS first (else damped Newton from the start: fewer traces to compile).
      max_newton: iteration limit of each of the two Newton phases.
      aux0: with it, ``fun(x, aux) -> (value, aux)`` carries a state that changes how the objective is
        computed but not its value (the GLMM's start for the conditional modes, warm-started from the
        last accepted point); ``aux`` is then returned in ``OptResult.aux``.
      hess_fun: the objective used for the exact gradient and Hessian, when it differs from ``fun``
        only in how exactly its second derivatives are computed (the GLMM takes one more Newton step
        of the modes there); ``fun`` then serves the values and gradients of the line search.  Its
        aux argument always comes from an evaluation of ``fun`` at the same x (the GLMM's modes at
        x), so it may skip what produced it (the inner mode iterations).
      flip_aux: ``flip_aux(x, aux)`` maps the aux of x to that of ``flip(x)`` (the GLMM's modes change
        sign with the flipped columns of Λ); the returned aux then belongs to the returned x.
    """
    if aux0 is None:
        plain = fun
        fun = lambda x, a: (plain(x), a)  # noqa: E731
        aux0 = jnp.zeros(())
        if hess_fun is not None:
            plain_h = hess_fun
            hess_fun = lambda x, a: (plain_h(x), a)  # noqa: E731
    hess_fun = fun if hess_fun is None else hess_fun
    if flip_aux is None:
        flip_aux = lambda x, a: a  # noqa: E731
    # the gradient of an objective of size |f| is only known to ~1e-8·|f| in double precision
    # (seen: 2e-4 on a REML criterion of 2e5, 1e-4 on one of 1e4) and ~1e-3·|f| in single precision
    # (seen: 1.15 on sleepstudy's 1744)
    rtol = 1e-3 if x0.dtype == jnp.float32 else 1e-8
    noise_rel = 1e-6 if x0.dtype == jnp.float32 else 1e-11
    if lbfgs:
        x, n_iter, nev = _lbfgs(lambda z: fun(z, aux0)[0], x0, max_iter, gtol, rtol)
    else:
        x, n_iter, nev = x0, jnp.asarray(0), jnp.asarray(0)
    d = x.shape[0]

    def inner_tol(f):  # the Newton phases' gradient tolerance: tighter than gtol, within f's precision
        return gtol * 1e-3 + rtol * jnp.abs(f)

    def dec_tol(f, inner=False):  # the Newton decrement that counts as converged: objective units,
        # within f's noise; the Newton phases aim 1,000 times lower than gtol's part, 100 times lower
        # than the noise's
        return gtol * (1e-5 if inner else 1e-2) + (1.0 if inner else 100.0) * noise_rel * (1.0 + jnp.abs(f))

    def decrement(g, H):  # the Newton decrement g′H⁻¹g and whether H is not a saddle's (scale-free)
        if not d:
            return jnp.asarray(0.0, g.dtype), jnp.asarray(True)
        dec = _newton_direction(g, H, jnp.ones_like(g))[2]
        w0, wmax = _scaled_min_eig(H)
        return dec, w0 >= -_NEG_CURV * (1.0 + wmax)

    # Every objective evaluation is one of two calls (fewer copies of the objective in the compiled
    # program): value and gradient in the line search, or value, gradient and Hessian after it.  An
    # outer iteration first steps from x (Newton step on the last exact Hessian, then BFGS; at a new
    # point only an evaluation there), then takes the exact Hessian at the point reached: its aux (the
    # GLMM's modes) always comes from an evaluation at that point, so ``hess_fun`` may take it as given.
    def body(c):
        (x, fx, free, phase, k, kp, x_int, f_int, g_int, H_int, Hf_int, zero, g, H, Hf, done, refresh, ne, aux,
         aux_int) = c
        noise = noise_rel * (1.0 + jnp.abs(fx))
        x_new, f_new, aux, nev_k = _quasi_newton(fun, x, fx, g, aux, H, free, inner_tol(fx), dec_tol(fx, True),
                                                 noise, refresh)
        moved = refresh | (f_new < fx)
        x = x_new
        fx, g, H, Hf, aux = _grad_hess(hess_fun, x, aux, free)
        tol_n = inner_tol(fx)
        gmax = jnp.max(jnp.abs(g)) if d else jnp.asarray(0.0, x.dtype)
        dec, minimum = decrement(g, H)  # minimum: not a saddle or a maximum
        finished = (((gmax < tol_n) & (dec < dec_tol(fx, True)) & minimum) | (kp >= max_newton) | ~moved
                    | ~jnp.isfinite(fx))
        # the switch: remember the interior solution, then try small diagonal entries at exactly 0
        # (small relative to the coordinate's scale 1/√H_ii, so that the rule is scale-free)
        xf = flip(x)
        cand = (diag_mask > 0) & (jnp.abs(xf) < zero_tol * jacobi_scale(H))
        at_switch = (phase == 0) & finished & jnp.any(cand)
        at_end = ((phase == 1) | ~jnp.any(cand)) & finished
        x_int = jnp.where(at_switch, xf, x_int)
        f_int = jnp.where(at_switch, fx, f_int)
        g_int = jnp.where(at_switch, g, g_int)
        H_int = jnp.where(at_switch, H, H_int)
        Hf_int = jnp.where(at_switch, Hf, Hf_int)
        zero = jnp.where(at_switch, cand, zero)
        free = jnp.where(at_switch, 1.0 - cand.astype(x.dtype), free)
        aux_f = flip_aux(x, aux)
        aux_int = jax.tree_util.tree_map(lambda a, b: jnp.where(at_switch, a, b), aux_f, aux_int)
        aux = jax.tree_util.tree_map(lambda a, b: jnp.where(at_switch, a, b), aux_f, aux)
        x = jnp.where(at_switch, jnp.where(cand, 0.0, xf), x)
        fx = jnp.where(at_switch, jnp.inf, fx)  # the next iteration evaluates the boundary point first
        phase = jnp.where(at_switch, 1, phase)
        kp = jnp.where(at_switch, 0, kp + 1)
        return (x, fx, free, phase, k + 1, kp, x_int, f_int, g_int, H_int, Hf_int, zero, g, H, Hf, at_end, at_switch,
                ne + nev_k, aux, aux_int)

    def cond(c):
        return ~c[15] & (c[4] < 2 * max_newton + 4)

    eye = jnp.eye(d, dtype=x.dtype)
    finf = jnp.asarray(jnp.inf, x.dtype)
    false = jnp.asarray(False)
    zi = jnp.asarray(0)
    init = (x, finf, jnp.ones_like(x), zi, zi, zi, x, finf, x * 0, eye, eye, jnp.zeros(d, dtype=bool),
            x * 0, eye, eye, false, jnp.asarray(True), zi, aux0, aux0)
    out = jax.lax.while_loop(cond, body, init)
    x, fx, free, phase, k, kp, x_int, f_int, g_int, H_int, Hf_int, zero, g, H, Hf, done = out[:16]
    switched = phase == 1
    keep = switched & (fx <= f_int + 1e-8 * (1.0 + jnp.abs(f_int)))
    revert = switched & ~keep  # the boundary fit was worse: back to the interior solution
    aux = jax.tree_util.tree_map(lambda a, b: jnp.where(revert, a, b), out[19], flip_aux(x, out[18]))
    x = jnp.where(revert, x_int, flip(x))
    fx = jnp.where(revert, f_int, fx)
    g = jnp.where(revert, g_int, g)
    H = jnp.where(revert, H_int, H)
    Hf = jnp.where(revert, Hf_int, Hf)
    on_b = zero & keep
    min_eig = eigvalsh_sym(H)[0] if d else jnp.asarray(jnp.inf, x.dtype)
    gmax = jnp.max(jnp.abs(g)) if d else jnp.asarray(0.0, x.dtype)
    dec, minimum = decrement(g, H)
    small = (gmax < gtol + rtol * jnp.abs(fx)) & (dec < dec_tol(fx))
    free = jnp.where(revert, 1.0, free)  # the interior solution has every coordinate free
    precise = _precise(fun, x, aux, H, free, dec_tol(fx)) if d else jnp.asarray(True)
    status = jnp.where(~jnp.isfinite(fx), 2,
                       jnp.where(~minimum, 4, jnp.where(small, jnp.where(precise, 0, 5),
                                                        jnp.where(n_iter >= max_iter, 1, 3))))
    n_eval = nev + k + out[17] + 3 * (d > 0)  # L-BFGS, gradient + Hessian per outer iteration, line searches, check
    return OptResult(x, fx, g, Hf, min_eig, n_iter + k, n_eval, on_b, status, aux)
