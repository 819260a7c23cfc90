"""Where the time of a jaxmix LMM fit goes: design, structure, cross-products, compile, optimisation.

Replays the steps of ``jaxmix.api.fit._fit_lmm`` with a timer around each and prints the sizes that drive
the cost (``layout.m_R``, ``layout.n_entries``, ``len(idx.pa)``).  Also times one objective evaluation
and one gradient, so the optimiser's cost can be read as iterations x evaluation.

    python benchmarks/profile_crossed.py [--csv benchmarks/_work/crossed.csv] [--students N ...]
    python benchmarks/profile_crossed.py --sleepstudy

Each phase prints as soon as it ends (flushed), so a hang shows where it sits; ``--hang-dump S`` dumps
the Python stacks every S seconds (faulthandler).
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

T0 = time.perf_counter()


def log(msg, **kw):
    kw = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in kw.items()}
    print(f"[{time.perf_counter() - T0:8.2f}s] {msg} {json.dumps(kw)}", flush=True)


def _timeit(fn, *args, reps=3):
    import jax

    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return first, best


def pieces(xp, idx, layout, tl, theta, log):
    """Time each step of ``jaxmix.core.blocked.factorize`` alone (jit per step, min of 3 runs)."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import solve_triangular

    from jaxmix.core.blocked import _scale_entries, scale_rows
    from jaxmix.spec.covariance import lambdas

    lams = lambdas(theta, tl)
    lam1 = lams[0]
    q1, l1, m_R, t = layout.q1, layout.l1, layout.m_R, layout.t
    dt = xp.A11.dtype
    f_l11 = jax.jit(lambda A11: jnp.linalg.cholesky(jnp.einsum("ba,jbc,cd->jad", lam1, A11, lam1)
                                                    + jnp.eye(q1, dtype=dt)))
    L11 = f_l11(xp.A11)
    f_lT = jax.jit(lambda L11, BT: jnp.swapaxes(solve_triangular(
        L11, jnp.swapaxes(jnp.einsum("jtc,cd->jtd", BT, lam1), 1, 2), lower=True), 1, 2))
    lT = f_lT(L11, xp.BT)
    f_sc = jax.jit(lambda BR: _scale_entries(BR, lams, layout))
    BR = f_sc(xp.BR)
    f_lR = jax.jit(lambda L11, BR: solve_triangular(L11[idx.e_blk], BR[:, :, None], lower=True)[:, :, 0])
    lR = f_lR(L11, BR)
    f_lR_div = jax.jit(lambda L11, BR: BR / L11[idx.e_blk][:, :, 0])  # q1 == 1 only
    f_crr = jax.jit(lambda C: scale_rows(scale_rows(C, lams, layout).T, lams, layout) + jnp.eye(m_R, dtype=dt))
    f_prod = jax.jit(lambda lR: jax.ops.segment_sum(jnp.sum(lR[idx.pa] * lR[idx.pb], axis=-1), idx.ptgt,
                                                    num_segments=m_R * m_R))
    f_mrt = jax.jit(lambda lR, lT: jax.ops.segment_sum(jnp.einsum("ec,etc->et", lR, lT[idx.e_blk]),
                                                       idx.e_row, num_segments=m_R))
    M = jnp.eye(m_R + t, dtype=dt) * 10.0
    f_chol = jax.jit(jnp.linalg.cholesky)
    f_tril = jax.jit(lambda M: M + jnp.tril(M, -1).T)
    rows = [
        ("L11 = chol(Λ1'A11Λ1 + I), batched", f_l11, (xp.A11,), f"batch {l1} of {q1}x{q1}"),
        ("lT = BT Λ1 L11^-T (batched trsm)", f_lT, (L11, xp.BT), f"batch {l1}, rhs {t}"),
        ("_scale_entries(BR)", f_sc, (xp.BR,), f"E = {layout.n_entries}"),
        ("lR = trsm(L11[e_blk], BR), batched", f_lR, (L11, BR), f"batch E = {layout.n_entries} of {q1}x{q1}"),
        ("lR as a division (q1 = 1)", f_lR_div, (L11, BR), "same result, no LAPACK") if q1 == 1 else None,
        ("S'CRR S + I (scale_rows x2)", f_crr, (xp.CRR,), f"{m_R}x{m_R}"),
        ("Schur pairs: gather + segment_sum", f_prod, (lR,), f"P = {len(idx.pa)} pairs -> {m_R}^2"),
        ("MRT segment_sum", f_mrt, (lR, lT), f"E = {layout.n_entries}"),
        ("M + tril(M,-1)'", f_tril, (M,), f"{m_R + t}^2"),
        ("dense Cholesky of M", f_chol, (M,), f"{m_R + t}x{m_R + t}"),
    ]
    for row in rows:
        if row is None:
            continue
        name, fn, args, size = row
        first, best = _timeit(fn, *args)
        log("piece: " + name, seconds=best, first_call=first, size=size)
    # the real Schur complement M of factorize (not a stand-in): its Cholesky, and subnormals in it
    from jaxmix.core.blocked import factorize

    f_fac = jax.jit(lambda th: factorize(lambdas(th, tl), xp, idx, layout))
    first, best = _timeit(f_fac, theta)
    log("piece: whole factorize", seconds=best, first_call=first)
    LDD = f_fac(theta).LDD
    M_real = LDD @ LDD.T
    first, best = _timeit(f_chol, M_real)
    tiny = np.finfo(np.float64).tiny
    L_np = np.asarray(LDD)
    log("piece: dense Cholesky of the real M", seconds=best, first_call=first,
        subnormal_entries_in_L=int(np.sum((L_np != 0) & (np.abs(L_np) < tiny))),
        nonzero_entries_in_L=int(np.sum(L_np != 0)), size=f"{m_R + t}^2")
    import scipy.linalg

    M_np = np.asarray(M_real)
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        scipy.linalg.cholesky(M_np, lower=True)
        ts.append(time.perf_counter() - t0)
    log("piece: scipy.linalg.cholesky of the real M", seconds=min(ts))
    if q1 == 1:
        err = float(jnp.max(jnp.abs(f_lR(L11, BR) - f_lR_div(L11, BR))))
        log("piece check: division vs trsm", max_abs_diff=err)


