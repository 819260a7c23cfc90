"""The GLMM fit of one outcome: one compiled Laplace / AGQ deviance with its exact gradient, driven by
the host optimiser (:func:`jaxmix.core.newton.minimize_bounded`), as for Gaussian models.

The program returns the deviance, its gradient in (θ, β) and the modes û: for scalar random terms of
the binomial (logit) and Poisson (log) families the gradient in closed form
(:func:`jaxmix.core.glmm_scalar.value_and_grad`: the mode iterations and one factor, nothing
differentiated by JAX — compiled in about half the time, nine endpoints x 104,000 patients 27 -> 18 ms
per evaluation; AGQ of one scalar term likewise, :func:`jaxmix.core.glmm_scalar.agq_value_and_grad`:
cbpp with 25 points compiled in 0.85 s instead of 1.55 s); with vector terms (random slopes) of those
families likewise, :func:`jaxmix.core.glmm_blocks.value_and_grad`; otherwise reverse mode through
:func:`jaxmix.core.glmm.laplace_objective` with one
differentiable Newton step of the modes, which makes the gradient exact at the mode.  Each evaluation
warm-starts the mode iterations from the modes of the last finite evaluation (the value does not
depend on the start).  Parameters are scaled as for LMMs: θ
with the random-effect columns of Z at unit RMS, β with the columns of X at unit RMS.  The Hessian
for the standard errors is the forward-difference Hessian of the exact gradient at the estimate with
a small step (:data:`RECORD_STEP`), the one that certified the optimum, or the central-difference one
where the modes are found by Fisher scoring (Gamma with the identity link: gradients less exact);
lme4 uses a finite-difference Hessian of the deviance.
"""
from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .cache import compiled_program
from ..core.newton import FLOAT32, FLOAT64, BatchResult, HostResult, minimize_batch
from ..core.structure import FINE, bucket, padded_system
from ..spec.covariance import ThetaLayout, theta_layout
from ..spec.families import data_constant
from .dispersion import with_dispersion
from ..core import glmm_blocks, glmm_scalar
from ..core.crossprod import Index, Layout
from ..core.glmm import GlmmData, fisher_weights, gauss_hermite, laplace_objective
from .lmm import FAST_COMPILE, LARGE_COMPILE, column_rms, compile_options, first_rows, index_array, theta_scale

def put(a, dtype=None):
    """A host array on the default device (``jax.device_put``: no program is compiled, unlike
    ``jnp.asarray`` / ``jnp.zeros``, which compile a small conversion program on first use)."""
    a = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
    return jax.device_put(a)


__all__ = ["GlmmBatch", "GlmmFit", "fit_glmm_outcomes", "glmm_structure", "fit_glmm_arrays", "pad_rows",
           "gauss_newton_start", "glm_kernels"]

#: the smallest buckets of rows, of term 1's levels and of the other terms' rows of the Schur complement:
#: GLMMs up to these sizes share one program per model class (an evaluation's cost is in the rows;
#: the padded blocks of the factor cost next to nothing at these sizes)
MIN_ROWS = 512
MIN_LEVELS1 = 128
MIN_ROWS_R = 128
FAST_ROWS = 4096  # up to this many (padded) rows the program is compiled for speed of compiling
#: relative step of the forward differences of the exact gradient that certify the optimum and give the
#: Hessian for the standard errors (error O(h): standard errors within 1e-6–3e-5 of the exact Hessian's on
#: the reference fits, up to ~1e-4 on large ones; central differences cost d gradients more)
RECORD_STEP = 1e-5
#: from this many (padded) rows the start's Hessian is modelled in β (:func:`gauss_newton_start`): its
#: d + 1 points cost more than the model's sparse solve (nine endpoints x 104k: 297 -> 215 points)
GN_START_ROWS = 2048


