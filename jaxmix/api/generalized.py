"""``jaxmix.fit(..., family="binomial" | "poisson" | "negative_binomial" | "gamma")``: responses, checks
and the GLMM/GLM fit (the NB / Gamma dispersion: :mod:`jaxmix.fitting.dispersion`)."""
from __future__ import annotations

import hashlib
import time
import warnings
import weakref
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import formulaic

from ..spec.covariance import theta_layout
from ..spec.binresponse import binary_response_column, proportion_to_trials
from ..spec.design import as_data_frame, build_design, row_values
from ..errors import JaxmixError, JaxmixWarning
from ..dists import norm_ppf
from ..fitting.dispersion import (check_dispersion_response, dispersion_record, dispersion_start, dispersion_warning,
                         eta_start, fit_glm_dispersion, has_dispersion, log_dispersion_se)
from ..spec.families import Family, data_constant, get_family
from ..spec.formula import ParsedFormula, split_top, parse_formula
from ..core.structure import FINE, bucket
from ..fitting.glmm import MIN_ROWS, fit_glmm_arrays, glm_kernels, pad_rows
from ..fitting.lmm import first_rows
from ..core.newton import OPTIMIZER
from ..status import MESSAGES, Status, status_message
from ..results.mixed import MixedResults, OptimSummary

__all__ = ["fit_glmm", "glm_irls", "dispersion_glm", "glmm_vcov", "separated_columns", "separation_suspected", "status_message",
           "SEPARATION_STATUS"]

#: ``optim.status`` / ``sweep.status`` of a GLMM whose fixed effects are (quasi-)completely separated
SEPARATION_STATUS = int(Status.SEPARATION)
SEPARATION_MESSAGE = MESSAGES[Status.SEPARATION]


def _eval_expr(expr: str, data: pd.DataFrame, what: str) -> np.ndarray:
    expr = expr.strip()
    if expr in data.columns:
        return pd.to_numeric(data[expr], errors="coerce").to_numpy(dtype=float)
    try:
        mm = formulaic.model_matrix(f"0 + I({expr})", data, na_action="ignore")
    except Exception as exc:
        raise JaxmixError(f"cannot evaluate {what} {expr!r}: {exc}") from None
    return mm.to_numpy(dtype=float)[:, 0]


def prepare_glmm(formula: str, data: pd.DataFrame, trials, offset, family: str | None = None):
    """Rewrite a cbind(k, n − k) response into plain columns; check ``trials``.  (``offset(...)`` terms
    stay in the formula: the design evaluates them, on new data too.)"""
    parsed = parse_formula(formula)
    data = data.copy()
    resp = parsed.response
    if family == "binomial":
        data = binary_response_column(data, resp)
    if resp and resp.replace(" ", "").startswith("cbind("):
        inner = resp.strip()[len("cbind("):-1]
        parts = split_top(inner, ",")
        if len(parts) != 2:
            raise JaxmixError(f"cbind response {resp!r} needs two arguments: cbind(successes, failures)")
        k = _eval_expr(parts[0], data, "successes")
        f = _eval_expr(parts[1], data, "failures")
        data["__successes"], data["__trials"] = k, k + f
        resp, trials = "__successes", "__trials"
    rhs = " + ".join([parsed.fixed] + _bar_texts(parsed))
    new = parse_formula(f"{resp or ''} ~ {rhs}")
    if trials is not None and family is not None and family != "binomial":
        raise JaxmixError(f"trials= is only for the binomial family, not {family!r}")
    if isinstance(trials, str) and trials not in data.columns:
        raise JaxmixError(f"trials column {trials!r} is not in the data")
    return new, data, trials, offset


def _bar_texts(parsed: ParsedFormula) -> list[str]:
    """The random terms as written, ``(x | g)`` or with a structure ``diag(x | g)`` (once each: a
    ``||`` or diag term over several columns parses into several terms of one text)."""
    out = []
    for t in parsed.random:
        out.append(t.text) if t.text not in out else None
    return out


