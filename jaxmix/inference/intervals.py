"""Confidence intervals for linear mixed models: likelihood profiles (lme4's), Wald, bootstrap; ML refits.

lme4's parameters ψ: per random-effect term, in θ's order, the SD of each column (θ's diagonal
positions) and the correlation of each pair (its off-diagonal positions) — ``.sig01, .sig02, …`` —
then ``.sigma`` and the fixed effects.  The profile of ψ_i is

    ζ(v) = sign(v − ψ̂_i) √(d(v) − d(ψ̂)),   d(v) = min over the other parameters of the ML deviance at ψ_i = v,

and the profile interval at ``level`` is where ζ = ∓z_{(1+level)/2} (lme4's ``confint.merMod``).  As in
lme4, REML fits are profiled on the ML deviance (refitted by ML first).  Here d(v) is minimised by
Newton's method on the exact gradient and Hessian (L-BFGS-B when a bound is active) and the crossing
is found by root finding, not read off an interpolating spline as lme4 does: the endpoints agree with
lme4's to about 1e-4 relative (lme4's spline interpolation error).

For a fixed effect the profile needs no inner optimisation over β or σ: with β_j = v fixed,
min over the other β of r²(θ, β) = r²(θ) + (v − β̂_j(θ))² / [(L_X L_X′)⁻¹]_jj and σ² = r²/n, leaving θ.
"""
from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.scipy.linalg import solve_triangular

from ..core.blocked import factorize, logdets
from ..spec.covariance import ThetaLayout, lambdas, theta_layout
from ..errors import JaxmixError
from .wald import (cache_get, cache_put, covbeta, is_lmm, lmm_program, lmm_state, satterthwaite_parts,
                   varpar_deviance)
from ..core.lmm import objective, solve, solve_factor
from ..progress import progress_bar
from ..results.mixed import extension, register_extension
from ..dists import norm_ppf

__all__ = ["confint", "ml_refit", "profile_names"]


# ---------------------------------------------------------------------------------------------
# the ML refit of a REML fit
def _vg_program(theta, xp, idx, n, ldW, *, layout, tl, p, reml):
    return jax.value_and_grad(objective)(theta, xp, idx, layout, tl, n, p, ldW, reml)


def _r2_beta(theta, xp, idx, *, layout, tl, p):
    sol = solve(theta, xp, idx, layout, tl, p)
    return sol.r2, sol.beta


def _covbeta(vp, xp, idx, *, layout, tl, p):
    return covbeta(vp, xp, idx, layout, tl, p)


_vg_jit = jax.jit(_vg_program, static_argnames=("layout", "tl", "p", "reml"))
_r2_beta_jit = jax.jit(_r2_beta, static_argnames=("layout", "tl", "p"))
_covbeta_jit = jax.jit(_covbeta, static_argnames=("layout", "tl", "p"))


def ml_refit(res) -> dict:
    """The ML fit of an LMM (the fit itself when it is ML): θ, σ, β, deviance −2 log L, logLik.

    A REML fit is re-optimised from its θ on the profiled ML deviance (L-BFGS-B, θ's diagonal ≥ 0).
    """
    if res.method == "ML":
        return {"theta": np.asarray(res.theta), "sigma": res.sigma, "beta": np.asarray(res.beta),
                "deviance": res.objective, "loglik": res.loglik, "refitted": False}
    got = cache_get(res, "_inf_ml")
    if got is not None:
        return got
    m = lmm_state(res)
    vg = lmm_program(m, _vg_jit, (np.asarray(res.theta, float), m.xp, m.idx, m.n, m.ldW), reml=False)

    def fg(th):
        v, g = vg(np.asarray(th, dtype=float), m.xp, m.idx, m.n, m.ldW)
        return float(v), np.asarray(g, dtype=float)

    bounds = [(0.0, None) if dg else (None, None) for dg in m.tl.is_diagonal()]
    from scipy import optimize  # on use: 0.29 s a fit does not need
    opt = optimize.minimize(fg, np.asarray(res.theta, float), jac=True, method="L-BFGS-B", bounds=bounds,
                            options=dict(ftol=1e-15, gtol=1e-9, maxiter=2000))
    th = opt.x
    th[m.tl.is_diagonal() & (np.abs(th) < 1e-10)] = 0.0
    r2, beta = lmm_program(m, _r2_beta_jit, (th, m.xp, m.idx))(th, m.xp, m.idx)
    dev = fg(th)[0]
    got = {"theta": th, "sigma": float(np.sqrt(float(r2) / m.n)), "beta": np.asarray(beta, dtype=float),
           "deviance": dev, "loglik": -dev / 2, "refitted": True}
    return cache_put(res, "_inf_ml", got)


