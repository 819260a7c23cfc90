"""The Gaussian LMM fit of one outcome: numpy cross-products, one compiled objective per model class.

A model class is what the compiled code depends on: the columns q of each random term, the padded
(bucketed) levels and pairs of levels of :func:`jaxmix.core.structure.padded_system`, the number of
fixed effects p, ML or REML, and the dtype.  Data sets of one class — other rows, other level counts
within a bucket — reuse the executables (in memory, and through JAX's persistent cache in later
processes).  Two programs are compiled per class:

* the value and exact gradient of the profiled criterion (:func:`jaxmix.core.lmm.objective`) in scaled
  parameters θ̃ (θ = c ⊙ θ̃, see :func:`theta_scale`), which the host optimiser
  (:func:`jaxmix.core.newton.minimize_bounded`) calls — in closed form for all-scalar terms
  (:func:`jaxmix.core.lmm_scalar.value_and_grad`) and with vector terms
  (:func:`jaxmix.core.lmm_blocks.value_and_grad`); and
* the solution at θ̂ (β̂, spherical modes, r², L_X and the factor), compiled on a second thread
  while the optimiser runs.

A class of scalar terms whose Schur complement is dense and large (:func:`jaxmix.core.lmm_scalar.dense_split`)
evaluates the first as two programs — the factor (:func:`jaxmix.core.lmm_scalar.dense_stage`), then,
given M⁻¹ from LAPACK's potri on the host (:func:`jaxmix.core.linalg.spd_inverse_host`), the value and
gradient (:func:`jaxmix.core.lmm_scalar.dense_finish`) — so that no program holds a host callback and
JAX's persistent cache keeps them all.  The sums over the same-level pairs that the factor's program
needs are formed before it on the host too (:func:`jaxmix.core.lmm_scalar.slot_sums_host`, one sparse
product per point), so the pairs themselves never reach the device.

Scaling: each random-effect column of Z is measured by its root mean square sᵢ; with Z̃ = ZD⁻¹
(D = diag(s)) the term's factor is Λ̃ = DΛ, so θᵢⱼ = θ̃ᵢⱼ / sᵢ.  The optimiser works in θ̃, where the
start Λ̃ = I and the tolerances mean the same whatever the units of the covariates.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import threading
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .cache import compiled_program
from ..core.newton import FLOAT32, FLOAT64, BatchResult, HostResult, minimize_batch
from ..core.structure import FINE, bucket, padded_system
from ..spec.covariance import ThetaLayout, lambdas_np, theta_layout
from ..core.crossprod import CrossProducts, Index, Layout, RowData, cross_products, terms_structure
from ..core import lmm_blocks, lmm_scalar
from ..core.linalg import spd_inverse_host
from ..core.lmm import cond_var, solve
from ..core.lmm_host import solve_host
from ..core.lmm_classes import class_flops, class_tails, level_classes, value_grad_classes


def index_array(a: np.ndarray) -> np.ndarray:
    """Index arrays as int32 where their values allow (half the memory and traffic of the gathers
    over the pairs of entries)."""
    a = np.asarray(a)
    if a.dtype.kind in "iu" and (a.size == 0 or (a.min() >= 0 and a.max() < 2**31 - 1)):
        return a.astype(np.int32)
    return a


def put(a, dtype=None):
    """A host array on the default device (``jax.device_put``: no program is compiled, unlike
    ``jnp.asarray`` / ``jnp.zeros``, which compile a small conversion program on first use)."""
    a = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
    return jax.device_put(a)


__all__ = ["first_rows", "LmmBatch", "LmmFit", "fit_lmm_outcomes", "outcome_blocks", "fit_lmm_arrays", "theta_scale", "column_rms", "lmm_arrays", "index_array"]


def _vg_point(x, c, xp, idx, n, ldW, pairs=None, *, layout, tl, p, reml):
    if lmm_scalar.applies(layout):  # scalar terms: the gradient in closed form
        f, g = lmm_scalar.value_and_grad(x * c, xp, idx, layout, n, p, ldW, reml, pairs)
        return f, g * c
    f, g = lmm_blocks.value_and_grad(x * c, xp, idx, layout, tl, n, p, ldW, reml)  # vector terms: likewise
    return f, g * c


def _gather(which, grp, shared, per, one_group):
    """Each point's cross-products: the group blocks (A11, BR, CRR) by the outcome's mask group,
    the tail blocks (BT, CRT, CTT) by the outcome."""
    A11, BR, CRR = shared
    BT, CRT, CTT = per
    take = lambda a, i: jnp.take(a, i, axis=0)  # noqa: E731
    g = take(grp, which)
    if one_group:
        A11, BR, CRR = A11[0], BR[0], CRR[0]
    else:
        A11, BR, CRR = take(A11, g), take(BR, g), take(CRR, g)
    return CrossProducts(A11, BR, take(BT, which), CRR, take(CRT, which), take(CTT, which))


def _point_inputs(which, grp, shared, per, n, ldW, pairs):
    """Each point's cross-products, n, Σ log w and (scalar terms) pair data, gathered by its outcome
    and the outcome's weight group; and whether all outcomes share one group."""
    one_group = shared[0].shape[0] == 1
    xp = _gather(which, grp, shared, per, one_group)
    nj, lj = jnp.take(n, which), jnp.take(ldW, which)
    if pairs is not None:  # each point's group
        pairs = pairs._replace(**{f: getattr(pairs, f)[0] if one_group else
                                  jnp.take(getattr(pairs, f), jnp.take(grp, which), axis=0)
                                  for f in lmm_scalar.GROUP_FIELDS})
    return xp, nj, lj, pairs, one_group