def _response_checks(fam: Family, y: np.ndarray, ntr: np.ndarray, name: str, has_trials: bool):
    if not np.isfinite(y).all():
        raise JaxmixError(f"response {name!r} contains inf")
    if fam.name == "binomial":
        if has_trials:
            if (ntr <= 0).any() or not np.isfinite(ntr).all():
                raise JaxmixError("trials must be positive and finite")
            if (y < 0).any():
                raise JaxmixError(f"response {name!r} has negative successes")
            bad = y > ntr
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise JaxmixError(f"response {name!r} has successes > trials (row {i}: {y[i]:g} > {ntr[i]:g})")
        else:
            bad = ~np.isin(y, (0.0, 1.0))
            if bad.any():
                v = y[np.flatnonzero(bad)[0]]
                raise JaxmixError(f"binomial response {name!r} must be 0/1 (or give trials=): found value {v:g}")
    elif has_dispersion(fam):
        check_dispersion_response(fam, y, name)
        if fam.name == "negative_binomial" and not np.allclose(y, np.round(y)):
            warnings.warn(f"negative_binomial response {name!r} has non-integer counts", JaxmixWarning, stacklevel=4)
    elif fam.name == "poisson":
        if (y < 0).any():
            raise JaxmixError(f"poisson response {name!r} has negative counts")
        if not np.allclose(y, np.round(y)):
            warnings.warn(f"poisson response {name!r} has non-integer counts", JaxmixWarning, stacklevel=4)


def _wls_solve(X, W, r):
    """(X′WX)⁻¹X′r by the Cholesky factor of the Jacobi-scaled X′WX (O(np²), against O(np²) with a
    large constant for a least-squares solver on the n rows); least squares where it is not positive
    definite.  Inside IRLS the error of the solve multiplies X′s, which vanishes at the fixed point."""
    import scipy.linalg as sla

    A = (X * W[:, None]).T @ X
    b = X.T @ r
    dg = np.diag(A)
    D = np.where(dg > 0, 1.0 / np.sqrt(np.where(dg > 0, dg, 1.0)), 1.0)
    try:
        out = D * sla.cho_solve(sla.cho_factor(A * D[:, None] * D[None, :]), D * b)
        if np.all(np.isfinite(out)):
            return out
    except (np.linalg.LinAlgError, ValueError):
        pass
    sw = np.sqrt(W)
    return np.linalg.lstsq(X * sw[:, None], r / sw, rcond=None)[0]


#: the last GLM fits by the digest of their inputs: a GLMM's start and the same model's fit without
#: random effects (a sweep's single-level comparison) are one GLM, fitted once
_GLM_FITS: "OrderedDict[bytes, tuple]" = OrderedDict()
GLM_FITS_KEPT = 64


def _glm_key(fam: Family, arrays, max_iter: int, tol: float) -> bytes:
    h = hashlib.blake2b(f"{fam.name}/{fam.link}/{max_iter}/{tol!r}".encode(), digest_size=20)
    for a in arrays:
        h.update(_digest(a))
    return h.digest()


#: digests of large read-only arrays by identity (a sweep's starts share one X of 10⁵ rows: hashing it
#: for every outcome cost 20 ms each); an entry goes when its array does
_DIGESTS: dict = {}


def _digest(a: np.ndarray) -> bytes:
    """The digest of ``a``'s shape and contents; arrays of 1 MB and more that own their data and cannot
    be written to (a design's X) are hashed once."""
    big = a.nbytes >= 2**20 and not a.flags.writeable and a.flags.owndata
    if big and id(a) in _DIGESTS:
        return _DIGESTS[id(a)]
    h = hashlib.blake2b(repr(a.shape).encode(), digest_size=20)
    h.update(np.ascontiguousarray(a))  # the buffer itself, not a copy of it
    out = h.digest()
    if big:
        _DIGESTS[id(a)] = out
        weakref.finalize(a, _DIGESTS.pop, id(a), None)
    return out