def glmm_structure(codes, nlev, Zs, n: int):
    """The padded structure of a GLMM design: (layout, idx, ZR, rows N) with every size that varies
    between data sets (levels, pairs of levels, rows) rounded up to a bucket.

    Padded rows repeat row 0 (its levels here; its data, with zero prior weight, set by the caller):
    every per-row value stays finite (a Gamma response or an identity link has no valid zero row)
    and is multiplied by a weight of 0, so they add nothing to any sum or derivative.  Padded levels have no rows: their modes stay 0, their blocks of the
    factor are I and (AGQ) their quadrature sums are 1, so they add nothing to the deviance."""
    layout, idx, _ = padded_system(codes, nlev, Zs, np.zeros((n, 1)), np.ones(n), tail_cross=False, row_index=True,
                                   min_levels1=MIN_LEVELS1, min_rows_r=MIN_ROWS_R)
    N = bucket(n, MIN_ROWS, FINE)
    code1, rpos, ent = (first_rows(a, N) for a in (idx.code1, idx.rpos, idx.ent))
    idx = idx._replace(code1=code1, rpos=rpos, ent=ent)
    ZR = np.column_stack([np.asarray(Z, dtype=float) for Z in Zs[1:]]) if len(Zs) > 1 else np.zeros((n, 0))
    return layout, idx, ZR, N


def pad_rows(a: np.ndarray, N: int, value: float = 0.0) -> np.ndarray:
    """``a`` (rows first) with rows of ``value`` up to N rows."""
    a = np.asarray(a)
    if a.shape[0] == N:
        return a
    return np.concatenate([a, np.full((N - a.shape[0],) + a.shape[1:], value, dtype=a.dtype)], axis=0)


def _vg_point(x, c, u0, d, idx, xk, wk, *, fam, layout, tl):
    if xk is None and glmm_scalar.applies(fam, layout):  # the gradient in closed form
        value, grad, u = glmm_scalar.value_and_grad(x * c, fam, d, idx, layout, tl, u0, constant=fam.const is None)
        return value, grad * c, u
    if xk is None and glmm_blocks.applies(fam, layout):  # vector terms, likewise
        value, grad, u = glmm_blocks.value_and_grad(x * c, fam, d, idx, layout, tl, u0, constant=fam.const is None)
        return value, grad * c, u
    if xk is not None and glmm_scalar.agq_applies(fam, layout):  # AGQ's, likewise
        value, grad, u = glmm_scalar.agq_value_and_grad(x * c, fam, d, idx, layout, tl, xk, wk, u0,
                                                        constant=fam.const is None)
        return value, grad * c, u

    def dev(z):
        prm, dd = with_dispersion(z * c, fam, d, tl.size)
        # a constant of the data alone is added on the host (:func:`jaxmix.spec.families.data_constant`)
        return laplace_objective(prm, fam, dd, idx, layout, tl, xk, wk, u_start=u0, newton_steps=1,
                                 constant=fam.const is None)

    (value, u), grad = jax.value_and_grad(dev, has_aux=True)(x)
    return value, grad, u


def _vg_points(X, which, c, U1, UR, Y, PW, shared, idx, xk, wk, *, fam, layout, tl, width):
    """Deviances, gradients and modes at points X (width, d), point i for outcome which[i], each
    starting its mode iterations from its outcome's last modes (U1, UR)."""
    Z1, ZR, Xf, ntr, off = shared
    take = lambda a: jnp.take(a, which, axis=0)  # noqa: E731
    u1, uR, y, pw = take(U1), take(UR), take(Y), take(PW)

    def one(x, a1, aR, y_, pw_):
        d = GlmmData(Z1, ZR, Xf, y_, ntr, pw_, off)
        return _vg_point(x, c, (a1, aR), d, idx, xk, wk, fam=fam, layout=layout, tl=tl)

    if width == 1:
        f, g, u = one(X[0], u1[0], uR[0], y[0], pw[0])
        return f[None], g[None], (u[0][None], u[1][None])
    return jax.vmap(one)(X, u1, uR, y, pw)


_vg_jit = jax.jit(_vg_points, static_argnames=("fam", "layout", "tl", "width"))