# ---------------------------------------------------------------------------------------------
# lme4's parameter scale
def profile_names(res) -> list[str]:
    """``.sig01 …`` (θ's order), ``.sigma``, then the fixed effects."""
    tl = theta_layout([t.q for t in res.design.terms])
    return [f".sig{i + 1:02d}" for i in range(tl.size)] + [".sigma"] + list(res.x_names)


def _sig_theta(psi, tl: ThetaLayout):
    """ψ (SDs/correlations per term, then σ) -> θ: Λ = diag(sd) chol(R) / σ."""
    from .glmm_profile import psi_to_theta

    return psi_to_theta(psi[:-1], tl) / psi[-1]


def _theta_sig(vp, tl: ThetaLayout):
    """(θ, σ) -> ψ (differentiable; a correlation with a zero SD is 0)."""
    theta, sigma = vp[:-1], vp[-1]
    out = []
    for lam, r, c in zip(lambdas(theta, tl), tl.rows, tl.cols):
        om = sigma**2 * lam @ lam.T
        sd = jnp.sqrt(jnp.diagonal(om))
        for i, j in zip(r, c):
            den = sd[i] * sd[j]
            out.append(sd[i] if i == j else jnp.where(den > 0, om[i, j] / jnp.where(den > 0, den, 1.0), 0.0))
    out.append(sigma)
    return jnp.stack(out)


#: ψ and its Jacobian in one small compiled program per θ layout (not jacfwd op by op)
_theta_sig_jac = jax.jit(lambda vp, tl: (_theta_sig(vp, tl), jax.jacfwd(_theta_sig)(vp, tl)), static_argnums=1)


def _dev_sig(psi, xp, idx, n, ldW, layout, tl, p):
    """ML deviance at ψ (β profiled out)."""
    return varpar_deviance(jnp.append(_sig_theta(psi, tl), psi[-1]), xp, idx, n, ldW, layout, tl, p, 0.0)


def _dev_beta(theta, j, bj, xp, idx, n, ldW, layout, tl, p):
    """ML deviance at θ with β_j = bj, the other β and σ profiled out."""
    f = factorize(lambdas(theta, tl), xp, idx, layout)
    sol = solve_factor(f, idx, layout, p)
    Li = solve_triangular(sol.RX, jnp.eye(p, dtype=theta.dtype), lower=True)
    r2 = sol.r2 + (bj - sol.beta[j]) ** 2 / jnp.sum(Li[:, j] ** 2)
    return logdets(f, layout, p)[0] - ldW + n * (1.0 + jnp.log(2.0 * jnp.pi * r2 / n))


def _vgh(f):
    def prog(x, *args, layout, tl, p):
        fx = lambda z: f(z, *args, layout, tl, p)  # noqa: E731
        v, g = jax.value_and_grad(fx)(x)
        return v, g, jax.hessian(fx)(x)

    return prog


_sig_vgh = jax.jit(_vgh(_dev_sig), static_argnames=("layout", "tl", "p"))
_beta_vgh = jax.jit(_vgh(_dev_beta), static_argnames=("layout", "tl", "p"))