def _over_points(fun, X, xp, nj, lj, pairs, one_group, width):
    """``fun(x, xp, n, ldW, pairs)`` at each of the points X (width, d; or a tuple of arrays with a
    leading axis of width, each point's x the tuple of their rows): vmapped, or called once for a
    one-point batch (no batched LAPACK calls)."""
    if width == 1:
        pr = pairs if pairs is None or one_group else pairs._replace(
            **{f: getattr(pairs, f)[0] for f in lmm_scalar.GROUP_FIELDS})
        x0 = jax.tree_util.tree_map(lambda a: a[0], X)
        return jax.tree_util.tree_map(lambda a: a[None], fun(x0, _first(xp, one_group), nj[0], lj[0], pr))
    axes = CrossProducts(None if one_group else 0, None if one_group else 0, 0, None if one_group else 0, 0, 0)
    pax = None if pairs is None else lmm_scalar.Pairs(*(
        0 if f in lmm_scalar.GROUP_FIELDS and not one_group else None for f in lmm_scalar.Pairs._fields))
    return jax.vmap(fun, in_axes=(0, axes, 0, 0, pax))(X, xp, nj, lj, pairs)


def _vg_points(X, which, c, grp, shared, per, n, ldW, idx, pairs=None, *, layout, tl, p, reml, width):
    """Values and gradients of the criterion at points X (width, d), point i for outcome which[i].
    ``pairs``: the scalar terms' pair data (:func:`jaxmix.core.lmm_scalar.pairs_host`, products stacked
    by group) or None."""
    xp, nj, lj, pairs, one_group = _point_inputs(which, grp, shared, per, n, ldW, pairs)
    return _over_points(lambda x, xp_, n_, l_, pr: _vg_point(x, c, xp_, idx, n_, l_, pr, layout=layout, tl=tl, p=p,
                                                             reml=reml), X, xp, nj, lj, pairs, one_group, width)


def _stage_points(X, which, c, grp, shared, per, n, ldW, idx, pairs, S, *, layout, tl, p, reml, width):
    """The first of the two programs of a dense scalar-term class (:func:`jaxmix.core.lmm_scalar.dense_split`):
    :func:`jaxmix.core.lmm_scalar.dense_stage` at each point, given its slot sums S (width, U, 2)
    from the host (:func:`jaxmix.core.lmm_scalar.slot_sums_host`)."""
    xp, nj, lj, pairs, one_group = _point_inputs(which, grp, shared, per, n, ldW, pairs)
    # the slot sums ride with the points (the pattern's arrays are shared)
    return _over_points(lambda xs, xp_, n_, l_, pr: lmm_scalar.dense_stage(xs[0] * c, xp_, idx, layout, n_, p, l_,
                                                                           reml, pr, xs[1]),
                        (X, S), xp, nj, lj, pairs, one_group, width)


def spd_inverse_host_batch(L) -> np.ndarray:
    """:func:`jaxmix.core.linalg.spd_inverse_host` of each factor of a batch (width, N, N)."""
    L = np.asarray(L)
    if L.shape[0] == 1:
        return spd_inverse_host(L[0])[None]  # C order: a plain copy to the device
    return np.stack([spd_inverse_host(Li) for Li in L])


def _finish_points(st, Ainv, c, pairs, *, layout, tl, p, reml, width):
    """The second: :func:`jaxmix.core.lmm_scalar.dense_finish` at each point, given M⁻¹ from the host."""
    fin = lambda s_, A_: lmm_scalar.dense_finish(s_, layout, p, reml, pairs, A_)  # noqa: E731  (pattern: shared)
    if width == 1:
        f, g = fin(jax.tree_util.tree_map(lambda a: a[0], st), Ainv[0])
        return f[None], (g * c)[None]
    f, g = jax.vmap(fin)(st, Ainv)
    return f, g * c


def _first(xp, one_group):
    """The cross-products of a one-point batch."""
    if one_group:
        return CrossProducts(xp.A11, xp.BR, xp.BT[0], xp.CRR, xp.CRT[0], xp.CTT[0])
    return CrossProducts(*(a[0] for a in xp))


def _solutions(theta, grp, shared, per, idx, *, layout, tl, p):
    """β̂, modes, r², R_X and the factor of every outcome at its θ̂ (theta (K, nt))."""
    K = theta.shape[0]
    one_group = shared[0].shape[0] == 1
    xp = _gather(jnp.arange(K), grp, shared, per, one_group)
    if K == 1:  # one fit: no batch (a vmap of one turns each LAPACK call into a loop of one)
        return jax.tree_util.tree_map(lambda a: a[None], solve(theta[0], _first(xp, one_group), idx, layout, tl, p))
    axes = CrossProducts(None if one_group else 0, None if one_group else 0, 0, None if one_group else 0, 0, 0)
    return jax.vmap(lambda t, xp_: solve(t, xp_, idx, layout, tl, p), in_axes=(0, axes))(theta, xp)


