"""Parametric bootstrap of a fitted model through the batched sweep path.

Replicate r draws new random effects b* ~ N(0, Ω̂) for every level of every term and a new response
from the fitted model (Gaussian: y* = Xβ̂ + o + Zb* + σ̂ ε/√w; binomial: y* ~ Bin(trials, μ*); Poisson:
y* ~ Pois(μ*); negative binomial and Gamma: :func:`jaxmix.fitting.dispersion.simulate_dispersion`, at the
fitted θ / shape), all replicates are refitted as one batched program (:func:`jaxmix.fit_many`'s path,
in chunks of one compiled shape), and percentile intervals are read off the replicates' estimates
(lme4's ``bootMer`` / ``confint(method = "boot", boot.type = "perc")``).  The dispersion parameter of a
negative-binomial or Gamma model is one more column of the replicates.

Structured Gaussian fits (``variance=``, ``correlation=``, cs/ar1/diag terms) simulate with
:func:`jaxmix.results.simulate_structured.simulate_structured` (their own random-term and residual
covariances) and refit every replicate with the same structures through ``fit_many``'s outcome-by-outcome
route; the replicates' columns are the fixed effects and each structure's own parameters (the fit's
``extra["structure"]["table"]``: variances, covariances, correlations, SD ratios).

Replicate r uses the key ``fold_in(key(seed), r)``: the draws do not depend on the chunk size, and
the same seed gives the same replicates.
"""
from __future__ import annotations

import dataclasses
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..spec.covariance import lambdas_np, theta_layout
from ..fitting.lmm import FAST_COMPILE
from ..errors import JaxmixError
from ..fitting.dispersion import simulate_dispersion
from ..results.mixed import MixedResults
from ..results.mixed import register_extension

__all__ = ["bootstrap", "BootstrapResult", "simulate"]


def _param_names(res: MixedResults) -> list[str]:
    from ..spec.structinfo import structure_info

    info = structure_info(res)
    if info is not None:
        return list(res.x_names) + _structure_names(info["table"])
    names = list(res.x_names)
    for _, r in res.varcorr.iterrows():
        if r["group"] == "Residual":
            names.append("sigma")
        elif pd.isna(r["var2"]) or r["var2"] is None:
            names.append(f"sd({r['var1']}|{r['group']})")
        else:
            names.append(f"cor({r['var1']},{r['var2']}|{r['group']})")
    if res.dispersion is not None:
        names.append(res.dispersion_table["parameter"].iloc[0])
    return names


def _structure_names(table: pd.DataFrame) -> list[str]:
    """Column names of a structured fit's parameters: var(x|g), cov(x,z|g), rho|g, sigma^2, ratios by name."""
    out = []
    for g, v1, v2, kind in zip(table["group"], table["var1"], table["var2"], table["kind"]):
        v1 = None if v1 is None or (isinstance(v1, float) and np.isnan(v1)) else v1
        if kind == "variance":
            out.append("sigma^2" if g == "Residual" and v1 is None else f"var({v1}|{g})")
        elif kind == "covariance":
            out.append(f"cov({v1},{v2}|{g})")
        else:  # rho, ratio: their own label
            out.append(f"{v1 if v1 not in (None, 'rho') else kind}|{g}")
    return out


def simulate(res: MixedResults, n: int, seed: int = 0, start: int = 0) -> np.ndarray:
    """Responses simulated from the fitted model: an (nobs, n) array, replicates ``start .. start+n-1``."""
    from ..spec.structinfo import structure_info

    if structure_info(res) is not None:
        from ..results.simulate_structured import simulate_structured

        return simulate_structured(res, n, seed=seed, start=start)
    return np.asarray(_simulator(res, seed)(jnp.arange(start, start + int(n)))).T