def glm_irls(fam: Family, X, y, ntr, pw, offset, max_iter: int = 100, tol: float = 1e-10):
    """Maximum-likelihood GLM by IRLS with step halving (start values and the no-random-effect fit).

    β ← argmin Σᵢ Wᵢ (zᵢ − xᵢ′β)², z = η − o + s/W (s the score, W the Fisher weight in η).  Rows with
    zero prior weight take no part (a sweep passes every outcome's full rows, so all outcomes share
    one compiled shape).  Returns (β, −2 log L, vcov, converged, separated) where ``separated`` flags
    diverging estimates.  A fit of the same inputs as one of the last :data:`GLM_FITS_KEPT` is
    returned from them (copies).
    """
    X, y, ntr, pw, offset = (np.asarray(a, dtype=float) for a in (X, y, ntr, pw, offset))
    key = _glm_key(fam, (X, y, ntr, pw, offset), max_iter, tol)
    if key in _GLM_FITS:
        _GLM_FITS.move_to_end(key)
        beta, dev, vcov, conv, separated = _GLM_FITS[key]
        return beta.copy(), dev, vcov.copy(), conv, separated
    out = _glm_irls(fam, X, y, ntr, pw, offset, max_iter, tol)
    _GLM_FITS[key] = (out[0].copy(), out[1], out[2].copy(), out[3], out[4])
    while len(_GLM_FITS) > GLM_FITS_KEPT:
        _GLM_FITS.popitem(last=False)
    return out


def _glm_irls(fam: Family, X, y, ntr, pw, offset, max_iter: int, tol: float):
    kern_ll, kern_sw = glm_kernels(fam)
    # the kernels see rows padded to a bucket (row 0 repeated with weight 0): one compiled shape
    # serves data sets of similar sizes
    n = y.shape[0]
    N = bucket(n, MIN_ROWS, FINE) if n else 0
    args = tuple(jax.device_put(a) for a in (first_rows(y, N), first_rows(ntr, N), pad_rows(pw, N)))

    const = data_constant(fam, y, ntr, pw) or 0.0  # the data's own part of the log-likelihood, summed once

    def ll_fn(eta, *a):
        return float(kern_ll(jax.device_put(first_rows(np.asarray(eta, dtype=float), N)), *a)) + const

    def sw_fn(eta, *a):
        s_, w_ = kern_sw(jax.device_put(first_rows(np.asarray(eta, dtype=float), N)), *a)
        return np.asarray(s_)[:n], np.asarray(w_)[:n]

    p = X.shape[1]
    beta = np.zeros(p)
    if fam.name == "binomial":
        mu0 = (y + 0.5) / (ntr + 1.0)
        links = {"logit": lambda m: np.log(m / (1 - m)), "probit": norm_ppf,
                 "cloglog": lambda m: np.log(-np.log(1 - m))}  # only the model's link is evaluated
        eta = np.asarray(links[fam.link](mu0))
    else:
        eta = eta_start(fam, y)
    dev_old = np.inf
    conv = False
    first = True
    for _ in range(max_iter):
        s, W = sw_fn(eta, *args)
        W = np.maximum(W, 1e-12)
        # β + (X′WX)⁻¹X′s = (X′WX)⁻¹X′Wz; the first step from the start's η regresses z = η − o itself
        step = _wls_solve(X, W, W * (eta - offset) if first else s) - (beta if first else 0.0)
        first = False
        for _h in range(30):
            cand = beta + step
            eta_c = X @ cand + offset
            dev = -2 * ll_fn(eta_c, *args)
            if np.isfinite(dev) and dev <= dev_old + 1e-12 * abs(dev_old if np.isfinite(dev_old) else 0):
                break
            step = step / 2
        beta, eta = cand, eta_c
        if abs(dev_old - dev) < tol * (abs(dev) + 0.1):
            conv = True
            dev_old = dev
            break
        dev_old = dev
    W = np.maximum(sw_fn(eta, *args)[1], 0.0)
    info = (X * W[:, None]).T @ X
    vcov = np.linalg.pinv(info)
    separated = bool(np.max(np.abs(beta)) > 15 or np.max(np.sqrt(np.abs(np.diag(vcov)))) > 1e3)
    return beta, dev_old, vcov, conv, separated