def _newton(vgh, x0, free, lo, hi, maxit: int = 40):
    """Minimise over the ``free`` coordinates by Newton with backtracking; None if it cannot (bounds, H ≤ 0)."""
    x = x0.copy()
    f, g, H = vgh(x)
    for _ in range(maxit):
        gf, Hf = g[free], H[np.ix_(free, free)]
        try:
            c = np.linalg.cholesky(Hf)
        except np.linalg.LinAlgError:
            return None
        step = -np.linalg.solve(c.T, np.linalg.solve(c, gf))
        dec = -float(gf @ step)
        if dec < 1e-11:
            return f, x
        t = 1.0
        while t > 1e-6:
            xn = x.copy()
            xn[free] += t * step
            if np.all(xn >= lo) and np.all(xn <= hi):
                fn, gn, Hn = vgh(xn)
                if np.isfinite(fn) and fn <= f - 1e-4 * t * dec:
                    break
            t /= 2
        else:
            return None
        x, f, g, H = xn, fn, gn, Hn
    return None


class _Profiler:
    """ζ for each of lme4's parameters, by constrained re-optimisation of the ML deviance."""

    def __init__(self, res):
        self.m = m = lmm_state(res)
        self.ml = ml = ml_refit(res)
        self.tl = m.tl
        vp = np.append(ml["theta"], ml["sigma"])
        self.psi = np.asarray(_theta_sig_jac(jnp.asarray(vp), m.tl)[0], dtype=float)
        self._sig_exe = lmm_program(m, _sig_vgh, (self.psi, m.xp, m.idx, m.n, m.ldW))
        self._beta_exe = lmm_program(m, _beta_vgh, (vp[:-1], 0, 0.0, m.xp, m.idx, m.n, m.ldW))
        self.k = self.psi.size
        isdiag = np.append(m.tl.is_diagonal(), True)
        self.is_cor = ~isdiag
        self.lo = np.where(isdiag, 0.0, -1.0 + 1e-8)
        self.lo[-1] = 1e-8 * ml["sigma"]
        self.hi = np.where(isdiag, np.inf, 1.0 - 1e-8)
        self.d0 = ml["deviance"]
        self.d0 = min(self.d0, self._min_sig(self.psi.copy(), None)[0])
        _, _, H = self._sig(self.psi)
        try:
            cov = 2.0 * np.linalg.inv(H)
            self.se_sig = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
        except np.linalg.LinAlgError:
            self.se_sig = np.full(self.k, np.nan)
        self.beta = ml["beta"]
        Vb = np.asarray(lmm_program(m, _covbeta_jit, (vp, m.xp, m.idx))(vp, m.xp, m.idx))
        self.se_beta = np.sqrt(np.diag(Vb))

    def _sig(self, x):
        m = self.m
        v, g, H = self._sig_exe(np.asarray(x, dtype=float), m.xp, m.idx, m.n, m.ldW)
        return float(v), np.asarray(g, dtype=float), np.asarray(H, dtype=float)

    def _min_sig(self, x0, fix):
        free = np.ones(self.k, bool)
        if fix is not None:
            x0[fix[0]] = fix[1]
            free[fix[0]] = False
        x0 = np.clip(x0, self.lo, self.hi)
        # an SD exactly 0 is a stationary point of the (even) deviance: start the free ones off it
        nudge = free & ~self.is_cor & (x0 < 1e-3 * self.ml["sigma"])
        nudge[-1] = False
        x0[nudge] = 0.05 * self.ml["sigma"]
        got = _newton(self._sig, x0, free, self.lo, self.hi)
        if got is not None:
            return got
        sc = np.where(self.is_cor, 1.0, np.maximum(np.abs(self.psi), 1e-3 * self.ml["sigma"]))
        bounds = [(lo / s, None if not np.isfinite(hi) else hi / s) for lo, hi, s in zip(self.lo, self.hi, sc)]
        if fix is not None:
            bounds[fix[0]] = (fix[1] / sc[fix[0]],) * 2

        def fg(u):
            v, g, _ = self._sig(u * sc)
            return v, g * sc

        from scipy import optimize  # on use: 0.29 s a fit does not need
        opt = optimize.minimize(fg, x0 / sc, jac=True, method="L-BFGS-B", bounds=bounds,
                                options=dict(ftol=1e-15, gtol=1e-10, maxiter=3000))
        return opt.fun, opt.x * sc

    def _min_beta(self, th0, j, v):
        m = self.m

        def vgh(th):
            f, g, H = self._beta_exe(np.asarray(th, dtype=float), j, float(v), m.xp, m.idx, m.n, m.ldW)
            return float(f), np.asarray(g, dtype=float), np.asarray(H, dtype=float)

        th0 = np.where(self.tl.is_diagonal() & (np.abs(th0) < 1e-3), 0.05, th0)  # off the stationary θ = 0
        inf = np.full(th0.size, np.inf)
        got = _newton(vgh, th0, np.ones(th0.size, bool), -inf, inf)
        if got is not None:
            return got
        from scipy import optimize  # on use: 0.29 s a fit does not need
        opt = optimize.minimize(lambda th: vgh(th)[:2], th0, jac=True, method="L-BFGS-B",
                                options=dict(ftol=1e-15, gtol=1e-10, maxiter=3000))
        return opt.fun, opt.x

    def interval(self, i: int, z: float) -> tuple[float, float]:
        """The two crossings ζ = ∓z for parameter i (ψ's index, then k + j for β_j)."""
        if i < self.k:
            est, se, start = self.psi[i], self.se_sig[i], self.psi
            bounds = (self.lo[i], self.hi[i])

            def dev(v, x):
                return self._min_sig(x.copy(), (i, v))
        else:
            j = i - self.k
            est, se, start = self.beta[j], self.se_beta[j], np.asarray(self.ml["theta"], float)
            bounds = (-np.inf, np.inf)

            def dev(v, x):
                return self._min_beta(x.copy(), j, v)

        if not (np.isfinite(se) and se > 0):
            se = 0.1 * max(abs(est), self.ml["sigma"])
        return tuple(self._crossing(dev, est, se, start, sgn, z, bounds[0] if sgn < 0 else bounds[1],
                                    i < self.k and self.is_cor[i]) for sgn in (-1.0, 1.0))

    def _crossing(self, dev, est, se, start, sgn, z, bound, is_cor):
        state = {"x": start.copy()}

        def g(v):  # sgn·ζ(v) − z
            d, state["x"] = dev(v, state["x"])
            return np.sqrt(max(d - self.d0, 0.0)) - z

        a, ga = est, -z
        b = est + sgn * z * se
        for _ in range(60):
            at_bound = np.isfinite(bound) and sgn * (b - bound) >= 0
            if at_bound:
                b = bound
            gb = g(b)
            if gb >= 0:
                break
            if at_bound:  # the profile never reaches z: the interval extends to the bound
                return float(np.sign(bound)) if is_cor else float(bound)
            # extrapolate linearly in ζ to the crossing (overshooting a little), within [0.25, 4] x the step
            za, zb, width = ga + z, gb + z, abs(b - a)
            step = 1.1 * width * (z - zb) / (zb - za) if zb > za + 1e-12 else 4 * width
            a, ga, b = b, gb, b + sgn * float(np.clip(step, 0.25 * width, 4 * width))
        else:
            return np.nan
        # Illinois regula falsi on [a, b] (g(a) < 0 <= g(b)), endpoints cached
        side = 0
        for _ in range(100):
            c = b - gb * (b - a) / (gb - ga)
            gc = g(c)
            if abs(gc) < 1e-9 or abs(b - a) < 1e-12 * max(1.0, abs(est)):
                return float(c)
            if gc < 0:
                a, ga = c, gc
                if side == -1:
                    gb /= 2
                side = -1
            else:
                b, gb = c, gc
                if side == 1:
                    ga /= 2
                side = 1
        return float(c)