def _solution_host(theta, tl, layout, p, idx_np, shared_np, per_np, grp):
    """:func:`jaxmix.core.lmm_host.solve_host` of the one outcome at θ (its weight group's blocks)."""
    from ..spec.covariance import lambdas_np

    g = int(grp[0])
    xp = CrossProducts(shared_np[0][g], shared_np[1][g], per_np[0][0], shared_np[2][g], per_np[1][0], per_np[2][0])
    return solve_host(lambdas_np(theta, tl), xp, idx_np, layout, p)


def _cond_var(theta, factor, idx, *, layout, tl):
    from ..spec.covariance import lambdas

    return cond_var(factor, lambdas(theta, tl), idx, layout)


_vg_jit = jax.jit(_vg_points, static_argnames=("layout", "tl", "p", "reml", "width"))
_stage_jit = jax.jit(_stage_points, static_argnames=("layout", "tl", "p", "reml", "width"))
_finish_jit = jax.jit(_finish_points, static_argnames=("layout", "tl", "p", "reml", "width"))
_solution_jit = jax.jit(_solutions, static_argnames=("layout", "tl", "p"))
_cond_var_jit = jax.jit(_cond_var, static_argnames=("layout", "tl"))


#: XLA options for the programs of small model classes: XLA:CPU's MLIR fusion emitters and LLVM's
#: optimisation passes cost more time compiling (about 4x) than they save in a fit whose blocks are
#: this small (the dense factor is LAPACK's anyway); and one LLVM module instead of several compiled
#: in parallel (for programs this small the split costs more than it saves: Penicillin's objective
#: 0.20 -> 0.16 s, sleepstudy's 0.21 -> 0.17 s)
FAST_COMPILE = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0,
                "xla_llvm_disable_expensive_passes": True, "xla_cpu_parallel_codegen_split_count": 1}
SMALL_CLASS = 4096  # padded levels of term 1 plus rows of the Schur complement
WIDE = 16  # point batches wider than this are compiled with WIDE_COMPILE
#: wide batches run long enough for LLVM's optimisations to pay for their compile time, not XLA's
#: fusion emitters (1,000 random-slope outcomes: compile 4.9 -> 2.4 s, the same run time)
WIDE_COMPILE = {"xla_cpu_use_fusion_emitters": False}
MAX_WIDTH = 256  # points per call (more are evaluated in several calls)


def opts_small(layout: Layout) -> bool:
    """Whether the class is small (:data:`SMALL_CLASS`)."""
    return layout.nlev[0] + layout.m_R <= SMALL_CLASS


#: large classes: XLA's defaults but for its YNNPACK fusions, whose float64 reductions over the
#: Schur complement ran 2–4x slower than XLA's own loops (InstEval-like warm fit 3.8 -> 3.5 s)
LARGE_COMPILE = {"xla_cpu_experimental_ynn_fusion_type": ""}


def compile_options(layout: Layout) -> dict | None:
    """:data:`FAST_COMPILE` for small classes, :data:`LARGE_COMPILE` otherwise."""
    return FAST_COMPILE if opts_small(layout) else LARGE_COMPILE


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


class LmmBatch(NamedTuple):
    """The fits of k outcomes of one design (leading axis k)."""

    theta: np.ndarray  # (k, nt)
    opt: BatchResult  # in the scaled parameters θ̃
    theta_scale: np.ndarray  # (nt,) θ = c ⊙ θ̃
    beta: np.ndarray  # (k, p)
    r2: np.ndarray  # (k,)
    RX: np.ndarray  # (k, p, p)
    u1: np.ndarray  # (k, padded levels of term 1, q1)
    uR: np.ndarray  # (k, m_R)
    factor: object  # the blocked factors, leading axis k (device arrays)
    layout: Layout
    tl: ThetaLayout
    idx: Index
    compile_seconds: float
    run_seconds: float
    modes: object = None  # () -> (u1, uR, factor), where those fields are None (computed on first use)

    def _modes(self):
        return (self.u1, self.uR, self.factor) if self.factor is not None else self.modes()

    def b(self, j: int, nlev) -> list:
        """Outcome j's conditional modes per term, (levels, q) with the real levels only."""
        u1, uR, _ = self._modes()
        lams = lambdas_np(self.theta[j], self.tl)
        out = [u1[j][: nlev[0]] @ lams[0].T]
        for lam, off, qk, lk in zip(lams[1:], self.layout.offsets, self.layout.q[1:], nlev[1:]):
            out.append(uR[j][off : off + lk * qk].reshape(lk, qk) @ lam.T)
        return out

    def condvar(self, j: int, nlev) -> list:
        """Outcome j's conditional covariances of the random effects relative to σ², per term
        (levels, q, q) with the real levels only."""
        factor = self._modes()[2]
        dt = jax.tree_util.tree_leaves(factor)[0].dtype
        f_j = jax.tree_util.tree_map(lambda a: a[j], factor)
        th = jnp.asarray(self.theta[j], dt)
        exe, _ = compiled_program(_cond_var_jit, (th, f_j, self.idx), {}, dict(layout=self.layout, tl=self.tl),
                                  compile_options(self.layout))
        cv = exe(th, f_j, self.idx)
        return [np.asarray(v, dtype=float)[:lk] for v, lk in zip(cv, nlev)]