def theta_start(fam: Family, X, y, ntr, pw, offset, beta, terms, tl) -> np.ndarray:
    """Start for θ: lme4's Λ = I, except for scalar intercept terms ``(1 | g)``, which start at a joint
    moment estimate of their standard deviations from the GLM fit, kept within [0.1, 1].

    With working residuals rᵢ = sᵢ/Wᵢ on the linear-predictor scale (s the score, W the Fisher weight
    at the GLM fit: rᵢ ≈ Σₗ bₗ,ₘ₍ᵢ₎ + eᵢ, var eᵢ = 1/Wᵢ), term k's weighted group means r̄ⱼ and its
    between-group sum of squares Qₖ = Σⱼ wⱼ(r̄ⱼ − r̄)² (wⱼ = Σ_{i∈j} Wᵢ, r̄ the weighted mean) have
    E[Qₖ] = Jₖ − 1 + Σₗ τₗ² Aₖₗ,  Aₖₗ = Σⱼ Σₘ wⱼₘ⁽ˡ⁾²/wⱼ − Σₘ wₘ⁽ˡ⁾²/Σᵢ Wᵢ,
    with wⱼₘ⁽ˡ⁾ the weight of the rows of group j in level m of term l (Aₖₖ = Σ wⱼ − Σ wⱼ²/Σ W, the
    DerSimonian–Laird denominator).  τ² solves A τ² = Q − (J − 1): a term's group means also vary
    with the terms it is nested in or crossed with (physicians' means carry their hospitals'
    effects), which separate estimates count twice (AMI data: physicians started at 2–3x their SD).
    The optimum does not depend on the start; a start near it saves the optimiser's first steps.
    """
    theta = tl.init()
    _, sw_fn = glm_kernels(fam)
    eta = np.asarray(X, dtype=float) @ np.asarray(beta, dtype=float) + np.asarray(offset, dtype=float)
    n = eta.shape[0]
    N = bucket(n, MIN_ROWS, FINE) if n else 0  # the padded shape of glm_irls's kernels
    rows = [jax.device_put(first_rows(np.asarray(a, dtype=float), N)) for a in (eta, y, ntr)]
    s, W = (np.asarray(a, dtype=float)[:n] for a in sw_fn(*rows, jax.device_put(pad_rows(np.asarray(pw, float), N))))
    ok = W > 1e-12
    r = np.where(ok, s / np.where(ok, W, 1.0), 0.0)
    W = np.where(ok, W, 0.0)
    est = [(t, start) for t, start in zip(terms, tl.starts)
           if t.q == 1 and np.allclose(np.asarray(t.Z)[:, 0], 1.0)]
    Wt = W.sum()
    if not est or Wt <= 0:
        return theta
    codes = [np.asarray(t.codes, dtype=np.int64) for t, _ in est]
    sws = [np.bincount(c, weights=W, minlength=t.nlevels) for c, (t, _) in zip(codes, est)]
    K = len(est)
    A, Q, J = np.zeros((K, K)), np.zeros(K), np.zeros(K)
    rw = float(W @ r) / Wt
    for k in range(K):
        sw = sws[k]
        g = sw > 0
        rbar = np.bincount(codes[k], weights=W * r, minlength=sw.size)[g] / sw[g]
        Q[k], J[k] = np.sum(sw[g] * (rbar - rw) ** 2), g.sum()
        for m in range(K):
            if m == k:
                A[k, k] = sw.sum() - np.sum(sw**2) / Wt
                continue
            pair = pd.factorize(codes[k] * sws[m].size + codes[m])[0]
            wjm = np.bincount(pair, weights=W)
            jk = np.zeros(wjm.size, dtype=np.int64)
            jk[pair] = codes[k]
            A[k, m] = np.sum(wjm**2 / np.where(sw[jk] > 0, sw[jk], 1.0)) - np.sum(sws[m] ** 2) / Wt
    rhs = Q - (J - 1.0)
    try:
        tau2 = np.linalg.solve(A, rhs)
        if not np.all(np.isfinite(tau2)):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:  # terms with the same groups: each on its own
        tau2 = rhs / np.where(np.diag(A) > 0, np.diag(A), np.inf)
    for (t, start), t2, groups in zip(est, tau2, J):
        if groups >= 3:
            theta[start] = float(np.clip(np.sqrt(max(t2, 0.0)), 0.1, 1.0))
    return theta