def patch_small_trsm(max_q: int = 4):
    """EXPERIMENT, benchmark-side only: small triangular solves without LAPACK.

    Replaces ``solve_triangular`` in ``jaxmix.core.blocked`` and ``jaxmix.core.lmm`` by unrolled substitution
    when the triangle is at most ``max_q`` x ``max_q`` (lower, trans 0 or 'T'), so that the batched
    1x1 / 2x2 solves of term 1 (batch = E entries x vmap width) never reach jaxlib's batched LAPACK
    kernel, which on a 2-thread pool can deadlock (jaxlib 0.10.2, ParallelBatchMap).  Larger solves
    go to the original.  Not part of jaxmix: it measures what such a change in jaxmix would give.
    """
    import jax.numpy as jnp
    from jax.scipy.linalg import solve_triangular as orig

    import jaxmix.core.blocked
    import jaxmix.core.lmm

    def small(a, b, lower=False, trans=0, **kw):
        q = a.shape[-1]
        if q > max_q or not lower or kw:
            return orig(a, b, lower=lower, trans=trans, **kw)
        vec = b.ndim == a.ndim - 1
        B = b[..., None] if vec else b
        xs = [None] * q
        if trans in (0, "N"):
            for i in range(q):
                acc = B[..., i, :]
                for j in range(i):
                    acc = acc - a[..., i, j, None] * xs[j]
                xs[i] = acc / a[..., i, i, None]
        else:  # solve a' x = b, a lower: back substitution
            for i in reversed(range(q)):
                acc = B[..., i, :]
                for j in range(i + 1, q):
                    acc = acc - a[..., j, i, None] * xs[j]
                xs[i] = acc / a[..., i, i, None]
        X = jnp.stack(xs, axis=-2)
        return X[..., 0] if vec else X

    jaxmix.core.blocked.solve_triangular = small
    jaxmix.core.lmm.solve_triangular = small


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", default=None)
    ap.add_argument("--students", type=int, default=2972)
    ap.add_argument("--lecturers", type=int, default=1128)
    ap.add_argument("--sleepstudy", action="store_true")
    ap.add_argument("--method", default="REML")
    ap.add_argument("--hang-dump", type=float, default=0.0, help="dump stacks every S seconds")
    ap.add_argument("--skip-fit", action="store_true", help="stop after timing the objective")
    ap.add_argument("--pieces", action="store_true", help="time each step of blocked.factorize")
    ap.add_argument("--patch-small-trsm", action="store_true",
                    help="EXPERIMENT: unrolled small triangular solves instead of batched LAPACK (see doc)")
    a = ap.parse_args(argv)
    if a.hang_dump > 0:
        faulthandler.dump_traceback_later(a.hang_dump, repeat=True)

    t = time.perf_counter()
    import jax
    import jax.numpy as jnp

    import jaxmix
    from jaxmix.fitting import lmm as jm
    from jaxmix.spec.covariance import theta_layout
    from jaxmix.core.crossprod import build_structure
    from jaxmix.spec.design import build_design
    from jaxmix.spec.formula import parse_formula
    from jaxmix.core.lmm import objective
    if a.patch_small_trsm:
        patch_small_trsm()
    log("import jax+jaxmix", seconds=time.perf_counter() - t, jax=jax.__version__,
        patched_small_trsm=a.patch_small_trsm,
        cache=jax.config.jax_compilation_cache_dir)

    if a.sleepstudy:
        from data import SLEEP_FORMULA as formula
        df = jaxmix.datasets.sleepstudy()
    else:
        from data import FORMULA as formula
        from data import simulate
        df = pd.read_csv(a.csv) if a.csv else simulate(a.students, a.lecturers)
    log("data", rows=len(df))

    t = time.perf_counter()
    parsed = parse_formula(formula)
    design = build_design(parsed, df)
    log("build_design (formulaic + grouping factors)", seconds=time.perf_counter() - t,
        terms=[(tm.group, tm.nlevels, tm.q) for tm in design.terms])

    dt = jnp.float64
    terms = design.terms
    T = np.column_stack([design.X, design.y - design.offset])
    t = time.perf_counter()
    layout, idx_np = build_structure([tm.codes for tm in terms], [tm.nlevels for tm in terms],
                                     [tm.q for tm in terms], T.shape[1])
    log("build_structure (numpy)", seconds=time.perf_counter() - t, m_R=layout.m_R, l1=layout.l1,
        n_entries=layout.n_entries, n_pairs=list(layout.n_pairs), len_pa=int(len(idx_np.pa)),
        rpos_shape=list(idx_np.rpos.shape))

    t = time.perf_counter()
    layout, idx, xp = jm.lmm_arrays(design, dt)
    jax.block_until_ready(xp)
    log("lmm_arrays #1 (structure + cross-products, incl. compile)", seconds=time.perf_counter() - t)
    t = time.perf_counter()
    layout, idx, xp = jm.lmm_arrays(design, dt)
    jax.block_until_ready(xp)
    log("lmm_arrays #2 (warm)", seconds=time.perf_counter() - t)

    p = design.X.shape[1]
    n = design.nobs
    reml = a.method.upper() == "REML"
    tl = theta_layout(layout.q)
    theta0 = jnp.asarray(tl.init(), dt)
    ldW = 0.0
    obj = jax.jit(lambda th: objective(th, xp, idx, layout, tl, jnp.asarray(n, dt), p, ldW, reml))
    vg = jax.jit(jax.value_and_grad(lambda th: objective(th, xp, idx, layout, tl, jnp.asarray(n, dt), p,
                                                         ldW, reml)))
    t = time.perf_counter()
    v = obj(theta0).block_until_ready()
    log("objective: compile + 1 eval", seconds=time.perf_counter() - t, value=float(v))
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        obj(theta0 * 1.01).block_until_ready()
        ts.append(time.perf_counter() - t)
    log("objective: 1 eval (min of 3)", seconds=min(ts))
    t = time.perf_counter()
    jax.block_until_ready(vg(theta0))
    log("value_and_grad: compile + 1 eval", seconds=time.perf_counter() - t)
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(vg(theta0 * 1.01))
        ts.append(time.perf_counter() - t)
    log("value_and_grad: 1 eval (min of 3)", seconds=min(ts))
    if a.pieces:
        pieces(xp, idx, layout, tl, theta0 * 1.01, log)
    if a.skip_fit:
        return

    # the host optimiser's fit of the cross-products (jaxmix.fitting.lmm.fit_lmm_arrays)
    from jaxmix.fitting.lmm import fit_lmm_arrays

    terms = design.terms
    t = time.perf_counter()
    fitted = fit_lmm_arrays([x.codes for x in terms], [x.nlevels for x in terms], [x.Z for x in terms], design.X,
                            design.y - design.offset, design.weights, reml, dt)
    log("fit_lmm_arrays: compile + optimise + solve", seconds=time.perf_counter() - t,
        compile_seconds=fitted.compile_seconds, iterations=fitted.opt.n_iter, evaluations=fitted.opt.n_eval,
        status=fitted.opt.status, objective=fitted.opt.fun, theta=fitted.theta.tolist())
    t = time.perf_counter()
    r = jaxmix.fit(formula, df, method=a.method)
    log("jaxmix.fit end to end (second fit in process)", seconds=time.perf_counter() - t,
        fit_seconds=r.optim.fit_seconds, compile_seconds=r.optim.compile_seconds)


if __name__ == "__main__":
    main()
