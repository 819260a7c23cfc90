"""The Gaussian LMM fit of one outcome: numpy cross-products, one compiled objective per model class.

A model class is what the compiled code depends on: the columns q of each random term, the padded
(bucketed) levels and pairs of levels of :func:`jaxmix.core.structure.padded_system`, the number of
fixed effects p, ML or REML, and the dtype.  Data sets of one class — other rows, other level counts
within a bucket — reuse the executables (in memory, and through JAX's persistent cache in later
processes).  Two programs are compiled per class:

* the value and exact gradient of the profiled criterion (:func:`jaxmix.lmm.objective`) in scaled
  parameters θ̃ (θ = c ⊙ θ̃, see :func:`theta_scale`), which the host optimiser
  (:func:`jaxmix.core.newton.minimize_bounded`) calls; and
* the solution at θ̂ (β̂, spherical modes, r², L_X and the factor), compiled on a second thread
  while the optimiser runs.

Scaling: each random-effect column of Z is measured by its root mean square sᵢ; with Z̃ = ZD⁻¹
(D = diag(s)) the term's factor is Λ̃ = DΛ, so θᵢⱼ = θ̃ᵢⱼ / sᵢ.  The optimiser works in θ̃, where the
start Λ̃ = I and the tolerances mean the same whatever the units of the covariates.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._cache import compiled_program
from ..core.newton import FLOAT32, FLOAT64, HostResult, minimize_bounded
from ..core.structure import padded_system
from ..covariance import ThetaLayout, lambdas_np, theta_layout
from ..crossprod import CrossProducts, Index, Layout, RowData, cross_products, terms_structure
from ..lmm import cond_var, objective, solve

__all__ = ["LmmFit", "fit_lmm_arrays", "theta_scale", "column_rms", "lmm_arrays"]


def _value_and_grad(x, c, xp, idx, n, ldW, *, layout, tl, p, reml):
    return jax.value_and_grad(lambda z: objective(z * c, xp, idx, layout, tl, n, p, ldW, reml))(x)


def _solution(theta, xp, idx, *, layout, tl, p):
    return solve(theta, xp, idx, layout, tl, p)


def _cond_var(theta, factor, idx, *, layout, tl):
    from ..covariance import lambdas

    return cond_var(factor, lambdas(theta, tl), idx, layout)


_vg_jit = jax.jit(_value_and_grad, static_argnames=("layout", "tl", "p", "reml"))
_solution_jit = jax.jit(_solution, static_argnames=("layout", "tl", "p"))
_cond_var_jit = jax.jit(_cond_var, static_argnames=("layout", "tl"))


#: XLA options for the programs of small model classes: XLA:CPU's MLIR fusion emitters and LLVM's
#: optimisation passes cost more time compiling (about 4x) than they save in a fit whose blocks are
#: this small (the dense factor is LAPACK's anyway)
FAST_COMPILE = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0,
                "xla_llvm_disable_expensive_passes": True}
SMALL_CLASS = 4096  # padded levels of term 1 plus rows of the Schur complement


def opts_small(layout: Layout) -> bool:
    """Whether the class is small (:data:`SMALL_CLASS`)."""
    return layout.nlev[0] + layout.m_R <= SMALL_CLASS


def compile_options(layout: Layout) -> dict | None:
    """:data:`FAST_COMPILE` for small classes, XLA's defaults otherwise."""
    return FAST_COMPILE if opts_small(layout) else None


def blas_threads(layout: Layout):
    """Every core for LAPACK while a large class is fitted (its dense factor is worth the threads);
    small ones keep the one thread :func:`jaxmix.runtime.start` set."""
    if opts_small(layout) or os.environ.get("JAXMIX_BLAS_THREADS", "1").strip().lower() == "keep":
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    from ..devices import usable_cores

    return threadpool_limits(usable_cores(), user_api="blas")


def column_rms(M) -> np.ndarray:
    """Root mean square of each column of M (1 for a column of zeros)."""
    M = np.asarray(M, dtype=float)
    s = np.sqrt(np.mean(M**2, axis=0)) if M.shape[0] else np.ones(M.shape[1])
    return np.where(np.isfinite(s) & (s > 0), s, 1.0)


def theta_scale(Zs: list[np.ndarray], tl: ThetaLayout) -> np.ndarray:
    """c with θ = c ⊙ θ̃: 1/sᵢ for every entry in row i of a term's Λ, sᵢ the RMS of Z column i."""
    out = []
    for Z, rows in zip(Zs, tl.rows):
        out.append(1.0 / column_rms(Z)[np.asarray(rows, dtype=int)])
    return np.concatenate(out) if out else np.zeros(0)