def outcome_blocks(codes, nlev, Zs, X, Y, W):
    """The padded blocked system of k outcomes of one design: one :func:`padded_system` per group
    of outcomes with the same row weights (their missing rows weigh 0), with every response of the
    group in the tail.  Returns (layout, idx, grp (k,), shared (A11, BR, CRR) stacked by group,
    per (BT, CRT, CTT) stacked by outcome)."""
    n, p = X.shape
    k = Y.shape[1]
    groups: dict[bytes, list[int]] = {}
    if (W == W[:, :1]).all():  # every outcome on the same rows (the common case): one group
        groups[b""] = list(range(k))
    else:
        for j in range(k):
            groups.setdefault(np.ascontiguousarray(W[:, j]).tobytes(), []).append(j)
    grp = np.zeros(k, dtype=np.int64)
    A11s, BRs, CRRs = [], [], []
    BT = CRT = CTT = None
    layout = idx = None
    for g, cols in enumerate(groups.values()):
        cols = np.asarray(cols)
        grp[cols] = g
        w = W[:, cols[0]]
        Yg = Y if cols.size == k else Y[:, cols]  # one group: every column, in order (no copy)
        lay, ix, xp = padded_system(codes, nlev, Zs, np.column_stack([X, Yg]), w, tail_cross=False)
        if layout is None:
            layout, idx = dataclasses.replace(lay, t=p + 1), ix  # each outcome's tail is [X, y]
            L1, q1, m_R = xp.BT.shape[0], xp.BT.shape[2], xp.CRT.shape[0]
            BT = np.zeros((k, L1, p + 1, q1))
            CRT = np.zeros((k, m_R, p + 1))
            CTT = np.zeros((k, p + 1, p + 1))
        A11s.append(xp.A11)
        BRs.append(xp.BR)
        CRRs.append(xp.CRR)
        BT[cols, :, :p, :] = xp.BT[None, :, :p, :]
        BT[cols, :, p, :] = np.moveaxis(xp.BT[:, p:, :], 1, 0)
        CRT[cols, :, :p] = xp.CRT[None, :, :p]
        CRT[cols, :, p] = xp.CRT[:, p:].T
        wX = w[:, None] * X
        CTT[cols, :p, :p] = (X.T @ wX)[None]
        Xy = wX.T @ np.ascontiguousarray(Yg)  # (p, kg); a column subset of Y is Fortran-ordered: 20x slower
        CTT[cols, :p, p] = Xy.T
        CTT[cols, p, :p] = Xy.T
        CTT[cols, p, p] = np.einsum("i,ij,ij->j", w, Yg, Yg)
    shared = (np.stack(A11s), np.stack(BRs), np.stack(CRRs))
    return layout, idx, grp, shared, (BT, CRT, CTT)


def first_rows(a: np.ndarray, K: int) -> np.ndarray:
    """``a`` with its first row repeated to K rows (padded outcomes, points and rows stay valid data)."""
    if a.shape[0] == K:
        return a
    return np.concatenate([a, np.repeat(a[:1], K - a.shape[0], axis=0)], axis=0)