# ---------------------------------------------------------------------------------------------
def confint(res, method: str = "profile", level: float = 0.95, parm=None, nsim: int = 1000,
            seed: int = 0, progress: bool | None = None) -> pd.DataFrame:
    """Confidence intervals for lme4's parameters (``.sig01 …`` SDs/correlations, ``.sigma``, β).

    * ``"profile"``: the ζ = ∓z_{(1+level)/2} crossings of the ML profile (module docstring).  An SD whose
      interval reaches 0 gets 0; a correlation whose interval reaches ±1 gets ±1.
    * ``"wald"``: β̂ ± z se for β (lme4's Wald); for the covariance parameters ψ̂ ± z se(ψ̂) with
      Cov(ψ̂) = J (2H⁺) J′, H the Hessian of the fit's criterion in (θ, σ) and J = ∂ψ/∂(θ, σ) (lme4 gives
      NA there); SDs are truncated at 0 and correlations at ±1.
    * ``"boot"``: percentile intervals of ``nsim`` parametric-bootstrap refits
      (:func:`jaxmix.api.bootstrap.bootstrap`).

    Args:
      parm: None (all), ``"theta_"`` / ``"beta_"`` (lme4's groups) or a list of names.
      progress: a progress bar over the profiled parameters (and the bootstrap's chunks) on stderr;
        default: when stderr is a terminal.

    Returns:
      DataFrame indexed by parameter with the lower and upper limits (columns ``"2.5 %"``, ``"97.5 %"``).
    """
    if not 0 < level < 1:
        raise JaxmixError(f"level must be between 0 and 1, got {level}")
    method = str(method).lower()
    if method not in ("profile", "wald", "boot"):
        raise JaxmixError(f"method must be 'profile', 'wald' or 'boot', got {method!r}")

    z = norm_ppf(0.5 + level / 2)
    cols = [f"{100 * (1 - level) / 2:g} %", f"{100 * (1 + level) / 2:g} %"]
    from ..spec.structinfo import refuse_structured

    refuse_structured(res, f"confint(method={method!r})",
                      "Wald intervals of β are fixef ± z·se, covparm_table() has the covariance parameters' SEs, "
                      "and jaxmix.bootstrap(res).ci() gives percentile intervals of both")
    if method == "boot":
        return _select(_boot(res, level, nsim, seed, cols), parm)
    if not is_lmm(res):
        if method == "wald" or not res.is_mixed:
            se = np.sqrt(np.diag(res.vcov_beta))
            out = pd.DataFrame({cols[0]: res.beta - z * se, cols[1]: res.beta + z * se}, index=list(res.x_names))
            return _select(out, parm)
        return _select(_glmm_profile(res, z, cols, parm, progress), parm)
    names = profile_names(res)
    if method == "wald":
        out = _wald(res, z, names, cols)
        return _select(out, parm)
    return _profile_table(_Profiler(res), names, parm, z, cols, progress,
                          "profile of the ML deviance (REML fits refitted by ML first), as lme4")