def glmm_vcov(H, on_boundary, nt: int, p: int):
    """vcov(β̂) = 2 [H⁻¹]_ββ from the exact deviance Hessian H over the free (θ, β) coordinates.

    Returns (vcov, warning message or None); a Hessian that is not positive definite falls back to the
    fixed-effects block alone.
    """
    free = ~on_boundary
    try:
        cov_all = 2.0 * np.linalg.inv(H[np.ix_(free, free)])
        vcov = cov_all[-p:, -p:] if p else np.zeros((0, 0))
        if not np.all(np.isfinite(vcov)) or np.any(np.diag(vcov) <= 0):
            raise np.linalg.LinAlgError
        return vcov, None
    except np.linalg.LinAlgError:
        pass
    Hb = H[nt:, nt:]
    nan = np.full((p, p), np.nan)
    if not np.all(np.isfinite(Hb)):
        return nan, "Hessian of the deviance is not finite; standard errors are NaN"
    try:
        vcov = 2.0 * np.linalg.pinv(Hb)
    except np.linalg.LinAlgError:
        return nan, "Hessian of the deviance cannot be inverted; standard errors are NaN"
    return vcov, "Hessian of the deviance is not positive definite; standard errors use the fixed-effects block alone"


def separation_suspected(glm=None, beta=None, fun=None, vcov_note=None) -> bool:
    """Cheap signs that the fixed effects may be separated (then :func:`separated_columns` decides).

    ``glm = (X, prior weights, vcov, converged, flag)`` of the GLM start (:func:`glm_irls`): it did
    not converge, has very large estimates or SEs (its ``flag``), or a fitted linear predictor with an
    SE above 100 (information below 1e-4: fitted probabilities or means at 0 or 1).  A GLMM fit
    (``beta``, ``fun``) that is not finite or has an estimate above 15 in absolute value; a deviance
    Hessian that needed :func:`glmm_vcov`'s fallback (``vcov_note``).
    """
    if vcov_note is not None or (fun is not None and not np.isfinite(fun)):
        return True
    if beta is not None and (not np.all(np.isfinite(beta)) or (beta.size and np.max(np.abs(beta)) > 15)):
        return True
    if glm is None:
        return False
    X, pw, vcov, converged, flag = glm
    V = np.asarray(vcov, dtype=float)
    if flag or not converged or not np.all(np.isfinite(V)):
        return True
    Xu = np.asarray(X, dtype=float)[np.asarray(pw) > 0]
    return bool(Xu.size and np.max(np.sum((Xu @ V) * Xu, axis=1)) > 1e4)


