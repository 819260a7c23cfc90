"""The three fitting paths of a sweep: batched LMM, batched GLMM, and models without random effects.

Each takes the problem of :mod:`jaxmix.api.many` with the per-outcome row masks and screening status and
returns a :class:`jaxmix.results.sweep.Sweep`.  Screened-out outcomes are replaced by the first good outcome's
data inside the batch (so they cost nothing extra and cannot produce NaNs); their results are NaN.
"""
from __future__ import annotations

import numpy as np

from ..spec.covariance import theta_layout
from ..errors import JaxmixError
from ..fitting.dispersion import (dispersion_record, dispersion_warning, has_dispersion,
                                  log_dispersion_se)
from ..fitting.glmm import fit_glmm_outcomes
from ..fitting.lmm import fit_lmm_outcomes
from ..progress import progress_bar
from ..results.mixed import MixedResults, OptimSummary
from ..results.sweep import Sweep, outcome_design, Problem, status_message

__all__ = ["fit_lmm_batch", "fit_glmm_batch", "fit_fixed_only", "fit_each", "fit_outcome_alone", "fit_status"]


def _has_disp(pb: Problem) -> bool:
    """Whether the family has a dispersion parameter φ (negative binomial θ, Gamma shape)."""
    return pb.fam is not None and has_dispersion(pb.fam)


def fit_status(res: MixedResults) -> int:
    """A ``jaxmix.fit`` result's code in a sweep's status: 0 converged, else its optimiser's status (1
    where it has none)."""
    return 0 if res.converged else (res.optim.status if res.optim is not None else 1)


def _nan(shape) -> np.ndarray:
    return np.full(shape, np.nan)


def _fill(status: np.ndarray) -> np.ndarray:
    """Column used for every outcome in the batch: itself, or the first good outcome for a failed one."""
    ok = status == 0
    j0 = int(np.flatnonzero(ok)[0])
    return np.where(ok, np.arange(status.shape[0]), j0)


def _is_singular_batch(theta: np.ndarray, tl, on_boundary: np.ndarray) -> np.ndarray:
    diag = tl.is_diagonal()
    return np.any(on_boundary, axis=1) | np.any(np.abs(theta[:, diag]) < 1e-4, axis=1)


def _all_failed(pb, mask, status, nobs, p, nt, n_params) -> Sweep:
    k = len(pb.names)
    return Sweep(problem=pb, mask=mask, beta=_nan((k, p)), vcov_beta=_nan((k, p, p)), theta_=_nan((k, nt)),
                 sigma_=_nan(k), loglik_=_nan(k), objective_=_nan(k), status_=status, nobs_=nobs,
                 singular_=np.zeros(k, dtype=bool), n_params=n_params, _build=lambda j: None)


def _optim(res, j: int, theta_init, compile_s: float, fit_s: float, status=None) -> OptimSummary:
    g = np.asarray(res.grad[j], dtype=float)
    st = int(res.status[j] if status is None else status)
    return OptimSummary(theta_init=np.asarray(theta_init, dtype=float), iterations=int(res.n_iter[j]),
                        evaluations=int(res.n_eval[j]), grad=g, grad_norm=float(np.linalg.norm(g)),
                        hess_min_eig=float(res.hess_min_eig[j]), status=st, message=status_message(st),
                        fit_seconds=fit_s, compile_seconds=compile_s)


def _row_args(pb: Problem, mask, status, dt, response_shift=None):
    """Per-outcome responses (NaN -> 0), row weights and counts, with failed outcomes filled."""
    d = pb.design
    fill = _fill(status)
    every = bool((fill == np.arange(fill.size)).all())  # no outcome filled: no copies (C order kept)
    M = mask if every else mask[:, fill]
    Y = pb.Y if every else pb.Y[:, fill]
    Y = Y if response_shift is None else Y - response_shift[:, None]
    full = bool(M.all())  # no missing response
    Yc = Y if full else np.where(M, Y, 0.0)
    W = np.repeat(d.weights[:, None], M.shape[1], axis=1) if full else d.weights[:, None] * M
    same = full or bool((M == M[:, :1]).all())
    return fill, M, np.asarray(Yc.T, dt), np.asarray(W.T, dt), same