class GlmmBatch(NamedTuple):
    """The GLMM fits of k outcomes of one design (leading axis k)."""

    params: np.ndarray  # (k, d): (θ, β) at the estimates; (θ, log φ, β) for a family with a dispersion φ
    opt: BatchResult  # in the scaled parameters
    scale: np.ndarray  # (d,) params = scale ⊙ x
    hess: np.ndarray  # (k, d, d) Hessian of the deviance in (θ, β) at the estimates
    modes: tuple  # û at the estimates: (k, padded levels of term 1, q1), (k, m_R)
    layout: Layout
    tl: ThetaLayout
    idx: Index
    data: tuple  # (Z1, ZR, X, ntr, offset, Y, PW) as given to the program (rows padded)
    compile_seconds: float
    run_seconds: float

    def glmm_data(self, j: int) -> GlmmData:
        """Outcome j's data as the Laplace functions take them (rows padded)."""
        Z1, ZR, X, ntr, off, Y, PW = self.data
        return GlmmData(Z1, ZR, X, Y[j], ntr, PW[j], off)

    def b(self, j: int, nlev) -> list:
        """Outcome j's conditional modes b = Λu per term, (levels, q), real levels only."""
        from ..spec.covariance import lambdas_np

        lams = lambdas_np(self.params[j][: self.tl.size], self.tl)
        out = [self.modes[0][j][: nlev[0]] @ lams[0].T]
        for lam, off, qk, lk in zip(lams[1:], self.layout.offsets, self.layout.q[1:], nlev[1:]):
            out.append(self.modes[1][j][off : off + lk * qk].reshape(lk, qk) @ lam.T)
        return out

    def condvar(self, j: int, nlev) -> list:
        """Outcome j's conditional covariances of the random effects (Fisher weights at û), per term
        (levels, q, q), real levels only."""
        dt = self.data[0].dtype
        x = put(self.params[j], dt)
        u = (put(self.modes[0][j], dt), put(self.modes[1][j], dt))
        d = self.glmm_data(j)
        exe, _ = compiled_program(_glmm_cond_var_jit, (x, u, d, self.idx), {},
                                  dict(fam=self.fam_, layout=self.layout, tl=self.tl), compile_options(self.layout))
        cv = exe(x, u, d, self.idx)
        return [np.asarray(v, dtype=float)[:lk] for v, lk in zip(cv, nlev)]

    fam_: object = None


def _glmm_cond_var(x, u, d, idx, *, fam, layout, tl):
    """The conditional covariances of one outcome's random effects at (θ, β) (and log φ) and its
    modes u: :func:`jaxmix.core.lmm.cond_var` of the Fisher factor (one program; run op by op it
    compiled ~27 small ones, 1.1 s for cbpp's first ``ranef``)."""
    from ..core.glmm import fisher_factor
    from ..core.lmm import cond_var
    from ..spec.covariance import lambdas

    x, d = with_dispersion(x, fam, d, tl.size)
    f = fisher_factor(x, u, fam, d, idx, layout, tl)
    return cond_var(f, lambdas(x[: tl.size], tl), idx, layout)


_glmm_cond_var_jit = jax.jit(_glmm_cond_var, static_argnames=("fam", "layout", "tl"))