def separated_columns(fam: Family, X, y, ntr, pw, x_names) -> list[str]:
    """The fixed-effect columns of a direction along which the likelihood increases without bound.

    (Quasi-)complete separation: a direction v ≠ 0 with x′v ≥ 0 on the rows with all successes,
    x′v ≤ 0 on those with all failures (poisson: zero counts), x′v = 0 on the others, and x′v ≠ 0 on
    some row; then the maximum-likelihood estimates (of the GLM and of the GLMM, whose random effects
    are penalised) are infinite.  Found exactly by a linear program (Konis, 2007), rows with zero
    prior weight left out.  Returns [] when there is none.
    """
    from scipy.optimize import linprog

    use = np.asarray(pw, dtype=float) > 0
    X = np.asarray(X, dtype=float)[use]
    y, ntr = np.asarray(y, dtype=float)[use], np.asarray(ntr, dtype=float)[use]
    n, p = X.shape
    if n == 0 or p == 0 or fam.name == "gamma":  # a Gamma response is > 0: nothing to separate
        return []
    scale = np.max(np.abs(X), axis=0)
    Xs = X / np.where(scale > 0, scale, 1.0)
    lo = y <= 0
    hi = (y >= ntr) if fam.name == "binomial" else np.zeros(n, dtype=bool)
    ext = lo | hi
    if not ext.any():
        return []
    sign = np.where(hi, 1.0, -1.0)[ext]

    def direction(cols):  # v over ``cols`` (others 0) maximising Σ sign·x′v, or None without separation
        Xc = Xs[:, cols]
        kw = {"A_eq": Xc[~ext], "b_eq": np.zeros(int((~ext).sum()))} if (~ext).any() else {}
        try:
            r = linprog(-(sign @ Xc[ext]), A_ub=-(sign[:, None] * Xc[ext]), b_ub=np.zeros(int(ext.sum())),
                        bounds=[(-1.0, 1.0)] * len(cols), method="highs", **kw)
        except Exception:  # noqa: BLE001 - an LP that fails gives no evidence of separation
            return None
        if r.status != 0 or not -r.fun > 1e-6 * max(1, int(ext.sum())):
            return None
        return np.asarray(r.x, dtype=float)

    # one column alone (a covariate or factor level that predicts the response): no LP needed
    sx = sign[:, None] * Xs[ext]
    flat = np.all(np.abs(Xs[~ext]) <= 1e-12, axis=0)
    alone = flat & (np.all(sx >= -1e-12, axis=0) & np.any(sx > 1e-12, axis=0)
                    | np.all(sx <= 1e-12, axis=0) & np.any(sx < -1e-12, axis=0))
    if alone.any():
        return [str(x_names[c]) for c in np.flatnonzero(alone)]
    cols = np.arange(p)
    v = direction(cols)
    if v is None:
        return []
    main = cols[np.abs(v) >= 1e-2 * np.max(np.abs(v))]  # a direction on fewer columns names them better
    if len(main) < p:
        v_main = direction(main)
        if v_main is not None:
            cols, v = main, v_main
    return [str(x_names[c]) for c, vj in zip(cols, v) if abs(vj) > 1e-6]


def separation_message(columns) -> str:
    """The warning of a separated GLMM (``jaxmix.fit``; a note in ``fit_many``)."""
    return (f"fixed effects (quasi-)completely separated by {', '.join(columns)}: a combination of them predicts "
            "the response perfectly on some rows, so their maximum-likelihood estimates are infinite; the fit "
            f"is not converged (status {SEPARATION_STATUS}) and its standard errors are NaN")


def dispersion_glm(fam: Family, X, y, pw, off):
    """The GLM of a family with a dispersion φ by maximum likelihood (start and fixed-only fit).

    Start: β from IRLS (NB: a Poisson fit, then NB IRLS at the moment estimate of θ; Gamma: IRLS,
    whose β does not depend on the shape), φ from :func:`jaxmix.fitting.dispersion.dispersion_start`; then
    (log φ, β) jointly.  Returns (β, φ, −2 log L, vcov of (log φ, β), converged, separated)."""
    ones = np.ones_like(y)
    start_fam = get_family("poisson") if fam.name == "negative_binomial" else fam
    b, _, _, _, _ = glm_irls(start_fam, X, y, ones, pw, off)
    mu = np.asarray(fam.linkinv(jnp.asarray(X @ b + off)), dtype=float)
    phi0 = dispersion_start(fam, y, mu, pw)
    if fam.name == "negative_binomial":
        b, _, _, _, _ = glm_irls(fam, X, y, ones * phi0, pw, off)
    beta, phi, dev, vcov, opt = fit_glm_dispersion(fam, X, y, pw, off, b, phi0)
    se = np.sqrt(np.abs(np.diag(vcov)))
    separated = bool(not np.all(np.isfinite(beta)) or np.max(np.abs(beta)) > 15 or np.max(se) > 1e3)
    return beta, phi, dev, vcov, int(opt.status) == 0, separated