def in_chunks(k: int, batch_size, progress, desc: str, fit_chunk):
    """``fit_chunk(slice)`` over the outcomes in chunks of ``batch_size`` (all at once by default),
    with a progress bar when there are several chunks (or ``progress``).  Returns (the chunks' results,
    the chunk size, their optimiser records concatenated over outcomes)."""
    chunk = k if batch_size is None else max(1, min(int(batch_size), k))
    nchunks = -(-k // chunk)
    show = (nchunks > 1) if progress is None else bool(progress)
    bar = progress_bar(k, desc, quiet=not show, unit="outcome")
    parts = []
    try:
        for c in range(nchunks):
            sl = slice(c * chunk, min((c + 1) * chunk, k))
            parts.append(fit_chunk(sl))
            bar.update(sl.stop - sl.start)
    finally:
        bar.close()
    opt = type(parts[0].opt)(*(np.concatenate([getattr(b.opt, name) for b in parts], axis=0)
                               for name in parts[0].opt._fields))
    return parts, chunk, opt


# ---- LMM -------------------------------------------------------------------------------------
def _vcov_lmm(RX: np.ndarray, sigma: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """vcov(β̂) = σ² (L_X L_X′)⁻¹ = σ² L_X⁻ᵀ L_X⁻¹ of every outcome (NaN where not ok or L_X is singular)."""
    k, p = RX.shape[0], RX.shape[-1]
    vcov = _nan((k, p, p))
    J = np.flatnonzero(ok)
    try:
        Ri = np.linalg.inv(RX[J])
    except np.linalg.LinAlgError:  # one singular L_X: outcome by outcome
        for j in J:
            try:
                Ri_j = np.linalg.inv(RX[j])
            except np.linalg.LinAlgError:
                continue
            vcov[j] = sigma[j] ** 2 * Ri_j.T @ Ri_j
        return vcov
    vcov[J] = sigma[J, None, None] ** 2 * np.einsum("kji,kjl->kil", Ri, Ri)
    return vcov


def fit_lmm_batch(pb: Problem, mask, status, nobs, dtype, max_iter, gtol, devices, batch_size, progress,
                  desc="fitting") -> Sweep:
    from ..spec.options import parse_dtype

    dt = np.dtype(parse_dtype(dtype))
    d = pb.design
    p = d.X.shape[1]
    reml = pb.method == "REML"
    terms = d.terms
    tl = theta_layout(tuple(t.q for t in terms))
    nt = tl.size
    if not (status == 0).any():
        return _all_failed(pb, mask, status, nobs, p, nt, p + nt + 1)
    fill, M, Yc, W, same = _row_args(pb, mask, status, np.float64, response_shift=d.offset)
    logw = np.log(np.where(d.weights > 0, d.weights, 1.0))
    if M.all():  # every outcome on every row
        n_j = np.full(M.shape[1], float(M.shape[0]))
        ldW_j = np.full(M.shape[1], float(np.sum(logw[d.weights > 0])))
    else:
        n_j = M.sum(axis=0).astype(float)
        ldW_j = ((M & (d.weights[:, None] > 0)) * logw[:, None]).sum(axis=0)
    codes, nlev, Zs = [t.codes for t in terms], [t.nlevels for t in terms], [t.Z for t in terms]
    parts, chunk, res = in_chunks(len(pb.names), batch_size, progress, desc, lambda sl: fit_lmm_outcomes(
        codes, nlev, Zs, d.X, Yc.T[:, sl], W.T[:, sl], n_j[sl], ldW_j[sl], reml, dt, gtol=gtol, max_iter=max_iter,
        devices=devices))
    cat = lambda f: np.concatenate([f(b) for b in parts], axis=0)  # noqa: E731
    cs = sum(b.compile_seconds for b in parts)
    rs = sum(b.run_seconds for b in parts)
    ok = status == 0
    theta = np.where(ok[:, None], cat(lambda b: b.theta), np.nan)
    denom = nobs - p if reml else nobs
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = np.where(ok, np.sqrt(cat(lambda b: b.r2) / denom), np.nan)
    vcov = _vcov_lmm(cat(lambda b: b.RX), sigma, ok)
    obj = np.where(ok, res.fun, np.nan)
    st = np.where(ok, res.status, status)
    scaled = res.x  # the singularity test is on the scaled θ̃ (Z columns of unit RMS), as jaxmix.fit's
    singular = ok & _is_singular_batch(np.nan_to_num(scaled, nan=1.0), tl, res.on_boundary)
    beta = np.where(ok[:, None], cat(lambda b: b.beta), np.nan)

    def build(j: int) -> MixedResults:
        name = pb.names[j]
        sub, used = outcome_design(d, mask[:, j], pb.Y[:, j], name, pb.rhs)
        part, jj = parts[j // chunk], j % chunk
        s2 = float(sigma[j]) ** 2

        def condvar():
            return [s2 * cv[u] for cv, u in zip(part.condvar(jj, nlev), used)]

        return MixedResults(
            formula=sub.parsed.formula, family="gaussian", link="identity", method=pb.method, design=sub,
            beta=beta[j], vcov_beta=vcov[j], theta=theta[j], sigma=float(sigma[j]), loglik=-obj[j] / 2.0,
            objective=float(obj[j]), n_params=p + nt + 1, converged=bool(st[j] == 0), singular=bool(singular[j]),
            optim=_optim(res, j, tl.init() * part.theta_scale, cs, rs), b=[bk[u] for bk, u in zip(part.b(jj, nlev), used)],
            _condvar_fn=condvar)

    return Sweep(problem=pb, mask=mask, beta=beta, vcov_beta=vcov, theta_=theta, sigma_=sigma, loglik_=-obj / 2.0,
                 objective_=obj, status_=st, nobs_=nobs, singular_=singular, n_params=p + nt + 1, _build=build,
                 compile_seconds=cs, run_seconds=rs)


# ---- GLMM ------------------------------------------------------------------------------------
def _glm_starts(pb: Problem, mask, status, suspect: np.ndarray, tl) -> np.ndarray:
    """(θ, β) starts of every good outcome — (θ, log φ, β) for a family with a dispersion φ (negative
    binomial, Gamma): β (and φ) from a GLM on its own rows (:func:`jaxmix.api.generalized.glm_irls`, or
    :func:`jaxmix.api.generalized.dispersion_glm`), θ from :func:`jaxmix.api.generalized.theta_start`
    (the starts ``jaxmix.fit`` uses).  ``suspect[j]`` is set where the GLM shows signs of separation
    (:func:`jaxmix.api.generalized.separation_suspected`)."""
    from .generalized import dispersion_glm, glm_irls, separation_suspected, theta_start

    d = pb.design
    p = d.X.shape[1]
    disp = _has_disp(pb)
    out = np.tile(np.concatenate([tl.init(), np.zeros(int(disp) + p)]), (len(pb.names), 1))
    for j in np.flatnonzero(status == 0):
        m = mask[:, j]  # all rows, the outcome's missing ones with zero weight: one compiled shape
        wj = d.weights * m
        if disp:  # rows it does not use repeat a response it has (a Gamma response of 0 is not valid)
            yj = np.where(m, pb.Y[:, j], pb.Y[np.flatnonzero(m)[0], j])
            beta0, phi0, _, vfull, conv0, separated = dispersion_glm(pb.fam, d.X, yj, wj, d.offset)
            vcov0, aux, lphi = vfull[1:, 1:], np.full(d.nobs, phi0), [np.log(phi0)]
        else:
            yj = np.where(m, pb.Y[:, j], 0.0)
            # the single-level fit's GLM where no row is missing (glm_irls keeps its last fits)
            beta0, _, vcov0, conv0, separated = glm_irls(pb.fam, d.X, yj, pb.ntr, wj, d.offset)
            aux, lphi = pb.ntr, []
        out[j] = np.concatenate([theta_start(pb.fam, d.X, yj, aux, wj, d.offset, beta0, d.terms, tl), lphi, beta0])
        suspect[j] = separation_suspected((d.X, wj, vcov0, conv0, separated))
    return out


def fit_glmm_batch(pb: Problem, mask, status, nobs, dtype, max_iter, gtol, devices, batch_size, progress,
                   start=None, desc="fitting") -> Sweep:
    from ..spec.options import parse_dtype
    from .generalized import (SEPARATION_STATUS, glmm_vcov, separated_columns, separation_message,
                             separation_suspected)

    dt = np.dtype(parse_dtype(dtype))
    d = pb.design
    p = d.X.shape[1]
    if pb.nagq > 1 and (len(d.terms) != 1 or d.terms[0].q != 1):
        raise JaxmixError("adaptive Gauss-Hermite quadrature (nagq > 1) needs a single scalar random-effect "
                          f"term such as (1 | g); the formula has {len(d.terms)} term(s) "
                          f"with {[t.q for t in d.terms]} column(s)")
    terms = d.terms
    tl = theta_layout(tuple(t.q for t in terms))
    nt = tl.size
    ndisp = int(_has_disp(pb))  # log φ after θ (:mod:`jaxmix.fitting.dispersion`)
    if not (status == 0).any():
        return _all_failed(pb, mask, status, nobs, p, nt, p + nt + ndisp)
    notes: dict = {}
    suspect = np.zeros(len(pb.names), dtype=bool)
    if start is None:
        params0 = _glm_starts(pb, mask, status, suspect, tl)
    else:
        params0 = np.broadcast_to(np.asarray(start, dtype=float), (len(pb.names), nt + ndisp + p)).copy()
    fill, M, Yc, PW, same = _row_args(pb, mask, status, np.float64)
    codes, nlev, Zs = [t.codes for t in terms], [t.nlevels for t in terms], [t.Z for t in terms]
    parts, chunk, res = in_chunks(len(pb.names), batch_size, progress, desc, lambda sl: fit_glmm_outcomes(
        pb.fam, codes, nlev, Zs, d.X, Yc.T[:, sl], PW.T[:, sl], pb.ntr, d.offset, params0[fill][sl], pb.nagq, dt,
        gtol=gtol, max_iter=max_iter, devices=devices))
    cs = sum(b.compile_seconds for b in parts)
    rs = sum(b.run_seconds for b in parts)
    ok = status == 0
    x = np.where(ok[:, None], np.concatenate([b.params for b in parts], axis=0), np.nan)
    theta, beta = x[:, :nt], x[:, nt + ndisp:]
    H = np.concatenate([b.hess for b in parts], axis=0)
    onb = res.on_boundary
    vcov = _nan((len(ok), p, p))
    obj = np.where(ok, res.fun, np.nan)
    st = np.where(ok, res.status, status)
    disp: dict = {}  # outcome index -> its dispersion record (negative binomial θ, Gamma shape)
    for j in np.flatnonzero(ok):
        vcov[j], note = glmm_vcov(H[j], onb[j], nt + ndisp, p)
        if ndisp:
            disp[j] = dispersion_record(pb.fam, float(np.exp(x[j, nt])), log_dispersion_se(H[j], onb[j], nt))
            if note_d := dispersion_warning(disp[j]):
                notes.setdefault(pb.names[j], []).append(note_d)
        sep = []
        if suspect[j] or separation_suspected(beta=beta[j], fun=obj[j], vcov_note=note):
            m = mask[:, j]
            sep = separated_columns(pb.fam, d.X[m], pb.Y[m, j], pb.ntr[m], d.weights[m], d.x_names)
        if sep:  # as jaxmix.fit: infinite estimates, not converged, no standard errors
            st[j], vcov[j], note = SEPARATION_STATUS, np.nan, separation_message(sep)
        if note:
            notes.setdefault(pb.names[j], []).append(note)
    singular = ok & _is_singular_batch(np.nan_to_num(res.x[:, :nt], nan=1.0), tl, onb[:, :nt])
    method = "AGQ" if pb.nagq > 1 else "Laplace"

    def build(j: int) -> MixedResults:
        sub, used = outcome_design(d, mask[:, j], pb.Y[:, j], pb.names[j], pb.rhs)
        part, jj = parts[j // chunk], j % chunk

        def condvar():
            return [cv[uu] for cv, uu in zip(part.condvar(jj, nlev), used)]

        return MixedResults(
            formula=sub.parsed.formula, family=pb.family, link=pb.link, method=method, design=sub, beta=beta[j],
            vcov_beta=vcov[j], theta=theta[j], sigma=1.0, loglik=-obj[j] / 2.0, objective=float(obj[j]),
            n_params=p + nt + ndisp, converged=bool(st[j] == 0), singular=bool(singular[j]),
            optim=_optim(res, j, params0[j], cs, rs, st[j]), b=[bk[uu] for bk, uu in zip(part.b(jj, nlev), used)],
            _condvar_fn=condvar,
            extra={"nagq": pb.nagq, "trials": pb.ntr[mask[:, j]], "offset_column": pb.offset_column,
                   "dispersion": disp.get(j)})

    return Sweep(problem=pb, mask=mask, beta=beta, vcov_beta=vcov, theta_=theta, sigma_=np.where(ok, 1.0, np.nan),
                 loglik_=-obj / 2.0, objective_=obj, status_=st, nobs_=nobs, singular_=singular,
                 n_params=p + nt + ndisp, _build=build, compile_seconds=cs, run_seconds=rs, warnings=notes,
                 dispersion_=_dispersion_arrays(pb, disp))


# ---- no random effects: least squares or GLM per outcome ------------------------------------------
def fit_fixed_only(pb: Problem, mask, status, nobs, progress=None) -> Sweep:
    """Formulas without a bar term: ``jaxmix.fit``'s least-squares or GLM fit, outcome by outcome."""
    from .fit import fit_ols
    from .generalized import dispersion_glm, glm_irls

    d = pb.design
    k, p = len(pb.names), d.X.shape[1]
    fits: dict[int, MixedResults] = {}
    notes: dict = {}
    disp: dict = {}
    for j in np.flatnonzero(status == 0):
        name = pb.names[j]
        sub, _ = outcome_design(d, mask[:, j], pb.Y[:, j], name, pb.rhs)
        if pb.family == "gaussian":
            fits[j] = fit_ols(sub.parsed.formula, sub, "OLS")
            continue
        ntr = pb.ntr[mask[:, j]]
        rec = None
        if _has_disp(pb):
            beta0, phi0, dev0, vfull, conv0, separated = dispersion_glm(pb.fam, sub.X, sub.y, sub.weights, sub.offset)
            vcov0, rec = vfull[1:, 1:], dispersion_record(pb.fam, phi0, float(np.sqrt(vfull[0, 0])))
            disp[j] = rec
            if note_d := dispersion_warning(rec):
                notes.setdefault(name, []).append(note_d)
        else:  # on all rows, the outcome's missing ones with zero weight: the inputs of a GLMM sweep's
            # start for the same outcome (its single-level comparison), which glm_irls keeps
            m = mask[:, j]
            beta0, dev0, vcov0, conv0, separated = glm_irls(pb.fam, d.X, np.where(m, pb.Y[:, j], 0.0), pb.ntr,
                                                            d.weights * m, d.offset)
        if separated:
            notes.setdefault(name, []).append("fixed effects appear to be (quasi-)completely separated")
        fits[j] = MixedResults(
            formula=sub.parsed.formula, family=pb.family, link=pb.link, method="ML", design=sub, beta=beta0,
            vcov_beta=vcov0, theta=np.zeros(0), sigma=1.0, loglik=-dev0 / 2, objective=dev0,
            n_params=p + (rec is not None), converged=conv0, singular=False, optim=None, b=[],
            extra={"nagq": 1, "trials": ntr, "offset_column": pb.offset_column, "dispersion": rec})
    beta, vcov = _nan((k, p)), _nan((k, p, p))
    sigma, ll = _nan(k), _nan(k)
    st = status.copy()
    for j, r in fits.items():
        beta[j], vcov[j], sigma[j], ll[j] = r.beta, r.vcov_beta, r.sigma, r.loglik
        st[j] = 0 if r.converged else 1
    n_params = p + (1 if pb.family == "gaussian" or _has_disp(pb) else 0)
    return Sweep(problem=pb, mask=mask, beta=beta, vcov_beta=vcov, theta_=np.zeros((k, 0)), sigma_=sigma,
                 loglik_=ll, objective_=-2 * ll, status_=st, nobs_=nobs, singular_=np.zeros(k, dtype=bool),
                 n_params=n_params, _build=fits.__getitem__, warnings=notes, dispersion_=_dispersion_arrays(pb, disp))


def _dispersion_arrays(pb: Problem, records: dict):
    """(estimates, standard errors), each (k,), of the outcomes' dispersion parameters (NaN where an
    outcome has none); None for a family without one."""
    if not _has_disp(pb):
        return None
    k = len(pb.names)
    est, se = _nan(k), _nan(k)
    for j, r in records.items():
        est[j], se[j] = r["estimate"], r["se"]
    return est, se


# ---- outcome by outcome through jaxmix.fit (residual structures, aliased columns) -------------------
def fit_outcome_alone(pb: Problem, mask, j: int, dtype, max_iter, gtol) -> MixedResults:
    """``jaxmix.fit`` on outcome j's own rows of the data as given (its weights, offset and trials
    taken on the same rows, and ``variance=`` / ``correlation=`` of the sweep), in data order.
    JaxmixWarnings are silenced (the sweep reports status and notes); errors propagate."""
    import warnings

    import pandas as pd

    from ..errors import JaxmixWarning
    from .fit import fit

    name = pb.names[j]
    pos = pb.data.index.get_indexer(pb.design.rows)[mask[:, j]]
    dj = pb.data.iloc[pos].copy()
    y = pb.Y[mask[:, j], j]
    # the outcome under its own name, unless that name is a data column holding something else
    own = name not in dj.columns or np.array_equal(
        pd.to_numeric(dj[name], errors="coerce").to_numpy(dtype=float), y, equal_nan=True)
    label = name if name.isidentifier() and own else "__outcome"
    dj[label] = y
    kw = {k: (v if v is None or isinstance(v, str) else np.asarray(v)[pos]) for k, v in pb.args.items()}
    if pb.variance is not None or pb.correlation is not None:
        kw.update(variance=pb.variance, correlation=pb.correlation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JaxmixWarning)
        return fit(f"{label} ~ {pb.rhs}", dj, method=pb.method, family=pb.family, link=pb.link, nagq=pb.nagq,
                   dtype=dtype, max_iter=max_iter, gtol=gtol, **kw)


def fit_each(pb: Problem, mask, status, nobs, dtype, max_iter, gtol, progress=None, desc="fitting") -> Sweep:
    """Every good outcome fitted on its own by ``jaxmix.fit`` (:func:`fit_outcome_alone`): the route of
    Gaussian models with residual structures (``variance=``, ``correlation=``) or cs/ar1/diag random
    terms, whose criterion (:mod:`jaxmix.fitting.structured`) is built from each outcome's own
    cross-products.  An outcome whose fit raises a :class:`jaxmix.JaxmixError` (or fails numerically) gets
    status 16 with the message in ``sweep.warnings``; the others go on."""
    from ..status import Status

    d = pb.design
    k, p = len(pb.names), d.X.shape[1]
    fits: dict[int, MixedResults] = {}
    notes: dict = {}
    st = status.copy()
    todo = np.flatnonzero(status == 0)
    show = (len(todo) > 20) if progress is None else bool(progress)
    bar = progress_bar(len(todo), desc, quiet=not show, unit="outcome")
    try:
        for j in todo:
            try:
                fits[int(j)] = fit_outcome_alone(pb, mask, int(j), dtype, max_iter, gtol)
            except (JaxmixError, ArithmeticError, np.linalg.LinAlgError, ValueError) as exc:
                st[j] = int(Status.FIT_FAILED)
                notes.setdefault(pb.names[j], []).append(f"jaxmix.fit on this outcome failed: {exc}")
            bar.update(1)
    finally:
        bar.close()
    nt = len(next(iter(fits.values())).theta) if fits else 0
    beta, vcov, theta = _nan((k, p)), _nan((k, p, p)), _nan((k, nt))
    sigma, ll, obj = _nan(k), _nan(k), _nan(k)
    singular = np.zeros(k, dtype=bool)
    n_params = p + 1
    for j, r in fits.items():
        beta[j], vcov[j], theta[j], sigma[j], ll[j], obj[j] = r.beta, r.vcov_beta, r.theta, r.sigma, r.loglik, r.objective
        st[j] = fit_status(r)
        singular[j], n_params = r.singular, r.n_params
    return Sweep(problem=pb, mask=mask, beta=beta, vcov_beta=vcov, theta_=theta, sigma_=sigma, loglik_=ll,
                 objective_=obj, status_=st, nobs_=nobs, singular_=singular, n_params=n_params,
                 _build=fits.__getitem__, warnings=notes)