def fit_glmm_outcomes(fam, codes, nlev, Zs, X, Y, PW, ntr, offset, params0, nagq: int, dt,
                      gtol: float = 1e-4, max_iter: int = 500, devices=None) -> GlmmBatch:
    """Minimise the Laplace (nagq = 1) or AGQ deviance over (θ, β) for k outcomes of one design
    together: the host optimiser (:func:`jaxmix.core.newton.minimize_batch`) on one compiled program
    evaluating a batch of points (each warm-starting its mode iterations from its outcome's last
    modes; the value does not depend on the start).

    Args:
      fam: the family; codes, nlev, Zs: per random term, level codes, level count, columns (n, q).
      X: (n, p); Y: (n, k) responses (anything finite where PW is 0); PW: (n, k) prior weights per
        outcome (0 on its missing rows); ntr: (n,) binomial trials; offset: (n,).
      params0: (k, d) starts (θ, β), or (θ, log φ, β) for a family with a dispersion φ (negative
        binomial, Gamma), whose ``ntr`` slot the program fills with φ.
    Rows, levels and outcomes are padded to buckets, so one program serves a model class.
    """
    t0 = time.perf_counter()
    n, p = X.shape
    k = Y.shape[1]
    layout, idx_np, ZR, N = glmm_structure(codes, nlev, Zs, n)
    tl = theta_layout(layout.q)
    nt = tl.size
    ndisp = 1 if fam.dispersion is not None else 0  # log φ after θ (:mod:`jaxmix.fitting.dispersion`)
    d = nt + ndisp + p
    c = np.concatenate([theta_scale(Zs, tl), np.ones(ndisp), 1.0 / column_rms(X)])
    K = 1 if k == 1 else bucket(k, 2, FINE)
    devs = list(jax.devices() if devices is None else devices)
    # on the CPU one point at a time: vmapped, the mode iterations of all points would run in
    # lockstep until the slowest has finished, and the per-row segment sums become slow scatters
    # (nine endpoints x 50,000 patients: 0.23 s per point vmapped)
    width = 1 if all(dv.platform == "cpu" for dv in devs) else K
    mesh = None
    if width > 1 and len(devs) > 1:
        from .. import devices as device_mesh

        mesh = device_mesh.outcome_mesh(devices)
        width = -(-K // mesh.size) * mesh.size
    xk, wk = (put(a, dt) for a in gauss_hermite(nagq)) if nagq > 1 else (None, None)
    shared = tuple(put(first_rows(np.asarray(a, dtype=float), N), dt)
                   for a in (Zs[0], ZR, X, ntr, offset))
    Y = np.array(Y, dtype=float)
    for j in range(k):  # rows an outcome does not use repeat a response it has (valid for every family)
        used = np.flatnonzero(np.asarray(PW[:, j]) > 0)
        if used.size:
            Y[np.asarray(PW[:, j]) <= 0, j] = Y[used[0], j]
    # −2 Σ wᵢ cᵢ(yᵢ, nᵢ) per outcome, the deviance's part that depends on the data alone, added here
    # rather than in the program (log-gamma functions of every row at every point: 13 % of a binary
    # GLMM's evaluation)
    const = np.zeros(K)
    if fam.const is not None:
        const[:k] = [-2.0 * data_constant(fam, Y[:, j], ntr, PW[:, j]) for j in range(k)]
    Yp = put(first_rows(first_rows(Y, N).T, K), dt)
    PWp = put(first_rows(pad_rows(np.asarray(PW, dtype=float), N).T, K), dt)
    # 32-bit indices where the values allow (JAX narrows 64-bit gather and scatter indices to 32 bits on
    # every pass: four conversions of the n-vectors per Newton step); 64-bit beyond (the pairs' flat
    # targets of more than 46,340 rows of the Schur complement)
    idx = Index(*(put(index_array(a)) for a in idx_np))
    cj = put(c, dt)
    U1 = np.zeros((K, layout.l1, layout.q1))
    UR = np.zeros((K, layout.m_R))
    statics = dict(fam=fam, layout=layout, tl=tl, width=width)
    args = [put(np.zeros((width, d)), dt), put(np.zeros(width, np.int32)), cj, put(U1, dt), put(UR, dt),
            Yp, PWp, shared, idx, xk, wk]
    if mesh is not None:
        args = [device_mesh.put(np.asarray(args[0]), mesh, True), device_mesh.put(np.asarray(args[1]), mesh, True)] + [
            jax.tree_util.tree_map(lambda a: device_mesh.put(np.asarray(a), mesh, False), a) for a in args[2:]]
    # small data: XLA's quick compile; many rows: XLA's defaults, whose fusion emitters make the row
    # scatters of the cross-products faster (nine endpoints x 104,000 patients: 21.5 -> 16 s of
    # evaluations for 0.8 s more compiling, once per model class), but for its YNNPACK fusions, whose
    # float64 sums over the rows ran 2–8x slower than XLA's own loops (one evaluation 27 -> 18.5 ms)
    opts = compile_options(layout) if N <= FAST_ROWS else LARGE_COMPILE
    exe, compile_s = compiled_program(_vg_jit, tuple(args), {}, statics, opts)
    # the modes of each outcome's last single point, and that point (NaN before any)
    state = {"U1": U1, "UR": UR, "X": np.full((K, d), np.nan)}

    def evaluate(P, which, U1, UR, want):
        """(f, G, û₁, û_R): values and gradients at points P (m, d) of outcomes ``which``, each point's
        mode iterations started from its outcome's row of U1 / UR; the modes of the points where
        ``want`` (m,) only, in their order (a sweep's difference points would hold many copies)."""
        m = P.shape[0]
        U1j, URj = put(U1, dt), put(UR, dt)
        if mesh is not None:
            U1j, URj = (device_mesh.put(np.asarray(a), mesh, False) for a in (U1j, URj))
        pending = []
        # every chunk is dispatched before any result is read: JAX runs them asynchronously, so
        # the chunks of one call (the points of a central-difference Hessian) overlap on the cores
        for s in range(0, m, width):
            e = min(s + width, m)
            Pc = first_rows(P[s:e], width).astype(dt)
            wc = first_rows(np.asarray(which[s:e], dtype=np.int32), width)
            if mesh is None:
                out = exe(put(Pc), put(wc), cj, U1j, URj, *args[5:])
            else:
                out = exe(device_mesh.put(Pc, mesh, True), device_mesh.put(wc, mesh, True), args[2], U1j, URj,
                          *args[5:])
            pending.append((s, e, out))
        f, g = np.empty(m), np.empty((m, d))
        M1, MR = np.empty((int(want.sum()),) + U1.shape[1:]), np.empty((int(want.sum()),) + UR.shape[1:])
        at = np.cumsum(want) - 1  # each wanted point's row of M1 / MR
        for s, e, (fc, gc, (u1, uR)) in pending:
            f[s:e] = np.asarray(fc, dtype=float)[: e - s]
            g[s:e] = np.asarray(gc, dtype=float)[: e - s]
            sel = np.flatnonzero(want[s:e])
            if sel.size:
                M1[at[s + sel]] = np.asarray(u1, dtype=float)[sel]
                MR[at[s + sel]] = np.asarray(uR, dtype=float)[sel]
        return f, g, M1, MR

    def vg(P, which):
        which = np.asarray(which, dtype=np.int64)
        # warm starts for the next evaluation: the modes of points that are an outcome's only point in
        # the call (its iterate or line-search point), not those of difference points around it
        single = np.bincount(which, minlength=K)[which] == 1
        f, g, M1, MR = evaluate(P, which, state["U1"], state["UR"], single)
        # a warm start far from a point's modes (after a long step) can stall the mode iterations where
        # the penalised deviance is astronomically large (Poisson: exp(η) near overflow, ~1e18, whose
        # relative convergence test is then met by tiny steps): such points, non-finite from a warm
        # start, are evaluated again from u = 0 (whose value is the deviance's, not the start's)
        redo = np.flatnonzero(~np.isfinite(f) & ~np.isnan(state["X"][which, 0]))
        if redo.size:
            f[redo], g[redo], M1r, MRr = evaluate(P[redo], which[redo], np.zeros_like(state["U1"]),
                                                  np.zeros_like(state["UR"]), single[redo])
            at = np.cumsum(single) - 1
            M1[at[redo[single[redo]]]], MR[at[redo[single[redo]]]] = M1r, MRr
        keep = np.isfinite(f[single])  # of the single points, in their order
        ks = np.flatnonzero(single)[keep]
        # new arrays, never written in place (the device may still read the old ones)
        U1n, URn, Xn = state["U1"].copy(), state["UR"].copy(), state["X"].copy()
        U1n[which[ks]], URn[which[ks]], Xn[which[ks]] = M1[keep], MR[keep], P[ks]
        state["U1"], state["UR"], state["X"] = U1n, URn, Xn
        return f + const[which], g

    lower = np.concatenate([np.where(tl.is_diagonal(), 0.0, -np.inf), np.full(ndisp + p, -np.inf)])
    prec = FLOAT32 if jnp.dtype(dt) == jnp.float32 else FLOAT64
    x0 = np.asarray(params0, dtype=float).reshape(k, d) / c
    # the small step needs gradients exact to rounding, i.e. modes found by Newton's method: a family
    # whose mode iterations are Fisher-scoring steps (linear convergence) keeps central differences
    newton_modes = fam.scoring_weight is None
    # many rows: the start's Hessian modelled in β (:func:`gauss_newton_start`), θ's columns by differences
    # (d + 1 points of an evaluation's cost become 1 + dim θ); small data: differences throughout
    start_hess = None
    if N >= GN_START_ROWS and fam.score_info is not None and ndisp == 0:
        start_hess = gauss_newton_start(fam, codes, nlev, Zs, X, Y, PW, ntr, offset, c, tl, N)
    opt = minimize_batch(vg, x0, lower, gtol=gtol, max_iter=max_iter, prec=prec, flips=tl.flips(),
                         mirror=tl.mirrors(), central=not newton_modes,
                         record_step=RECORD_STEP if newton_modes else None, start_hess=start_hess)
    # the modes at the estimates, where the last point an outcome's modes came from is not its estimate
    redo = np.flatnonzero(~np.all(state["X"][:k] == opt.x, axis=1))
    if redo.size:
        vg(opt.x[redo], redo)
    H = opt.hess / np.outer(c, c)[None]
    batch = GlmmBatch(params=opt.x * c, opt=opt, scale=c, hess=H, modes=(state["U1"][:k].copy(), state["UR"][:k].copy()),
                      layout=layout, tl=tl, idx=idx, data=(*shared, Yp, PWp), compile_seconds=compile_s,
                      run_seconds=time.perf_counter() - t0 - compile_s, fam_=fam)
    return batch


def _glm_parts(eta, y, ntr, pw, *, fam):
    """(Σ wᵢ ℓᵢ(ηᵢ), wᵢ ∂ℓᵢ/∂ηᵢ per row, the Fisher weights per row), the log-likelihood without the
    η-free part of ℓ for a family that has one (``fam.const``)."""
    ll = fam.kernel if fam.const is not None else fam.loglik
    if fam.score_info is not None:
        s = pw * fam.score_info(y, ntr, eta)[0]
    else:
        s = pw * jax.vmap(jax.grad(lambda e, yy, nn: fam.loglik(yy, nn, e)))(eta, y, ntr)
    return jnp.sum(pw * ll(y, ntr, eta)), s, fisher_weights(fam, GlmmData(None, None, None, y, ntr, pw, None), eta)


_glm_parts_jit = jax.jit(_glm_parts, static_argnames=("fam",))


@functools.lru_cache(maxsize=None)
def glm_kernels(fam):
    """(log-likelihood; score and Fisher weights) in η for ``fam``: functions of (η, y, trials, prior
    weights) — the GLM fits behind a GLMM's starts, and :func:`gauss_newton_start`'s weights.  Both
    call one program (:func:`_glm_parts`), compiled once per shape through
    :func:`jaxmix.fitting.cache.compiled_program` (kept in the cache folder like the models' programs:
    a later process does not trace it), with XLA's quick options up to :data:`FAST_ROWS` rows (a
    first binomial GLMM fit compiled two programs with XLA's defaults: 0.25 s of its ~1.1 s).

    For a family whose log-likelihood's η-free part is a function of the data alone (``fam.const``)
    the first leaves it out (the caller adds :func:`jaxmix.spec.families.data_constant` once)."""
    def parts(*args):
        opts = FAST_COMPILE if args[0].shape[0] <= FAST_ROWS else None
        exe, _ = compiled_program(_glm_parts_jit, args, {}, {"fam": fam}, opts)
        return exe(*args)

    return (lambda *args: parts(*args)[0]), (lambda *args: parts(*args)[1:])


def gauss_newton_start(fam, codes, nlev, Zs, X, Y, PW, ntr, offset, c, tl, N: int | None = None):
    """The model of a GLMM's start Hessian for ``minimize_batch(start_hess=...)``, in the scaled
    parameters x = params / c: the β block 2[X′WX − X′WZΛ(Λ′Z′WZΛ + I)⁻¹Λ′Z′WX] (the Fisher
    information of β with the random effects profiled out, lme4's RX′RX) with the Fisher weights W at
    η = Xβ + o, zero θ rows and columns (taken by differences).  Z and Λ are scipy sparse matrices;
    the weights come from :func:`glm_kernels` on the rows padded to N (default n), the bucket of the
    GLM starts' and the main program's."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    from ..core.sparse import sparse_lambda, sparse_z

    nt = tl.size
    n, p = X.shape
    N = n if N is None else N
    X = np.asarray(X, dtype=float)
    Zs_, _ = sparse_z(codes, nlev, Zs, n)

    def model(Xs, which):
        m, d = Xs.shape
        H = np.zeros((m, d, d))
        for i in range(m):
            prm = Xs[i] * c
            theta, beta = prm[:nt], prm[nt:]
            Lam = sparse_lambda(theta, tl, nlev)
            j = int(which[i])
            eta = X @ beta + np.asarray(offset, dtype=float)
            # the GLM starts' program: rows padded to the bucket, compiled for it already
            rows_j = (first_rows(np.asarray(a, dtype=float), N) for a in (eta, Y[:, j], ntr))
            W = np.asarray(glm_kernels(fam)[1](*rows_j, pad_rows(np.asarray(PW[:, j], dtype=float), N))[1])[:n]
            ZL = Zs_ @ Lam
            WZL = ZL.multiply(W[:, None]).tocsc()
            A = (ZL.T @ WZL + sp.identity(ZL.shape[1])).tocsc()
            R = np.asarray((WZL.T @ X))
            info = (X * W[:, None]).T @ X - R.T @ splu(A).solve(R)
            H[i, nt:, nt:] = 2.0 * info * np.outer(c[nt:], c[nt:])
        cols = np.zeros(d, dtype=bool)
        cols[:nt] = True
        return H, cols

    return model


class GlmmFit(NamedTuple):
    params: np.ndarray  # (θ, β) at the estimate; (θ, log φ, β) for a family with a dispersion φ
    opt: HostResult  # in the scaled parameters
    scale: np.ndarray  # params = scale ⊙ x
    hess: np.ndarray  # Hessian of the deviance in (θ, β) at the estimate
    batch: GlmmBatch  # modes, b and conditional variances: ``batch.b(0, nlev)``, ``batch.condvar(0, nlev)``
    compile_seconds: float


def fit_glmm_arrays(fam, codes, nlev, Zs, X, y, pw, ntr, offset, params0, nagq: int, dt, gtol: float = 1e-4,
                    max_iter: int = 500) -> GlmmFit:
    """:func:`fit_glmm_outcomes` for one outcome."""
    fb = fit_glmm_outcomes(fam, codes, nlev, Zs, X, np.asarray(y, dtype=float)[:, None],
                           np.asarray(pw, dtype=float)[:, None], ntr, offset, np.asarray(params0)[None, :], nagq, dt,
                           gtol=gtol, max_iter=max_iter)
    return GlmmFit(params=fb.params[0], opt=fb.opt.item(0), scale=fb.scale, hess=fb.hess[0], batch=fb,
                   compile_seconds=fb.compile_seconds)
