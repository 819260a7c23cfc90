"""Gaussian fits with structured covariances: random-term structures (ψ -> Λ) and residual structures (Σ).

The criterion is :func:`jaxmix.core.lmm.objective` unchanged, evaluated at

    θ = g(ψ)                                   (:func:`jaxmix.spec.re_structure.theta_from_psi`)
    [Z X y]′W[Z X y] = Σ_k coef_k(φ) P_k        (:mod:`jaxmix.spec.residual`, pieces from :mod:`jaxmix.core.pairs`)
    log|W| = Σ log wᵢ − log|Σ(φ)|

so its cost per evaluation does not depend on n.  σ² is profiled out as for lme4's criterion; β̂, the
modes and vcov(β̂) = σ²(L_X L_X′)⁻¹ come from :func:`jaxmix.core.lmm.solve` at (θ̂, φ̂) (conditional on the
covariance parameters, as nlme and lme4 report them).  A model without random terms (nlme's ``gls``)
gets one placeholder term with Λ = 0, whose block Λ′Z′WZΛ + I = I adds nothing.

Standard errors of the covariance parameters: Cov(ϑ̂) = 2 H⁺, H the exact Hessian of the deviance in
ϑ = (ψ, φ, σ) with σ not profiled (ML: log|L_Z|² − log|W| + n log 2πσ² + r²/σ²; REML adds log|L_X|²
and uses n − p), mapped to each structure's own parameters by the delta method.  The same Cov(ϑ̂) and
the Jacobian of Φ(ϑ) = σ²(L_X L_X′)⁻¹ give Satterthwaite's df, ν = 2(l′Φl)²/(g′ Cov(ϑ̂) g) with
g = ∂(l′Φl)/∂ϑ (lmerTest's, in the structure's parameters; invariant to how ϑ is parametrised).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
import numpy as np

from ..core.blocked import factorize, logdets
from ..core.newton import FLOAT64, HostResult, minimize_bounded
from ..core.pairs import pair_cross_products, pair_maps, sum_cross_products
from ..core.structure import padded_system
from ..spec.covariance import lambdas, lambdas_np, theta_layout
from ..core.crossprod import CrossProducts
from ..errors import JaxmixError
from ..core.lmm import cond_var, objective, solve
from ..spec.re_structure import natural, natural_names, psi_flips, psi_init, psi_lower, psi_scale, struct_layout, theta_from_psi
from ..spec.residual import coefficients, log_det_sigma, n_phi, phi_init, phi_names, phi_natural, residual_pieces
from .cache import release_executables_if_needed, signature
from .lmm import FAST_COMPILE, column_rms


#: compiled programs of structured fits, keyed by the program, the model class (structures, layout,
#: sizes, the residual pieces' static description) and the arguments' shapes: data sets of one class
#: (the outcomes of a sweep, the replicates of a bootstrap) compile each program once
_PROGRAMS: dict = {}
_MAX_PROGRAMS = 64  # each XLA:CPU executable holds memory mappings (:mod:`jaxmix.fitting.cache`)


def _run(name: str, key, make, *args):
    """``make()(*args)`` through one compiled program, cached under (name, key, the arguments' shapes
    and tree structure), with the fast-compile XLA options of small classes
    (:data:`jaxmix.fitting.lmm.FAST_COMPILE`): these programs are small and run a few times.
    ``make`` must close over nothing but what ``key`` describes."""
    full = (name, key, signature(args))
    exe = _PROGRAMS.get(full)
    if exe is None:
        if release_executables_if_needed():  # the process holds too many mappings: start afresh
            _PROGRAMS.clear()
        exe = jax.jit(make()).lower(*args).compile(compiler_options=FAST_COMPILE)
        if len(_PROGRAMS) >= _MAX_PROGRAMS:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        _PROGRAMS[full] = exe
    return exe, exe(*args)


def _pieces_key(rp) -> tuple:
    """What the compiled programs use of the residual pieces (:func:`jaxmix.spec.residual.coefficients`,
    ``log_det_sigma``, ``phi_natural``): the pieces' kinds, gaps and strata, the rows per stratum and the
    pairs per gap / groups per size."""
    return (tuple(map(tuple, rp.keys)), tuple(map(tuple, rp.sum_keys)), rp.n_strata, rp.cor_kind, rp.max_size,
            tuple(float(v) for v in np.asarray(rp.stratum_counts).ravel()),
            tuple(sorted((float(k), float(v)) for k, v in rp.gap_counts.items())))

__all__ = ["StructuredFit", "fit_structured_arrays"]


def _crosses_levels(code1, rp) -> bool:
    """Whether some correlated rows lie in different levels of term 1."""
    if any(np.any(code1[a] != code1[b]) for a, b in zip(rp.ia, rp.ib)):
        return True
    g = rp.group_codes
    lo = np.full(int(g.max()) + 1, np.iinfo(np.int64).max)
    hi = np.full(int(g.max()) + 1, -1)
    np.minimum.at(lo, g, code1)
    np.maximum.at(hi, g, code1)
    return bool(np.any(lo[g] != hi[g]))


class StructuredFit(NamedTuple):
    theta: np.ndarray  # lme4's θ = g(ψ̂) (empty without random terms)
    psi: np.ndarray
    phi: np.ndarray
    beta: np.ndarray
    sigma: float
    vcov: np.ndarray
    objective: float
    b: list
    condvar: Callable | None
    opt: HostResult
    n_cov_params: int  # ψ and φ (σ not counted)
    satterthwaite: tuple  # (H, A = 2H⁺, ∂Φ/∂ϑ) in ϑ = (ψ, φ, σ), as jaxmix.inference.wald.satterthwaite_parts
    table: list  # rows (group, var1, var2, kind, estimate, se)
    vcov_table: np.ndarray  # covariance of the table's estimates
    strata_labels: list
    sd_by_stratum: np.ndarray
    rho: float | None
    row_ratio: np.ndarray  # (n,) δ of each row's stratum (1 without variance=)
    cor_kind: str | None  # "ar1", "cs" or None
    cor_groups: np.ndarray | None  # (n,) group code of each row for the correlation
    cor_times: np.ndarray | None  # (n,) AR(1) integer time of each row
    timings: dict  # seconds: pieces (numpy, once), compile (criterion), optimise (all evaluations)


def fit_structured_arrays(codes, nlev, Zs, kinds, X, y, w, frame, variance, correlation, reml: bool,
                          groups=(), columns=(), gtol: float = 1e-4, max_iter: int = 500) -> StructuredFit:
    """Fit a structured Gaussian model.

    Args:
      codes, nlev, Zs, kinds: per random term (lme4 order) the level codes, levels, per-row columns and
        structure (``us``, ``diag``, ``cs``, ``ar1``); empty lists for a model without random terms.
      groups, columns: per term, the group's printed name and the column names (for the table).
      X, y, w: fixed-effect matrix, response (offset removed), prior weights.
      frame: the model's rows of the data (for the residual structures' columns).
      variance, correlation: parsed :class:`jaxmix.spec.residual.ResidualSpec` or None.
    """
    dt = jnp.float64
    n, p = X.shape
    import time

    t0 = time.perf_counter()
    rp = residual_pieces(frame, w, variance, correlation)
    has_re = len(Zs) > 0
    if not has_re:
        g = rp.group_codes if rp.group_codes is not None else np.zeros(n, dtype=np.int64)
        codes, nlev, Zs, kinds = [g], [int(g.max()) + 1], [np.zeros((n, 1))], ["none"]
    q = [int(Z.shape[1]) for Z in Zs]
    sl = struct_layout(kinds, q)
    tl = theta_layout(tuple(q))
    T = np.column_stack([X, y])
    layout, idx_np, _ = padded_system(codes, nlev, Zs, T, w)
    maps = pair_maps(codes, nlev[0], Zs, layout)
    if correlation is not None and has_re and _crosses_levels(maps.code1, rp):
        raise JaxmixError(f"correlation={correlation.text!r}: rows correlated within a group of "
                          f"{':'.join(correlation.factors)!r} must share their level of {groups[0]!r} (the random "
                          "term with the most levels); group the correlation by that factor or one nested in it")
    pieces = [pair_cross_products(maps, T, a, b, c, layout) for a, b, c in zip(rp.ia, rp.ib, rp.wfix)]
    pieces += [sum_cross_products(maps, T, *sm, layout) for sm in rp.sums]
    stacks = CrossProducts(*(jnp.asarray(np.stack([getattr(pc, f) for pc in pieces]), dt)
                             for f in CrossProducts._fields))
    idx = type(idx_np)(*(jnp.asarray(a) for a in idx_np))
    c = psi_scale([column_rms(Z) for Z in Zs], sl)
    npsi, nphi = sl.size, n_phi(rp)
    sumlogw = float(np.sum(np.log(w)))

    dev_args = (stacks, idx, jnp.asarray(sumlogw, dt))
    key = (sl, tl, layout, n, p, bool(reml), _pieces_key(rp))

    def combine(phi, stk):
        coef = coefficients(phi, rp)
        return CrossProducts(*(jnp.tensordot(coef, s_, axes=1) for s_ in stk))

    def make_vg():
        def crit(x, c_, stk, ix, slw):
            psi, phi = x[:npsi] * c_, x[npsi:]
            ldW = slw - log_det_sigma(phi, rp)
            return objective(theta_from_psi(psi, sl), combine(phi, stk), ix, layout, tl, n, p, ldW, reml)

        return jax.value_and_grad(crit)

    x0 = np.concatenate([psi_init(sl), phi_init(rp)])  # in the scaled ψ̃: Λ̃ = I, τ̃ = 1, δ = 1, ρ = 0
    t1 = time.perf_counter()
    cj = jnp.asarray(c, dt)
    vg_exe, _ = _run("vg", key, make_vg, jnp.asarray(x0, dt), cj, *dev_args)
    t2 = time.perf_counter()

    def vg(x):
        f, gr = vg_exe(jnp.asarray(x, dt), cj, *dev_args)
        return np.asarray(f, dtype=float), np.asarray(gr, dtype=float)

    lower = np.concatenate([psi_lower(sl), np.full(nphi, -np.inf)])
    opt = minimize_bounded(vg, x0, lower, gtol=gtol, max_iter=max_iter, prec=FLOAT64, flips=psi_flips(sl))
    timings = {"pieces": t1 - t0, "compile": t2 - t1, "optimise": time.perf_counter() - t2,
               "evaluations": int(opt.n_eval), "n_pieces": len(pieces)}
    psi = np.asarray(opt.x[:npsi] * c, dtype=float)
    phi = np.asarray(opt.x[npsi:], dtype=float)
    _, (theta, xp_hat) = _run("combine", key, lambda: lambda ps, ph, stk: (theta_from_psi(ps, sl), combine(ph, stk)),
                              jnp.asarray(psi, dt), jnp.asarray(phi, dt), stacks)
    theta = np.asarray(theta, dtype=float)
    _, sol = _run("solve", key, lambda: lambda th, xp_, ix: solve(th, xp_, ix, layout, tl, p), jnp.asarray(theta, dt),
                  xp_hat, idx)
    denom = n - p if reml else n
    r2 = float(sol.r2)
    sigma = float(np.sqrt(r2 / denom))
    RX = np.asarray(sol.RX, dtype=float)
    RXinv = np.linalg.inv(RX) if p else np.zeros((0, 0))
    vcov = sigma**2 * RXinv.T @ RXinv

    b, condvar = [], None
    if has_re:
        beta_u1 = np.asarray(sol.u1, dtype=float)[: nlev[0]]
        uR = np.asarray(sol.uR, dtype=float)
        lams = lambdas_np(theta, tl)
        b = [beta_u1 @ lams[0].T]
        for lam, off, qk, lk in zip(lams[1:], layout.offsets, layout.q[1:], nlev[1:]):
            b.append(uR[off : off + lk * qk].reshape(lk, qk) @ lam.T)
        factor = sol.factor

        def condvar():
            _, cv = _run("condvar", key, lambda: lambda th, fac, ix: cond_var(fac, lambdas(th, tl), ix, layout),
                         jnp.asarray(theta, dt), factor, idx)
            return [sigma**2 * np.asarray(v, dtype=float)[:lk] for v, lk in zip(cv, nlev)]

    # covariance parameters and their SEs (module docstring)
    def make_parts():
        def deviance(v, stk, ix, slw):
            psi_, phi_, s = v[:npsi], v[npsi : npsi + nphi], v[-1]
            f = factorize(lambdas(theta_from_psi(psi_, sl), tl), combine(phi_, stk), ix, layout)
            ldL2, ldRX2, rr = logdets(f, layout, p)
            ldW = slw - log_det_sigma(phi_, rp)
            out = ldL2 - ldW + denom * jnp.log(2.0 * jnp.pi * s**2) + rr / s**2
            return out + ldRX2 if reml else out

        def nat(v):
            psi_, phi_, s = v[:npsi], v[npsi : npsi + nphi], v[-1]
            return jnp.concatenate([natural(psi_, s**2, sl), jnp.reshape(s**2, (1,)), phi_natural(phi_, rp)])

        def covbeta(v, stk, ix):
            """Φ(ϑ) = σ² (L_X L_X′)⁻¹, the covariance of β̂ at ϑ = (ψ, φ, σ)."""
            psi_, phi_, s = v[:npsi], v[npsi : npsi + nphi], v[-1]
            f = factorize(lambdas(theta_from_psi(psi_, sl), tl), combine(phi_, stk), ix, layout)
            LX = f.LDD[layout.m_R : layout.m_R + p, layout.m_R : layout.m_R + p]
            Li = solve_triangular(LX, jnp.eye(p, dtype=LX.dtype), lower=True)
            return s**2 * Li.T @ Li

        return lambda v, stk, ix, slw: (jax.hessian(deviance)(v, stk, ix, slw), jax.jacfwd(nat)(v), nat(v),
                                        jax.jacfwd(covbeta)(v, stk, ix))

    v_hat = jnp.asarray(np.concatenate([psi, phi, [sigma]]), dt)
    _, (H, J, est, Jb) = _run("parts", key, make_parts, v_hat, *dev_args)
    H, J, est, Jb = (np.asarray(a, dtype=float) for a in (H, J, est, Jb))
    H = (H + H.T) / 2
    free = np.ones(H.shape[0], bool)
    free[:npsi] = ~((psi == 0) & (psi_lower(sl) == 0))
    C = np.zeros(H.shape)
    if free.any():
        C[np.ix_(free, free)] = 2.0 * np.linalg.pinv(H[np.ix_(free, free)])
    V = J @ C @ J.T
    se = np.sqrt(np.maximum(np.diag(V), 0.0))
    rows = (natural_names(sl, list(groups), [list(cl) for cl in columns]) if has_re else [])
    rows = rows + [("Residual", None, None, "variance")] + phi_names(rp)
    table = [r + (e, s_) for r, e, s_ in zip(rows, est, se)]
    ratios = np.exp(np.concatenate([[0.0], phi[: rp.n_strata - 1]]))
    rho = float(phi_natural(jnp.asarray(phi, dt), rp)[-1]) if rp.cor_kind else None
    return StructuredFit(theta=theta if has_re else np.zeros(0), psi=psi, phi=phi,
                         beta=np.asarray(sol.beta, dtype=float), sigma=sigma, vcov=vcov, objective=float(opt.fun),
                         b=b, condvar=condvar, opt=opt, n_cov_params=npsi + nphi, satterthwaite=(H, C, Jb),
                         table=table, vcov_table=V, strata_labels=list(rp.strata_labels),
                         sd_by_stratum=sigma * ratios, rho=rho,
                         row_ratio=ratios[rp.strata], cor_kind=rp.cor_kind,
                         cor_groups=rp.group_codes, cor_times=rp.times, timings=timings)