def _profile_table(prof, names, parm, z, cols, progress, note: str) -> pd.DataFrame:
    """One row (lower, upper) per parameter in ``parm`` from the profiler's ``interval``."""
    want = _select(pd.DataFrame(index=names), parm).index
    show = sys.stderr.isatty() if progress is None else bool(progress)
    rows = {}
    with progress_bar(len(want), "profile", quiet=not show, unit="parameter") as bar:
        for nm in want:
            rows[nm] = prof.interval(names.index(nm), z)
            bar.update(1)
    out = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    out.attrs["note"] = note
    return out


def _glmm_profile(res, z, cols, parm, progress) -> pd.DataFrame:
    """lme4's GLMM profile intervals (:mod:`jaxmix.inference.glmm_profile`)."""
    from .glmm_profile import GlmmProfiler, glmm_profile_names

    prof = cache_get(res, "_glmm_profiler") or cache_put(res, "_glmm_profiler", GlmmProfiler(res))  # compiled once
    return _profile_table(prof, glmm_profile_names(res), parm, z, cols, progress,
                          "profile of the GLMM's Laplace/AGQ deviance, as lme4")


def _wald(res, z, names, cols) -> pd.DataFrame:
    tl = theta_layout([t.q for t in res.design.terms])
    _, A, _ = satterthwaite_parts(res)
    psi, J = _theta_sig_jac(jnp.asarray(np.append(res.theta, res.sigma)), tl)
    psi, J = np.asarray(psi, dtype=float), np.asarray(J, dtype=float)
    se_psi = np.sqrt(np.maximum(np.diag(J @ A @ J.T), 0.0))
    isdiag = np.append(tl.is_diagonal(), True)
    lo = np.maximum(psi - z * se_psi, np.where(isdiag, 0.0, -1.0))
    hi = np.where(isdiag, psi + z * se_psi, np.minimum(psi + z * se_psi, 1.0))
    se = np.sqrt(np.diag(res.vcov_beta))
    return pd.DataFrame({cols[0]: np.append(lo, res.beta - z * se), cols[1]: np.append(hi, res.beta + z * se)},
                        index=names)


