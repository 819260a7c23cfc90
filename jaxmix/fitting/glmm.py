"""The GLMM fit of one outcome: one compiled Laplace / AGQ deviance with its exact gradient, driven by
the host optimiser (:func:`jaxmix.core.newton.minimize_bounded`), as for Gaussian models.

The program (:func:`jaxmix.glmm.laplace_objective` with one differentiable Newton step of the
conditional modes, which makes the gradient exact at the mode) returns the deviance, its gradient in
(θ, β) and the modes û; each evaluation warm-starts the mode iterations from the modes of the last
finite evaluation (the value does not depend on the start).  Parameters are scaled as for LMMs: θ
with the random-effect columns of Z at unit RMS, β with the columns of X at unit RMS.  The Hessian
for the standard errors is the central-difference Hessian of the exact gradient at the estimate
(lme4 uses a finite-difference Hessian of the deviance).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._cache import compiled_program
from ..core.newton import FLOAT32, FLOAT64, HostResult, fd_hessian, minimize_bounded
from ..covariance import ThetaLayout
from ..dispersion import with_dispersion
from ..crossprod import Index, Layout
from ..glmm import GlmmData, gauss_hermite, laplace_objective, zero_modes
from .lmm import column_rms, compile_options, theta_scale

__all__ = ["GlmmFit", "fit_glmm_arrays"]


def _value_and_grad(x, c, u0, d, idx, xk, wk, *, fam, layout, tl):
    def dev(z):
        prm, dd = with_dispersion(z * c, fam, d, tl.size)
        return laplace_objective(prm, fam, dd, idx, layout, tl, xk, wk, u_start=u0, newton_steps=1)

    (value, u), grad = jax.value_and_grad(dev, has_aux=True)(x)
    return value, grad, u


_vg_jit = jax.jit(_value_and_grad, static_argnames=("fam", "layout", "tl"))


class GlmmFit(NamedTuple):
    params: np.ndarray  # (θ, β) at the estimate; (θ, log φ, β) for a family with a dispersion φ
    opt: HostResult  # in the scaled parameters
    scale: np.ndarray  # params = scale ⊙ x
    hess: np.ndarray  # Hessian of the deviance in (θ, β) at the estimate
    modes: tuple  # û at the estimate, (term 1 (levels, q1), other terms (m_R,))
    compile_seconds: float


def fit_glmm_arrays(fam, d: GlmmData, idx: Index, layout: Layout, tl: ThetaLayout, Zs, X, params0,
                    nagq: int, dt, gtol: float = 1e-4, max_iter: int = 500) -> GlmmFit:
    """Minimise the Laplace (nagq = 1) or AGQ deviance over (θ, β) from ``params0``; for a family with
    a dispersion parameter φ over (θ, log φ, β) (:func:`with_dispersion`)."""
    nt = tl.size
    disp = np.ones(1 if fam.dispersion is not None else 0)
    c = np.concatenate([theta_scale(Zs, tl), disp, 1.0 / column_rms(X)])
    if nagq > 1:
        xk, wk = (jnp.asarray(a, dt) for a in gauss_hermite(nagq))
    else:
        xk = wk = None
    cj = jnp.asarray(c, dt)
    state = {"u": zero_modes(layout, dt)}
    args = (jnp.asarray(np.asarray(params0) / c, dt), cj, state["u"], d, idx, xk, wk)
    exe, compile_s = compiled_program(_vg_jit, args, {}, dict(fam=fam, layout=layout, tl=tl),
                                      compile_options(layout))

    def evaluate(x):
        value, grad, u = exe(jnp.asarray(x, dt), cj, state["u"], d, idx, xk, wk)
        value = float(value)
        if np.isfinite(value):
            state["u"] = u
        return value, np.asarray(grad, dtype=float), u

    def vg(x):
        value, grad, _ = evaluate(x)
        return value, grad

    lower = np.concatenate([np.where(tl.is_diagonal(), 0.0, -np.inf), np.full(len(c) - nt, -np.inf)])
    prec = FLOAT32 if jnp.dtype(dt) == jnp.float32 else FLOAT64
    x0 = np.asarray(params0, dtype=float) / c
    opt = minimize_bounded(vg, x0, lower, gtol=gtol, max_iter=max_iter, prec=prec)
    H = fd_hessian(vg, opt.x, prec.fd_step)  # at the estimate itself, for the standard errors
    _, _, u = evaluate(opt.x)  # the modes at the estimate
    return GlmmFit(params=opt.x * c, opt=opt, scale=c, hess=H / np.outer(c, c), modes=u,
                   compile_seconds=compile_s)