def fit_glmm(formula, data, family="binomial", link=None, method="Laplace", nagq=1, weights=None,
             offset=None, trials=None, dtype=None, max_iter=500, gtol=1e-4) -> MixedResults:
    from ..spec.covariance import is_singular
    from ..spec.options import parse_dtype

    t0 = time.perf_counter()
    fam = get_family(family, link)
    data = as_data_frame(data)
    method = str(method)
    mkey = method.upper()
    if mkey not in ("LAPLACE", "AGQ"):
        raise JaxmixError(f"method must be 'Laplace' or 'AGQ' for family {fam.name!r}, got {method!r}")
    nagq = int(nagq)
    if nagq < 1:
        raise JaxmixError(f"nagq must be a positive integer, got {nagq}")
    if mkey == "AGQ" and nagq == 1:
        nagq = 9
    if mkey == "LAPLACE" and nagq > 1:
        mkey = "AGQ"
    dt = parse_dtype(dtype)
    orig_resp = parse_formula(formula).response
    parsed, data, trials, offset = prepare_glmm(formula, data, trials, offset, fam.name)
    extra_cols = (trials,) if isinstance(trials, str) else ()
    design = build_design(parsed, data, weights=weights, offset=offset, check_nlevels=False,
                          extra_columns=extra_cols)
    from ..spec.re_structure import check_plain_terms

    check_plain_terms(design.terms, f"a {fam.name} GLMM")
    y = design.y
    if trials is None:
        ntr = np.ones_like(y)
    else:
        ntr = row_values(trials, data, "trials")[design.positions]
    has_trials = trials is not None
    if fam.name == "binomial" and (conv := proportion_to_trials(y, design.weights if weights is not None else None,
                                                                has_trials)) is not None:
        design.y, ntr, design.weights = conv  # glmer(k/n ~ ..., weights = n)
        y, has_trials = design.y, True
    _response_checks(fam, y, ntr, orig_resp, has_trials)
    if mkey == "AGQ" and (len(design.terms) != 1 or design.terms[0].q != 1):
        raise JaxmixError("adaptive Gauss-Hermite quadrature (nagq > 1) needs a single scalar random-effect "
                          f"term such as (1 | g); the formula has {len(design.terms)} term(s) "
                          f"with {[t.q for t in design.terms]} column(s)")
    X, pw, off = design.X, design.weights, design.offset
    aux, ndisp, disp = ntr, 0, None  # the ``ntr`` slot of the GLMM data: trials, or the NB / Gamma shape
    if has_dispersion(fam):
        beta0, phi_glm, dev0, vcov_full, conv0, separated = dispersion_glm(fam, X, y, pw, off)
        vcov0, aux, ndisp = vcov_full[1:, 1:], np.full_like(y, phi_glm), 1  # the GLM's φ starts the GLMM's
        disp = dispersion_record(fam, phi_glm, float(np.sqrt(vcov_full[0, 0])))
    else:
        beta0, dev0, vcov0, conv0, separated = glm_irls(fam, X, y, ntr, pw, off)
    if separated and not design.terms:
        warnings.warn("fixed effects appear to be (quasi-)completely separated: some estimates are very "
                      "large; their standard errors are not reliable", JaxmixWarning, stacklevel=3)
    if not design.terms:
        if disp is not None and dispersion_warning(disp):
            warnings.warn(dispersion_warning(disp), JaxmixWarning, stacklevel=3)
        elif disp is not None and not conv0:
            warnings.warn(f"model did not converge: the maximum-likelihood fit of {fam.name} with its "
                          f"{fam.dispersion} stopped short", JaxmixWarning, stacklevel=3)
        return MixedResults(
            formula=formula, family=fam.name, link=fam.link, method="ML", design=design, beta=beta0,
            vcov_beta=vcov0, theta=np.zeros(0), sigma=1.0, loglik=-dev0 / 2, objective=dev0,
            n_params=X.shape[1] + ndisp, converged=conv0, singular=False, optim=None, b=[],
            extra={"nagq": 1, "trials": ntr, "offset_column": offset if isinstance(offset, str) else None,
                   "dispersion": disp},
        )
    terms = design.terms
    p = X.shape[1]
    tl = theta_layout(tuple(t.q for t in terms))
    nt = tl.size
    log_phi0 = [np.log(aux[0])] if ndisp else []
    params0 = np.concatenate([theta_start(fam, X, y, aux, pw, off, beta0, terms, tl), log_phi0, beta0])
    nlev = [t.nlevels for t in terms]
    fitted = fit_glmm_arrays(fam, [t.codes for t in terms], nlev, [t.Z for t in terms], X, y, pw, aux, off,
                             params0, nagq, dt, gtol=gtol, max_iter=max_iter)
    res = fitted.opt
    x = fitted.params
    theta, beta = x[:nt], x[nt + ndisp:]
    vcov, msg = glmm_vcov(fitted.hess, res.on_boundary, nt + ndisp, p)
    if ndisp:  # the data and parameters of the fitted model at the estimated φ
        phi = float(np.exp(x[nt]))
        disp = dispersion_record(fam, phi, log_dispersion_se(fitted.hess, res.on_boundary, nt))
    status = int(res.status)
    sep = []
    if separation_suspected((X, pw, vcov0, conv0, separated), beta, float(res.fun), msg):
        sep = separated_columns(fam, X, y, aux, pw, design.x_names)
    if sep:  # infinite estimates: not converged, whatever the gradient says; no standard errors
        status, vcov = SEPARATION_STATUS, np.full((p, p), np.nan)
        warnings.warn(separation_message(sep), JaxmixWarning, stacklevel=3)
    elif msg:
        warnings.warn(msg, JaxmixWarning, stacklevel=3)
    b = fitted.batch.b(0, nlev)

    def condvar():
        return fitted.batch.condvar(0, nlev)

    converged = status == 0
    if dispersion_warning(disp):
        warnings.warn(dispersion_warning(disp), JaxmixWarning, stacklevel=3)
    elif not converged and not sep:
        warnings.warn(f"model did not converge: {status_message(status)} "
                      f"(max|grad| = {np.max(np.abs(res.grad)):.2e})", JaxmixWarning, stacklevel=3)
    optim = OptimSummary(theta_init=np.asarray(params0), iterations=int(res.n_iter), evaluations=int(res.n_eval),
                         grad=np.asarray(res.grad, dtype=float), grad_norm=float(np.linalg.norm(res.grad)),
                         hess_min_eig=float(res.hess_min_eig), status=status, message=status_message(status),
                         optimizer=OPTIMIZER, fit_seconds=time.perf_counter() - t0,
                         compile_seconds=fitted.compile_seconds)
    obj = float(res.fun)
    return MixedResults(
        formula=formula, family=fam.name, link=fam.link, method="AGQ" if nagq > 1 else "Laplace",
        design=design, beta=beta, vcov_beta=vcov, theta=theta, sigma=1.0, loglik=-obj / 2.0, objective=obj,
        n_params=p + nt + ndisp, converged=converged,
        singular=bool(np.any(res.on_boundary)) or is_singular(res.x[:nt], tl),  # scaled θ, as for LMMs
        optim=optim, b=b, _condvar_fn=condvar,
        extra={"nagq": nagq, "trials": ntr, "offset_column": offset if isinstance(offset, str) else None,
               "dispersion": disp},
    )