def fit_lmm_outcomes(codes, nlev, Zs, X, Y, W, n, ldW, reml: bool, dt, gtol: float = 1e-4,
                     max_iter: int = 500, devices=None) -> LmmBatch:
    """Fit θ of k outcomes of one design together: the host optimiser
    (:func:`jaxmix.core.newton.minimize_batch`) on one compiled program that evaluates the criterion
    and its exact gradient at a batch of points; then β̂, b and the factor at each θ̂.

    Args:
      codes, nlev, Zs: per random term, the level code of each row, the number of levels and the
        term's columns (n, q).
      X: (n, p) fixed effects; Y: (n, k) responses (offset removed; anything finite where W is 0);
      W: (n, k) row weights per outcome (prior weights, 0 for an outcome's missing rows).
      n, ldW: (k,) rows and Σ log w over the rows of positive weight, per outcome.
      devices: with several, each call's points are split over them (the data replicated).
    The outcomes are padded to a bucket (:func:`jaxmix.core.structure.bucket`), so sweeps of
    similar sizes share the program; ``jaxmix.fit`` is k = 1.
    """
    t0 = time.perf_counter()
    k = Y.shape[1]
    p = X.shape[1]
    layout, idx_np, grp, shared_np, per_np = outcome_blocks(codes, nlev, Zs, X, Y, W)
    tl = theta_layout(layout.q)
    c = theta_scale(Zs, tl)
    K = 1 if k == 1 else bucket(k, 2, FINE)
    G = shared_np[0].shape[0]
    x0 = np.tile(tl.init(), (k, 1))
    if k > 1 and G == 1 and layout.m_R == 0:  # a sweep of a one-term model: the moment starts
        xm = moment_start(shared_np[0][0, : nlev[0]], per_np[0][:, : nlev[0], p, :], per_np[2][:, p, p], n, tl) / c
        x0 = np.where(np.isfinite(xm), xm, x0)
        if devices is None or len(devices) <= 1:
            cls = level_classes(shared_np[0][0, : nlev[0]])
            by_class, by_level = class_flops(cls[0].shape[0], int(nlev[0]), layout.q1, layout.t)
            if CLASS_GAIN * by_class <= by_level:
                return _fit_by_classes(cls, layout, idx_np, grp, shared_np, per_np, nlev, tl, c, n, ldW, p, reml,
                                       dt, gtol, max_iter, t0, x0)
    if G == 1 and layout.m_R and all(qk == 1 for qk in layout.q):  # crossed or nested scalar terms
        xh = henderson_start(shared_np[0][0], shared_np[1][0], shared_np[2][0], per_np[0][:, :, p, 0],
                             per_np[1][:, :, p], per_np[2][:, p, p], layout, idx_np.e_row, idx_np.e_blk) / c
        x0 = np.where(np.isfinite(xh), xh, x0)
    Gb = 1 if G == 1 else bucket(G, 2, FINE)
    shared = tuple(put(first_rows(a, Gb), dt) for a in shared_np)
    per = tuple(put(first_rows(a, K), dt) for a in per_np)
    grp_j = put(first_rows(grp, K))
    n_j = put(first_rows(np.asarray(n, dtype=float), K), dt)
    ld_j = put(first_rows(np.asarray(ldW, dtype=float), K), dt)
    idx = Index(*(put(index_array(a)) for a in idx_np))
    multi = devices is not None and len(devices) > 1 and k > 1
    # a dense scalar-term class: the factor and the gradient as two programs with LAPACK's potri on
    # the host between them (a host callback inside one program kept it out of the persistent cache:
    # the InstEval-like objective compiled again in every process, 1.1 s), and the sums over the
    # same-level pairs before them, on the host too (scipy's sparse product, ~14 ms per point at the
    # InstEval-like 1.9M pairs, as fast as the program's segment sums): the pairs stay off the device
    # (its process's peak memory 100-165 MB lower)
    split = not multi and lmm_scalar.dense_split(layout)
    pairs = slot_mats = a1_host = None
    if lmm_scalar.applies(layout) and layout.m_R and not layout.r_diagonal:
        ph = lmm_scalar.pairs_host(shared_np[1], shared_np[2], idx_np)
        if split:
            slot_mats = lmm_scalar.slot_matrices(ph, layout.nlev[0])
            a1_host = np.asarray(shared_np[0][:, :, 0, 0], dtype=float)  # (G, ℓ₁)
            none = np.zeros(0, np.int32)  # the pairs themselves stay on the host (slot_mats)
            ph = ph._replace(prod=np.zeros(ph.cpat.shape[:-1] + (0,)), blk=none, seg=none)
        pairs = lmm_scalar.Pairs(*(put(first_rows(x, Gb) if f in lmm_scalar.GROUP_FIELDS else x,
                                       dt if x.dtype.kind == "f" else None) for f, x in zip(ph._fields, ph)))
        del ph
    # one fit of a small class: the solution at θ̂ in numpy (a compiled program for that one call cost
    # more than the rest of the fit); otherwise the host copies go (the device holds them now)
    host = k == 1 and opts_small(layout) and (devices is None or len(devices) <= 1) and np.dtype(dt) == np.float64
    host_blocks = (idx_np, shared_np, per_np, grp) if host else None
    del idx_np, shared_np, per_np
    cj = put(c, dt)
    width = min(K, MAX_WIDTH)
    mesh = None
    if multi:
        from .. import devices as _devs

        mesh = _devs.outcome_mesh(devices)
        width = -(-K // mesh.size) * mesh.size
    d = tl.size
    statics = dict(layout=layout, tl=tl, p=p, reml=reml, width=width)
    X0 = put(np.zeros((width, d)), dt)
    w0 = put(np.zeros(width, np.int32))
    args = (X0, w0, cj, grp_j, shared, per, n_j, ld_j, idx, pairs)
    sol_args = (put(np.zeros((K, d)), dt), grp_j, shared, per, idx)
    sol_statics = dict(layout=layout, tl=tl, p=p)
    # wide batches run long enough for XLA's optimisations to pay for their compile time
    opts = compile_options(layout) if width <= WIDE else WIDE_COMPILE
    box = {}

    def compile_solution():  # on a second thread while the optimiser runs
        try:
            # run once per fit: XLA's quick compile (its optimisations cost more than they save here)
            box["sol"] = compiled_program(_solution_jit, sol_args, {}, sol_statics, FAST_COMPILE)
        except BaseException as exc:  # raised again in the caller's thread, after the join
            box["error"] = exc

    # started once the objective is traced: two traces at once contend for the interpreter and delay
    # the objective (the optimiser's first call) by the solution's tracing
    # (no solution program for a fit that solves on the host)
    worker = threading.Thread(target=compile_solution) if host_blocks is None else None
    start_worker = worker.start if worker is not None else None
    if mesh is not None:
        args = (_devs.put(np.zeros((width, d), dt), mesh, True), _devs.put(np.zeros(width, np.int32), mesh, True)) + tuple(
            jax.tree_util.tree_map(lambda a: _devs.put(np.asarray(a), mesh, False), args[2:]))
    try:
        if split:  # the factor's program also takes the points' slot sums
            stage_args = args + (put(np.zeros((width, pairs.pr.shape[0], 2)), dt),)
            vg_exe, vg_s = compiled_program(_stage_jit, stage_args, {}, statics, opts, after_lower=start_worker)
            st0 = jax.eval_shape(functools.partial(_stage_jit, **statics), *stage_args)
            fin_args = (st0, jax.ShapeDtypeStruct(st0.L.shape, st0.L.dtype), cj, pairs)
            fin_exe, fin_s = compiled_program(_finish_jit, fin_args, {}, statics, opts)
            vg_s += fin_s
        else:
            vg_exe, vg_s = compiled_program(_vg_jit, args, {}, statics, opts, after_lower=start_worker)
    except BaseException:
        if worker is not None and worker.is_alive():
            worker.join()
        raise
    rest = args[2:]
    grp_np, c0 = np.asarray(grp), float(c[0])

    def vg(P, which):
        m = P.shape[0]
        f, g = np.empty(m), np.empty((m, d))
        for s in range(0, m, width):
            e = min(s + width, m)
            Pc = first_rows(P[s:e], width)
            wc = first_rows(np.asarray(which[s:e], dtype=np.int32), width)
            if split:
                S = lmm_scalar.slot_sums_host(slot_mats, grp_np[wc], Pc[:, 0] * c0, a1_host)
                st = vg_exe(put(Pc, dt), put(wc), *rest, put(S, dt))
                fc, gc = fin_exe(st, put(spd_inverse_host_batch(st.L)), cj, pairs)
            elif mesh is None:
                fc, gc = vg_exe(put(Pc, dt), put(wc), *rest)
            else:
                fc, gc = vg_exe(_devs.put(Pc.astype(dt), mesh, True), _devs.put(wc, mesh, True), *rest)
            f[s:e] = np.asarray(fc, dtype=float)[: e - s]
            g[s:e] = np.asarray(gc, dtype=float)[: e - s]
        return f, g

    lower = np.where(tl.is_diagonal(), 0.0, -np.inf)
    prec = FLOAT32 if jnp.dtype(dt) == jnp.float32 else FLOAT64
    with blas_threads(layout):
        opt = minimize_batch(vg, x0, lower, gtol=gtol, max_iter=max_iter, prec=prec, flips=tl.flips(), mirror=tl.mirrors())
    t_join = time.perf_counter()
    if worker is not None:
        worker.join()
    wait = time.perf_counter() - t_join  # the part of the solution's compile the optimiser did not hide
    if "error" in box:
        raise box["error"]
    theta = opt.x * c
    if host_blocks is not None:
        sol, compile_s = _solution_host(np.nan_to_num(theta[0]), tl, layout, p, *host_blocks), vg_s
        factor = jax.tree_util.tree_map(lambda a: put(np.asarray(a)[None], dt), sol.factor)
        sol = sol._replace(**{f: np.asarray(getattr(sol, f))[None] for f in ("beta", "u1", "uR", "r2", "RX")})
    else:
        sol_exe, sol_s = box["sol"]
        sol = sol_exe(put(first_rows(np.nan_to_num(theta), K), dt), grp_j, shared, per, idx)
        factor = jax.tree_util.tree_map(lambda a: a[:k], sol.factor)
        compile_s = vg_s + min(wait, sol_s)
    return LmmBatch(theta=theta, opt=opt, theta_scale=c, beta=np.asarray(sol.beta, dtype=float)[:k],
                    r2=np.asarray(sol.r2, dtype=float)[:k], RX=np.asarray(sol.RX, dtype=float)[:k],
                    u1=np.asarray(sol.u1, dtype=float)[:k], uR=np.asarray(sol.uR, dtype=float)[:k],
                    factor=factor, layout=layout, tl=tl, idx=idx, compile_seconds=compile_s,
                    run_seconds=time.perf_counter() - t0 - compile_s)


# ---- many outcomes of a one-term model: the criterion by classes of levels --------------------------
CLASS_WIDTH = 512  # points per call of the class program (more are evaluated in several calls)
#: the classes are used when they cut the multiply-adds of a point this many times: their S_c (q²t² per
#: class) are gathered per point, so at equal counts the blocked program is faster (1,000 outcomes,
#: 50 groups all different: 0.66 s by 50 classes, 0.48 s blocked)
CLASS_GAIN = 4


def _vg_classes(X, which, c, A11c, cnt, S, CTT, n, ldW, *, tl, p, reml):
    """Values, exact gradients and L_TT of :func:`jaxmix.core.lmm_classes.value_grad_classes` at points
    X (width, d), point i for outcome which[i] (its S and C_TT gathered)."""
    def one(x, s, ctt, n_, l_):
        f, g, LTT = value_grad_classes(x * c, A11c, cnt, s, ctt, n_, p, l_, reml, tl)
        return f, g * c, LTT  # θ = c ⊙ θ̃

    take = lambda a: jnp.take(a, which, axis=0)  # noqa: E731
    return jax.vmap(one)(X, take(S), take(CTT), take(n), take(ldW))


_vg_classes_jit = jax.jit(_vg_classes, static_argnames=("tl", "p", "reml"))


def moment_start(A11: np.ndarray, Zy: np.ndarray, yy: np.ndarray, n, tl: ThetaLayout) -> np.ndarray:
    """θ starts (k, nθ) of one-term LMMs from per-level least squares (NaN rows where they fail).

    Per level j, b̂ⱼ = A11ⱼ⁻¹Zⱼ′y; σ̂² = (y′y − Σⱼ b̂ⱼ′Zⱼ′y)/(n − ℓq); Ω̂ = cov(b̂ⱼ) − σ̂²·meanⱼ A11ⱼ⁻¹ and
    Λ = chol(Ω̂/σ̂²) (for a balanced design these are the ANOVA estimates, which are REML's optimum when
    they lie inside the parameter space).  Only an Ω̂ well inside (its smallest eigenvalue above
    10⁻²·σ̂²·the largest of meanⱼ A11ⱼ⁻¹) gives a start; near the boundary (a singular fit) the
    outcome starts from Λ = I as ``jaxmix.fit`` does, and reaches the optimum ``jaxmix.fit`` reaches.
    A11 (ℓ, q, q) shared, Zy (k, ℓ, q) and yy (k,) per outcome."""
    k, ell, q = Zy.shape
    with np.errstate(all="ignore"):
        try:
            Ainv = np.linalg.inv(A11)
        except np.linalg.LinAlgError:  # a level with too few distinct rows for its own fit
            return np.full((k, tl.size), np.nan)
        b = np.einsum("jab,kjb->kja", Ainv, Zy)
        s2 = (yy - np.einsum("kja,kja->k", b, Zy)) / (np.asarray(n, dtype=float) - ell * q)
        bc = b - b.mean(axis=1, keepdims=True)
        V = np.mean(Ainv, axis=0)
        Om = np.einsum("kja,kjb->kab", bc, bc) / max(ell - 1, 1) - s2[:, None, None] * V
        w, U = np.linalg.eigh(np.where(np.isfinite(Om), Om, 0.0))
        interior = np.min(w, axis=1) > 1e-2 * s2 * np.max(np.linalg.eigvalsh(V))
        lam = np.linalg.cholesky(np.einsum("kab,kb,kcb->kac", U, np.abs(w) / s2[:, None], U))
    out = lam[:, np.asarray(tl.rows[0]), np.asarray(tl.cols[0])]
    return np.where(np.isfinite(out).all(axis=1, keepdims=True) & ((s2 > 0) & interior)[:, None], out, np.nan)


def henderson_start(A11: np.ndarray, BR: np.ndarray, CRR: np.ndarray, Zy1: np.ndarray, ZyR: np.ndarray,
                    yy: np.ndarray, layout: Layout, e_row: np.ndarray, e_blk: np.ndarray) -> np.ndarray:
    """θ starts (k, K) of LMMs whose K random terms are all scalar, by Henderson's method I (Searle,
    Casella & McCulloch 1992, section 5.3), NaN rows where it fails.

    With T_k the level totals Z_k′y, n_kl the level counts and n^{kj}_lm the counts of rows at level l
    of term k and m of term j (the cross-products A11, Z_R′Z₁ and Z_R′Z_R), the quadratic forms
    Q_k = Σ_l T_kl²/n_kl, Q_μ = (Σy)²/N and Q₀ = y′y have expectations (y = μ + Σ_j Z_j b_j + e)

        E Q_k = Nμ² + Σ_j σ_j² Σ_lm (n^{kj}_lm)²/n_kl + ℓ_k σ²,   E Q_μ = Nμ² + Σ_j σ_j² Σ_m n_jm²/N + σ²,
        E Q₀ = Nμ² + N Σ_j σ_j² + N σ²;

    equating Q − Q_μ to their expectations gives σ̂² and σ̂_j², and θ_j = σ̂_j/σ̂.  The fixed effects
    other than the mean are ignored (a start, not an estimate).  A σ̂_j² ≤ 0 starts θ_j at lme4's 1."""
    K = len(layout.q)
    nR = np.diagonal(CRR)
    counts = [A11[:, 0, 0]] + [nR[off: off + lk] for off, lk in zip(layout.offsets, layout.nlev[1:])]
    rows = [np.arange(off, off + lk) for off, lk in zip(layout.offsets, layout.nlev[1:])]
    N = float(np.sum(counts[0]))
    inv = [np.where(c > 0, 1.0 / np.where(c > 0, c, 1.0), 0.0) for c in counts]
    C = np.zeros((K + 1, K + 1))  # rows: Q_1..Q_K, Q_0; columns σ_1²..σ_K², σ²
    for k in range(K):
        C[k, k] = N
        C[k, K] = float(np.sum(counts[k] > 0))
    for j in range(1, K):
        es, npair = layout.entry_starts[j - 1], layout.n_pairs[j - 1]
        e = np.arange(es, es + npair)
        b2 = BR[e, 0] ** 2
        C[0, j] = float(np.sum(b2 * inv[0][e_blk[e]]))
        C[j, 0] = float(np.sum(b2 * inv[j][e_row[e] - layout.offsets[j - 1]]))
        for i in range(1, K):
            if i != j:
                C[i, j] = float(np.sum(CRR[np.ix_(rows[i - 1], rows[j - 1])] ** 2 * inv[i][:, None]))
    C[K, :K] = N
    C[K, K] = N
    cmu = np.array([float(np.sum(c**2)) / N for c in counts] + [1.0])
    C = C - cmu[None, :]
    sy = Zy1.sum(axis=1)
    Q = np.column_stack([np.einsum("kl,l->k", Zy1**2, inv[0])]
                        + [np.einsum("kl,l->k", ZyR[:, r] ** 2, inv[j + 1]) for j, r in enumerate(rows)]
                        + [yy]) - (sy**2 / N)[:, None]
    with np.errstate(all="ignore"):
        try:
            s = np.linalg.solve(C, Q.T).T  # (k, K + 1)
        except np.linalg.LinAlgError:
            return np.full((Q.shape[0], K), np.nan)
        s2 = s[:, K:]
        th = np.where(s[:, :K] > 0, np.sqrt(np.abs(s[:, :K]) / s2), 1.0)
    return np.where(np.isfinite(th).all(axis=1, keepdims=True) & (s2 > 0), th, np.nan)


def _fit_by_classes(cls, layout, idx_np, grp, shared_np, per_np, nlev, tl, c, n, ldW, p, reml, dt, gtol,
                    max_iter, t0, x0) -> LmmBatch:
    """:func:`fit_lmm_outcomes` for k > 1 outcomes that share their rows, one random term, and few
    classes of levels with equal Z′WZ blocks (:mod:`jaxmix.core.lmm_classes`: a point costs
    O(classes), not O(levels)).  One small program evaluates the criterion, its gradient and L_TT; β̂,
    r² and L_X come from L_TT at θ̂; the conditional modes and factors (``sweep[name]``) are solved by
    the blocked program on first use.  ``x0``: the starts (scaled θ̃, the moment starts where they exist)."""
    A11c, cnt, cls_of = cls
    k = per_np[0].shape[0]
    d = tl.size
    K = bucket(k, 2, FINE)
    width = min(K, CLASS_WIDTH)
    S = class_tails(per_np[0][:, : nlev[0]], cls_of, A11c.shape[0])
    rest = (put(c, dt), put(A11c, dt), put(cnt, dt), put(first_rows(S, K), dt), put(first_rows(per_np[2], K), dt),
            put(first_rows(np.asarray(n, dtype=float), K), dt), put(first_rows(np.asarray(ldW, dtype=float), K), dt))
    args = (put(np.zeros((width, d)), dt), put(np.zeros(width, np.int32))) + rest
    exe, compile_s = compiled_program(_vg_classes_jit, args, {}, dict(tl=tl, p=p, reml=reml), FAST_COMPILE)

    def call(P, which, keep_aux=False):
        m = P.shape[0]
        f, g, aux = np.empty(m), np.empty((m, d)), []
        for s in range(0, m, width):
            e = min(s + width, m)
            # host arrays go to the executable as they are (no device_put: one transfer less per call)
            fc, gc, Lc = exe(np.asarray(first_rows(P[s:e], width), dtype=dt),
                             first_rows(np.asarray(which[s:e], dtype=np.int32), width), *rest)
            f[s:e] = np.asarray(fc, dtype=float)[: e - s]
            g[s:e] = np.asarray(gc, dtype=float)[: e - s]
            if keep_aux:
                aux.append(np.asarray(Lc, dtype=float)[: e - s])
        return (f, g, np.concatenate(aux)) if keep_aux else (f, g)

    lower = np.where(tl.is_diagonal(), 0.0, -np.inf)
    prec = FLOAT32 if jnp.dtype(dt) == jnp.float32 else FLOAT64
    opt = minimize_batch(call, x0, lower, gtol=gtol, max_iter=max_iter, prec=prec, flips=tl.flips(), mirror=tl.mirrors())
    theta = opt.x * c
    _, _, LTT = call(np.nan_to_num(opt.x), np.arange(k), keep_aux=True)
    RX = LTT[:, :p, :p]
    beta = np.linalg.solve(np.swapaxes(RX, 1, 2), LTT[:, p, :p, None])[:, :, 0] if p else np.zeros((k, 0))
    memo = {}
    idx = Index(*(put(index_array(a)) for a in idx_np))  # int32 as the blocked program's (one solution program)

    def modes():  # the blocked solution of every outcome at θ̂, on first use
        if not memo:
            sargs = (put(first_rows(np.nan_to_num(theta), K), dt), put(first_rows(grp, K)),
                     tuple(put(a, dt) for a in shared_np), tuple(put(first_rows(a, K), dt) for a in per_np), idx)
            sol_exe, _ = compiled_program(_solution_jit, sargs, {}, dict(layout=layout, tl=tl, p=p),
                                          compile_options(layout))
            sol = sol_exe(*sargs)
            memo["v"] = (np.asarray(sol.u1, dtype=float)[:k], np.asarray(sol.uR, dtype=float)[:k],
                         jax.tree_util.tree_map(lambda a: a[:k], sol.factor))
        return memo["v"]

    return LmmBatch(theta=theta, opt=opt, theta_scale=c, beta=beta, r2=LTT[:, p, p] ** 2, RX=RX, u1=None, uR=None,
                    factor=None, layout=layout, tl=tl, idx=idx, compile_seconds=compile_s,
                    run_seconds=time.perf_counter() - t0 - compile_s, modes=modes)


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
    """:func:`fit_lmm_outcomes` for one outcome."""
    ldW = float(np.sum(np.log(w[w > 0])))
    fb = fit_lmm_outcomes(codes, nlev, Zs, X, np.asarray(y, dtype=float)[:, None], np.asarray(w, dtype=float)[:, None],
                          [X.shape[0]], [ldW], reml, dt, gtol=gtol, max_iter=max_iter)
    return LmmFit(theta=fb.theta[0], opt=fb.opt.item(0), theta_scale=fb.theta_scale, beta=fb.beta[0],
                  r2=float(fb.r2[0]), RX=fb.RX[0], b=fb.b(0, nlev), condvar=lambda: fb.condvar(0, nlev),
                  compile_seconds=fb.compile_seconds)


def lmm_arrays(design, dt, responses: np.ndarray | None = None):
    """Unpadded structure and cross-products of a design (tail = [X, y − offset]), on the device: the
    form the inference functions and the sweeps differentiate."""
    terms = design.terms
    y = design.y - design.offset if responses is None else responses
    T = np.column_stack([design.X, y])
    layout, idx, ZR = terms_structure(terms, design.nobs, T.shape[1])
    idx = idx.as_jax()
    rows = RowData(put(terms[0].Z, dt), put(ZR, dt), put(T, dt))
    xp = _cross_products_jit(rows, put(design.weights, dt), idx, layout)
    return layout, idx, xp


_cross_products_jit = jax.jit(cross_products, static_argnames=("layout",))