def _simulator(res: MixedResults, seed: int):
    """A jitted function: replicate indices (m,) -> simulated responses (m, nobs)."""
    d = res.design
    if res.family not in ("gaussian", "binomial", "poisson", "negative_binomial", "gamma"):
        raise JaxmixError(f"cannot simulate from family {res.family!r}")
    tl = theta_layout([t.q for t in d.terms])
    gauss = res.family == "gaussian"
    scale = res.sigma if gauss else 1.0
    lams = [x * scale for x in lambdas_np(np.asarray(res.theta, dtype=float), tl)] if d.terms else []
    eta_fix = jnp.asarray(d.X @ res.beta + d.offset)
    Zs = [jnp.asarray(t.Z) for t in d.terms]
    codes = [jnp.asarray(t.codes) for t in d.terms]
    nlev = [t.nlevels for t in d.terms]
    w = jnp.asarray(d.weights)
    ntr = jnp.asarray(res.extra.get("trials", np.ones(d.nobs)), jnp.float64)
    from ..spec.families import get_family

    linkinv = None if gauss else get_family(res.family, res.link).linkinv
    key = jax.random.key(int(seed))

    def one(r):
        keys = jax.random.split(jax.random.fold_in(key, r), len(Zs) + 1)
        eta = eta_fix
        for kk, (Z, c, lam, nl) in enumerate(zip(Zs, codes, lams, nlev)):
            z = jax.random.normal(keys[kk], (nl, Z.shape[1]), jnp.float64)
            b = z @ jnp.asarray(lam).T
            eta = eta + jnp.sum(Z * b[c], axis=1)
        if gauss:
            e = jax.random.normal(keys[-1], eta.shape, jnp.float64)
            return eta + res.sigma * e / jnp.sqrt(jnp.where(w > 0, w, 1.0))
        mu = linkinv(eta)
        if res.family == "binomial":
            return jax.random.binomial(keys[-1], ntr, jnp.clip(mu, 0.0, 1.0), dtype=jnp.float64)
        if res.dispersion is not None:  # NB: Poisson(μG), G ~ Gamma(θ)/θ; Gamma: μ·Gamma(α)/α
            return simulate_dispersion(res.family, keys[-1], mu, res.dispersion)
        return jax.random.poisson(keys[-1], mu, dtype=jnp.int64).astype(jnp.float64)

    # XLA's quick options: the random-number program compiled 1.6 s with the defaults (sleepstudy,
    # 200 replicates) and runs once per chunk
    return jax.jit(jax.vmap(one), compiler_options=FAST_COMPILE)


@dataclasses.dataclass
class BootstrapResult:
    """Parametric bootstrap replicates of a fit: ``samples`` (one row per replicate), intervals, SEs."""

    estimate: pd.Series  # the original fit's parameters
    samples: pd.DataFrame  # replicate x parameter (NaN for replicates that failed)
    status: np.ndarray  # per replicate: 0 = converged
    seed: int
    seconds: float = 0.0
    compile_seconds: float = 0.0

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def n_failed(self) -> int:
        return int((self.status != 0).sum())

    def _ok(self) -> pd.DataFrame:
        return self.samples[self.status == 0]

    @property
    def se(self) -> pd.Series:
        """Bootstrap standard deviation of every parameter (converged replicates)."""
        return self._ok().std(ddof=1).rename("boot_se")

    def ci(self, level: float = 0.95) -> pd.DataFrame:
        """Percentile intervals: estimate, lower, upper for every parameter (converged replicates)."""
        a = (1.0 - level) / 2.0
        ok = self._ok().to_numpy(dtype=float)
        lo, hi = np.nanquantile(ok, [a, 1.0 - a], axis=0) if len(ok) else (np.nan, np.nan)
        return pd.DataFrame({"estimate": self.estimate, "lower": lo, "upper": hi}, index=self.samples.columns)

    conf_int = ci

    def summary(self, level: float = 0.95) -> str:
        tab = self.ci(level)
        tab["boot_se"] = self.se
        return (f"Parametric bootstrap: {self.n} replicates ({self.n_failed} failed), seed {self.seed}, "
                f"{self.seconds:.1f} s\n{int(level * 100)}% percentile intervals:\n"
                + tab.to_string(float_format=lambda v: f"{v:.4g}"))

    def __repr__(self) -> str:
        return f"BootstrapResult(n={self.n}, failed={self.n_failed}, seed={self.seed})"


def _params_of(sw, res: MixedResults) -> np.ndarray:
    """Fixed effects then the varcorr sdcor column and the dispersion parameter (replicate x parameter);
    for a structured fit the fixed effects then its structure table's estimates."""
    from ..spec.structinfo import structure_info

    info = structure_info(res)
    if info is not None:
        m = len(info["table"])
        est = np.full((len(sw), m), np.nan)
        tab = sw.structure_table
        for j, name in enumerate(sw.names):
            e = tab.loc[tab["outcome"] == name, "estimate"].to_numpy(dtype=float)
            if e.shape[0] == m:
                est[j] = e
        return np.column_stack([sw.beta, est])
    vc = sw.varcorr
    nvc = len(res.varcorr)
    sd = vc["sdcor"].to_numpy(dtype=float).reshape(len(sw), nvc) if nvc else np.zeros((len(sw), 0))
    disp = [sw.dispersion_[0]] if res.dispersion is not None else []
    return np.column_stack([sw.beta, sd, *disp])