class LmmFit(NamedTuple):
    theta: np.ndarray
    opt: HostResult
    theta_scale: np.ndarray
    beta: np.ndarray
    r2: float
    RX: np.ndarray
    b: list  # per term (levels, q), real levels only
    condvar: object  # () -> list of (levels, q, q) arrays (relative: multiply by σ² for Gaussian)
    compile_seconds: float  # wall time spent compiling (the solution program compiles beside the optimiser)


def fit_lmm_arrays(codes, nlev, Zs, X, y, w, reml: bool, dt, gtol: float = 1e-4,
                   max_iter: int = 500) -> LmmFit:
    """Fit θ by the host optimiser on the compiled criterion; then β̂, b and the factor at θ̂."""
    p = X.shape[1]
    n = X.shape[0]
    T = np.column_stack([X, y])
    layout, idx_np, xp_np = padded_system(codes, nlev, Zs, T, w)
    tl = theta_layout(layout.q)
    c = theta_scale(Zs, tl)
    xp = CrossProducts(*(jnp.asarray(a, dt) for a in xp_np))
    idx = Index(*(jnp.asarray(a) for a in idx_np))
    ldW = float(np.sum(np.log(w[w > 0])))
    statics = dict(layout=layout, tl=tl, p=p, reml=reml)
    args = (jnp.asarray(tl.init(), dt), jnp.asarray(c, dt), xp, idx, jnp.asarray(n, dt), jnp.asarray(ldW, dt))
    sol_args = (jnp.asarray(tl.init(), dt), xp, idx)
    sol_statics = dict(layout=layout, tl=tl, p=p)
    box = {}
    opts = compile_options(layout)
    # the solution program compiles on a second thread while the optimiser runs
    def compile_solution():
        try:
            box["sol"] = compiled_program(_solution_jit, sol_args, {}, sol_statics, opts)
        except BaseException as exc:  # raised again in the caller's thread, after the join
            box["error"] = exc

    worker = threading.Thread(target=compile_solution)
    worker.start()
    vg_exe, vg_s = compiled_program(_vg_jit, args, {}, statics, opts)
    cdt, rest = args[1], args[2:]

    def vg(x):
        f, g = vg_exe(jnp.asarray(x, dt), cdt, *rest)
        return np.asarray(f, dtype=float), np.asarray(g, dtype=float)

    lower = np.where(tl.is_diagonal(), 0.0, -np.inf)
    prec = FLOAT32 if jnp.dtype(dt) == jnp.float32 else FLOAT64
    with blas_threads(layout):
        opt = minimize_bounded(vg, tl.init(), lower, gtol=gtol, max_iter=max_iter, prec=prec)
    t_join = time.perf_counter()
    worker.join()
    wait = time.perf_counter() - t_join  # the part of the solution's compile the optimiser did not hide
    if "error" in box:
        raise box["error"]
    sol_exe, sol_s = box["sol"]
    theta = opt.x * c
    sol = sol_exe(jnp.asarray(theta, dt), xp, idx)
    beta = np.asarray(sol.beta, dtype=float)
    u1 = np.asarray(sol.u1, dtype=float)[: nlev[0]]
    uR = np.asarray(sol.uR, dtype=float)
    lams = lambdas_np(theta, tl)
    b = [u1 @ lams[0].T]
    for lam, off, qk, lk in zip(lams[1:], layout.offsets, layout.q[1:], nlev[1:]):
        b.append(uR[off : off + lk * qk].reshape(lk, qk) @ lam.T)
    factor = sol.factor

    def condvar():
        exe, _ = compiled_program(_cond_var_jit, (jnp.asarray(theta, dt), factor, idx), {},
                                  dict(layout=layout, tl=tl), opts)
        cv = exe(jnp.asarray(theta, dt), factor, idx)
        return [np.asarray(v, dtype=float)[:lk] for v, lk in zip(cv, nlev)]

    return LmmFit(theta=theta, opt=opt, theta_scale=c, beta=beta, r2=float(sol.r2),
                  RX=np.asarray(sol.RX, dtype=float), b=b, condvar=condvar, compile_seconds=vg_s + min(wait, sol_s))


def lmm_arrays(design, dt, responses: np.ndarray | None = None):
    """Unpadded structure and cross-products of a design (tail = [X, y − offset]), on the device: the
    form the inference functions and the sweeps differentiate."""
    terms = design.terms
    y = design.y - design.offset if responses is None else responses
    T = np.column_stack([design.X, y])
    layout, idx, ZR = terms_structure(terms, design.nobs, T.shape[1])
    idx = idx.as_jax()
    rows = RowData(jnp.asarray(terms[0].Z, dt), jnp.asarray(ZR, dt), jnp.asarray(T, dt))
    xp = _cross_products_jit(rows, jnp.asarray(design.weights, dt), idx, layout)
    return layout, idx, xp


_cross_products_jit = jax.jit(cross_products, static_argnames=("layout",))
