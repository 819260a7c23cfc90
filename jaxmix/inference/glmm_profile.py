"""Likelihood-profile confidence intervals for GLMMs (binomial, Poisson), as lme4's ``confint.merMod``.

Parameters ψ as lme4 names them: per random-effect term, in θ's order, the SD of each column (θ's
diagonal positions; Ω = ΛΛ′ for a GLMM) and the correlation of each pair (its off-diagonal positions)
— ``.sig01, .sig02, …`` — then the fixed effects β.  With d(θ, β) the Laplace (or AGQ, as fitted)
deviance −2 log L and d̂ its minimum, the profile of ψ_i is

    ζ(v) = sign(v − ψ̂_i) √(d_i(v) − d̂),   d_i(v) = min over (ψ_{−i}, β) of d at ψ_i = v,

and the interval at ``level`` is where ζ = ∓z_{(1+level)/2}.  d_i(v) is minimised by L-BFGS-B on the
exact gradient (SDs ≥ 0, |correlations| < 1), warm-started along the profile, and the crossing is found
by root finding (lme4 interpolates a spline through the profile: agreement to about 1e-3).  An SD
whose profile does not reach −z above 0 gets the lower limit 0.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..spec.covariance import ThetaLayout, theta_layout
from ..errors import JaxmixError

__all__ = ["glmm_profile_names", "glmm_deviance", "psi_to_theta", "theta_to_psi", "GlmmProfiler"]


def glmm_profile_names(res) -> list[str]:
    """``.sig01 …`` (θ's order), then the fixed effects (a GLMM has no ``.sigma``)."""
    tl = theta_layout([t.q for t in res.design.terms])
    return [f".sig{i + 1:02d}" for i in range(tl.size)] + list(res.x_names)


def psi_to_theta(psi, tl: ThetaLayout):
    """ψ (SDs and correlations per term) -> θ: Λ_k = diag(sd) chol(R)."""
    out = []
    for qk, r, c, s in zip(tl.q, tl.rows, tl.cols, tl.starts):
        r, c = np.asarray(r), np.asarray(c)
        vals = psi[s : s + len(r)]
        dpos = np.flatnonzero(r == c)
        sd = jnp.zeros(qk, psi.dtype).at[r[dpos]].set(vals[dpos])
        if qk == 1:
            lam = sd[:, None]
        else:
            opos = np.flatnonzero(r != c)
            R = jnp.eye(qk, dtype=psi.dtype).at[r[opos], c[opos]].set(vals[opos]).at[c[opos], r[opos]].set(vals[opos])
            lam = sd[:, None] * jnp.linalg.cholesky(R)
        out.append(lam[r, c])
    return jnp.concatenate(out) if out else jnp.zeros(0, psi.dtype)


def theta_to_psi(theta: np.ndarray, tl: ThetaLayout) -> np.ndarray:
    """θ -> ψ (numpy; a correlation with a zero SD is 0)."""
    from ..spec.covariance import covariances

    out = []
    for om, r, c in zip(covariances(np.asarray(theta, float), tl, 1.0), tl.rows, tl.cols):
        sd = np.sqrt(np.diag(om))
        for i, j in zip(r, c):
            den = sd[i] * sd[j]
            out.append(sd[i] if i == j else (om[i, j] / den if den > 0 else 0.0))
    return np.asarray(out, dtype=float)


def glmm_deviance(res, newton_steps: int = 1):
    """d(θ, β): the fit's Laplace/AGQ deviance as a function of (θ, β) — of (θ, log φ, β) for a family
    with a dispersion φ (:func:`jaxmix.fitting.dispersion.with_dispersion`) —, the θ layout and the
    XLA options to compile it with (the fit's: :func:`jaxmix.fitting.lmm.compile_options`).
    ``newton_steps``: 1 makes the gradient exact, 2 the Hessian (:mod:`jaxmix.core.glmm`)."""
    from ..core.crossprod import terms_structure
    from ..fitting.lmm import compile_options
    from ..spec.families import get_family
    from ..core.glmm import GlmmData, gauss_hermite, laplace_objective
    from ..fitting.dispersion import with_dispersion

    d = res.design
    terms = d.terms
    layout, idx, ZR = terms_structure(terms, d.nobs, 1)
    idx = idx.as_jax()
    ntr = res.extra.get("trials", np.ones(d.nobs))
    gd = GlmmData(*(jnp.asarray(a, jnp.float64) for a in (terms[0].Z, ZR, d.X, d.y, ntr, d.weights, d.offset)))
    tl = theta_layout(layout.q)
    fam = get_family(res.family, res.link)
    nagq = int(res.extra.get("nagq", 1))
    xk = wk = None
    if nagq > 1:
        xk, wk = (jnp.asarray(a) for a in gauss_hermite(nagq))

    def fun(prm):
        prm, dd = with_dispersion(prm, fam, gd, tl.size)
        return laplace_objective(prm, fam, dd, idx, layout, tl, xk, wk, newton_steps=newton_steps)

    return fun, tl, compile_options(layout)


class GlmmProfiler:
    """Profiles of the GLMM deviance in ψ = (SDs/correlations, β) (module docstring)."""

    def __init__(self, res):
        if not res.is_mixed or res.family == "gaussian":
            raise JaxmixError("GLMM profiles need a binomial or Poisson model with random effects")
        dev, tl, options = glmm_deviance(res)
        self.tl = tl
        nt = tl.size

        def f(x):
            return dev(jnp.concatenate([psi_to_theta(x[:nt], tl), x[nt:]]))

        self._vg = jax.jit(jax.value_and_grad(f), compiler_options=options)
        self.nt = nt
        self.x_hat = np.concatenate([theta_to_psi(res.theta, tl), np.asarray(res.beta, float)])
        diag = np.asarray(tl.is_diagonal())
        self.lo = np.array([0.0 if dg else -1.0 + 1e-9 for dg in diag] + [-np.inf] * len(res.beta))
        self.hi = np.array([np.inf if dg else 1.0 - 1e-9 for dg in diag] + [np.inf] * len(res.beta))
        self.d_hat = self.value(self.x_hat)
        self.scale = self._step_scale()

    def value(self, x) -> float:
        return float(self._vg(jnp.asarray(x, jnp.float64))[0])

    def _fg(self, x):
        """(d, ∇d); a non-finite d (a trial step far out, exp overflow) reads as a huge deviance so that
        the line search steps back."""
        v, g = self._vg(jnp.asarray(x, jnp.float64))
        v, g = float(v), np.asarray(g, dtype=float)
        if not (np.isfinite(v) and np.all(np.isfinite(g))):
            return 1e10 * (1.0 + abs(getattr(self, "d_hat", 0.0))), np.zeros_like(g)
        return v, g

    def _step_scale(self) -> np.ndarray:
        """Wald-like SEs √(2 [H⁻¹]_ii) from a central difference of the exact gradient (for bracketing only)."""
        k = self.x_hat.size
        H = np.zeros((k, k))
        for i in range(k):
            h = 1e-4 * max(abs(self.x_hat[i]), 1.0)
            e = np.zeros(k)
            e[i] = h
            H[:, i] = (self._fg(self.x_hat + e)[1] - self._fg(self.x_hat - e)[1]) / (2 * h)
        H = (H + H.T) / 2
        try:
            v = np.diag(2.0 * np.linalg.inv(H))
        except np.linalg.LinAlgError:
            v = np.full(k, np.nan)
        out = np.sqrt(np.where(np.isfinite(v) & (v > 0), v, 0.0))
        return np.where(out > 0, out, 0.1 * np.maximum(np.abs(self.x_hat), 1.0))

    def profile(self, i: int, v: float, x0: np.ndarray) -> tuple[float, np.ndarray]:
        """d_i(v) and the minimiser, warm-started at ``x0``."""
        free = np.arange(self.x_hat.size) != i
        x = np.array(x0, dtype=float)
        x[i] = v

        def fg(u):
            x[free] = u
            val, g = self._fg(x)
            return val, g[free]

        bounds = list(zip(np.where(np.isfinite(self.lo), self.lo, None)[free],
                          np.where(np.isfinite(self.hi), self.hi, None)[free]))
        start = np.clip(x[free], self.lo[free], self.hi[free])
        from scipy import optimize  # on use: 0.29 s a fit does not need
        opt = optimize.minimize(fg, start, jac=True, method="L-BFGS-B", bounds=bounds,
                                options=dict(ftol=1e-14, gtol=1e-8, maxiter=500))
        x[free] = opt.x
        return float(opt.fun), x.copy()

    def interval(self, i: int, z: float) -> tuple[float, float]:
        from scipy import optimize  # on use: 0.29 s a fit does not need

        est = self.x_hat[i]
        out = []
        for sgn in (-1.0, 1.0):
            warm = {"x": self.x_hat.copy()}

            def g(v):  # sgn·ζ(v) − z
                d, x = self.profile(i, v, warm["x"])
                warm["x"] = x
                if d < self.d_hat:  # a better optimum than the fit's: ζ from it
                    self.d_hat = d
                return np.sqrt(max(d - self.d_hat, 0.0)) - z

            bound = self.lo[i] if sgn < 0 else self.hi[i]
            step = self.scale[i]
            a = est
            b = None
            for k in range(30):
                v = est + sgn * step * (1.0 + 0.5 * k) * (1.5 ** max(k - 2, 0))
                if np.isfinite(bound) and (v - bound) * sgn >= 0:
                    v = bound
                gv = g(v)
                if gv >= 0:
                    b = v
                    break
                a = v
                if np.isfinite(bound) and v == bound:
                    break
            if b is None:
                out.append(bound if np.isfinite(bound) else np.nan)
                continue
            warm["x"] = self.profile(i, a, warm["x"])[1] if a != est else self.x_hat.copy()
            out.append(float(optimize.brentq(g, min(a, b), max(a, b), xtol=1e-9 * max(1.0, abs(est)), rtol=1e-10)))
        if self.tl.size and i < self.nt and not self.tl.is_diagonal()[i]:
            out = [max(out[0], -1.0), min(out[1], 1.0)]
        return out[0], out[1]