def bootstrap(res: MixedResults, n: int = 1000, seed: int = 0, *, batch_size: int | None = None,
              progress: bool | None = None, devices=None, dtype=None, max_iter: int = 500,
              gtol: float = 1e-4) -> BootstrapResult:
    """Parametric bootstrap: simulate ``n`` responses from ``res``, refit them all, percentile intervals.

    Args:
      res: a fit from :func:`jaxmix.fit` (or ``sweep[name]``).
      n: number of replicates.
      seed: the random seed (the same seed gives the same replicates).
      batch_size: replicates per batched call (default min(n, 250)); every chunk has the same shape,
        so the program compiles once; a progress bar shows when there is more than one chunk.
      progress: force the progress bar on or off.
      devices, dtype, max_iter, gtol: as for :func:`jaxmix.fit_many`.

    Returns:
      :class:`BootstrapResult` with ``samples``, ``ci(level)``, ``se``, ``summary()``.

    Examples:
      >>> res = jaxmix.fit("Reaction ~ Days + (Days | Subject)", sleepstudy)
      >>> bs = jaxmix.bootstrap(res, n=500, seed=1)
      >>> bs.ci(0.95)
    """
    from ..progress import progress_bar
    from ..spec.families import get_family
    from ..spec.structinfo import structure_info
    from .many import fit_problem, Problem

    t0 = time.perf_counter()
    n = int(n)
    if n < 1:
        raise JaxmixError(f"n must be a positive number of replicates, got {n}")
    d = res.design
    gauss = res.family == "gaussian"
    chunk = min(n, 250) if batch_size is None else max(1, min(int(batch_size), n))
    nchunks = -(-n // chunk)
    method = "ML" if res.method == "OLS" else res.method  # OLS: the sweep fits least squares anyway
    nagq = int(res.extra.get("nagq", 1))
    start = None
    if not gauss and d.terms:
        tl = theta_layout([t.q for t in d.terms])
        th = np.where(tl.is_diagonal(), np.maximum(res.theta, 0.1), res.theta)
        lphi = [np.log(res.dispersion)] if res.dispersion is not None else []
        start = np.concatenate([th, lphi, res.beta])
    rhs = d.parsed.formula.split("~", 1)[1].strip()
    design0 = dataclasses.replace(d, y=None)
    info = structure_info(res)
    frame, args, resid = None, {}, {}
    if info is not None:  # refitted outcome by outcome (jaxmix.fit's structured driver) on the fit's rows
        from ..spec.design import as_data_frame

        call = res.extra.get("call")
        if call is None:
            raise JaxmixError("the parametric bootstrap of a structured fit needs the data of the call that "
                              "made it (fit it with jaxmix.fit)")
        pos = d.positions if d.positions is not None else np.arange(d.nobs)
        frame = as_data_frame(call["data"]).iloc[pos].reset_index(drop=True)
        design0 = dataclasses.replace(design0, rows=np.arange(d.nobs), positions=np.arange(d.nobs))
        args = {k: (v if v is None or isinstance(v, str) else np.asarray(v, dtype=float).reshape(-1)[pos])
                for k, v in ((k, call.get(k)) for k in ("weights", "offset"))}
        resid = {"variance": call.get("variance"), "correlation": call.get("correlation")}
    fam = None if gauss else get_family(res.family, res.link)
    ntr = np.asarray(res.extra.get("trials", np.ones(d.nobs)), dtype=float)
    names_all = [f"boot{r}" for r in range(nchunks * chunk)]
    rows, status, comp = [], [], 0.0
    show = (nchunks > 1) if progress is None else bool(progress)
    bar = progress_bar(n, "bootstrap", quiet=not show, unit="replicate")
    sim = None if info is not None else _simulator(res, seed)
    try:
        for c in range(nchunks):
            if sim is None:
                Y = simulate(res, chunk, seed=seed, start=c * chunk)
            else:
                Y = np.asarray(sim(jnp.arange(c * chunk, (c + 1) * chunk))).T
            pb = Problem(design=design0, Y=Y, names=names_all[c * chunk : (c + 1) * chunk], family=res.family,
                          link=res.link, fam=fam, method=method, nagq=nagq, ntr=ntr, rhs=rhs,
                          has_trials=bool(np.any(ntr != 1)),
                          offset_column=res.extra.get("offset_column"), data=frame, args=args, **resid)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sw = fit_problem(pb, dtype=dtype, max_iter=max_iter, gtol=gtol, devices=devices,
                                  batch_size=None, progress=False, start=start)
            comp += sw.compile_seconds
            rows.append(_params_of(sw, res))
            status.append(sw.status_)
            bar.update(min(chunk, n - c * chunk))
    finally:
        bar.close()
    names = _param_names(res)
    samples = pd.DataFrame(np.concatenate(rows)[:n], columns=names)
    samples.index.name = "replicate"
    if info is not None:
        est = np.concatenate([res.beta, info["table"]["estimate"].to_numpy(dtype=float)])
    else:
        est = np.concatenate([res.beta, res.varcorr["sdcor"].to_numpy(dtype=float),
                              [res.dispersion] if res.dispersion is not None else []])
    return BootstrapResult(estimate=pd.Series(est, index=names[: len(est)], name="estimate"), samples=samples,
                           status=np.concatenate(status)[:n], seed=int(seed), seconds=time.perf_counter() - t0,
                           compile_seconds=comp)


# the results' methods of these names (jaxmix.results.mixed.register_extension)
register_extension("bootstrap", bootstrap)