def _boot(res, level, nsim, seed, cols) -> pd.DataFrame:
    """Percentile intervals from :func:`jaxmix.api.bootstrap.bootstrap`, renamed to lme4's parameters."""
    try:
        bootstrap = extension("bootstrap")
    except ImportError:
        bootstrap = None
    if bootstrap is None:
        raise JaxmixError("bootstrap intervals need the parametric bootstrap engine (jaxmix.bootstrap), which comes "
                          "with the multi-outcome (sweep) work; use method='profile' or 'wald'")
    ci = bootstrap(res, n=nsim, seed=seed).ci(level)
    p = len(res.x_names)
    lo, hi = ci["lower"].to_numpy(), ci["upper"].to_numpy()
    if not res.is_mixed:
        return pd.DataFrame({cols[0]: lo[:p], cols[1]: hi[:p]}, index=list(res.x_names))
    # the bootstrap lists β, then the varcorr rows (SDs, correlations, σ); lme4's order is θ's
    tl = theta_layout([t.q for t in res.design.terms])
    order = []
    for k, (qk, s) in enumerate(zip(tl.q, tl.starts)):
        pos = {(i, j): s + a for a, (i, j) in enumerate(zip(tl.rows[k], tl.cols[k]))}
        order += [pos[(i, i)] for i in range(qk)]
        order += [pos[(i, j)] for j in range(qk) for i in range(j + 1, qk)]
    if res.family == "gaussian":
        order.append(tl.size)
    names = profile_names(res)
    sig_names = names[: tl.size + 1] if res.family == "gaussian" else names[: tl.size]
    vlo, vhi = np.empty(len(order)), np.empty(len(order))
    vlo[order], vhi[order] = lo[p:], hi[p:]
    return pd.DataFrame({cols[0]: np.append(vlo, lo[:p]), cols[1]: np.append(vhi, hi[:p])},
                        index=sig_names + list(res.x_names))


def _select(df: pd.DataFrame, parm) -> pd.DataFrame:
    if parm is None:
        return df
    if isinstance(parm, str):
        if parm in ("theta_", "theta"):
            return df[[nm.startswith(".sig") for nm in df.index]]
        if parm in ("beta_", "beta"):
            return df[[not nm.startswith(".sig") for nm in df.index]]
        parm = [parm]
    missing = [p for p in parm if p not in df.index]
    if missing:
        raise JaxmixError(f"unknown parameter(s) {missing}; the parameters are {list(df.index)}")
    return df.loc[list(parm)]


# the results' methods of these names (jaxmix.results.mixed.register_extension)
register_extension("confint", confint)
