"""``jaxmix.fit``: formula + data -> fitted results (least squares, LMM or GLMM)."""
from __future__ import annotations

import time
import warnings

import numpy as np

from ..core.newton import OPTIMIZER
from ..spec.covariance import is_singular, theta_layout
from ..spec.design import Design, build_design, check_nobs_vs_nre
from .. import runtime
from ..errors import JaxmixError, JaxmixWarning
from ..spec.formula import parse_formula
from ..status import status_message
from ..spec.options import check_fit_options, parse_dtype
from ..spec.residual import parse_correlation, parse_variance, spec_columns
from ..results.mixed import MixedResults, OptimSummary
from ..results.mixed import register_extension

__all__ = ["fit", "fit_ols"]

_METHODS = {"REML", "ML"}


def fit(formula: str, data, method: str | None = None, weights=None, family: str = "gaussian",
        link: str | None = None, nagq: int = 1, offset=None, trials: str | None = None,
        dtype=None, max_iter: int = 500, gtol: float = 1e-4, variance: str | None = None,
        correlation: str | None = None) -> MixedResults:
    """Fit a (generalised) linear mixed model by maximum likelihood.

    Args:
      formula: lme4-style formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.  Without a bar term
        the fit is ordinary (weighted) least squares through the same results object.
      data: a pandas DataFrame.
      method: ``"REML"`` (default for Gaussian) or ``"ML"``; ``"Laplace"`` or ``"AGQ"`` for GLMMs.
      weights: prior weights, a column name or an array.
      family, link, nagq, offset, trials: generalised models (binomial, poisson, negative_binomial,
        gamma); ``nagq`` (1 to 25 Gauss-Hermite points) and ``trials`` (binomial) are refused for a
        Gaussian model.  negative_binomial (NB2, log link) and gamma (links inverse (R's default), log,
        identity) estimate their shape by ML: ``res.dispersion``, ``res.dispersion_table``.
      dtype: ``"float64"`` (default, needed to match lme4) or ``"float32"`` (opt-in, faster on GPUs).
      max_iter, gtol: the optimiser's iteration limit; convergence tolerance on the largest absolute
        gradient entry of the objective (deviance units).  Bad values of any argument raise a
        :class:`jaxmix.JaxmixError` naming it (:func:`jaxmix.spec.options.check_fit_options`).
      variance, correlation: residual structures of a Gaussian model (:mod:`jaxmix.spec.residual`):
        ``variance="ident(f)"`` a residual SD per level of f; ``correlation="ar1(g)"``, ``"ar1(t | g)"``
        or ``"cs(g)"`` AR(1) / compound symmetry within the groups of g.  Random terms may carry
        glmmTMB's structures ``diag(...)``, ``cs(...)``, ``ar1(...)`` (:mod:`jaxmix.spec.re_structure`).

    Returns:
      :class:`jaxmix.MixedResults`.
    """
    runtime.start()
    # kept on the results for res.refit(y) and res.update(...)
    call = dict(formula=formula, data=data, method=method, weights=weights, family=family, link=link,
                nagq=nagq, offset=offset, trials=trials, dtype=dtype, max_iter=max_iter, gtol=gtol)
    fam = str(family).lower()
    opts = check_fit_options(fam, nagq=nagq, trials=trials, max_iter=max_iter, gtol=gtol)
    nagq, max_iter, gtol = opts["nagq"], opts["max_iter"], opts["gtol"]
    if fam != "gaussian":
        from .generalized import fit_glmm
        from ..spec.re_structure import check_plain_structures

        if variance is not None or correlation is not None:
            raise JaxmixError(f"variance= and correlation= are for Gaussian models; family is {fam!r}")
        check_plain_structures(parse_formula(formula), f"a {fam} GLMM")

        return with_call(fit_glmm(formula, data, family=fam, link=link, method=method or "Laplace", nagq=nagq,
                                  weights=weights, offset=offset, trials=trials, dtype=dtype, max_iter=max_iter,
                                  gtol=gtol), call)
    if link not in (None, "identity"):
        raise JaxmixError(f"unknown link {link!r} for family 'gaussian'; only 'identity'")
    method = "REML" if method is None else str(method).upper()
    if method not in _METHODS:
        raise JaxmixError(f"method must be 'REML' or 'ML' for a Gaussian model, got {method!r}")
    dt = parse_dtype(dtype)
    parsed = parse_formula(formula)
    from ..spec.re_structure import needs_structured_fit

    var_spec, cor_spec = parse_variance(variance), parse_correlation(correlation)
    design = build_design(parsed, data, weights=weights, offset=offset,
                          extra_columns=spec_columns(var_spec, cor_spec))
    if not needs_structured_fit(design.terms):  # lme4's check; cs/ar1 terms have two parameters each
        check_nobs_vs_nre(design)
    if not np.isfinite(design.y).all():
        raise JaxmixError(f"response {parsed.response!r} contains inf")
    if var_spec is not None or cor_spec is not None or needs_structured_fit(design.terms):
        if dt != np.float64:
            raise JaxmixError("structured covariances are fitted in float64 only")
        return with_call(_fit_structured(formula, design, data, method, var_spec, cor_spec, max_iter, gtol),
                         dict(call, variance=variance, correlation=correlation))
    if not parsed.is_mixed:
        return with_call(fit_ols(formula, design, method), call)
    return with_call(_fit_lmm(formula, design, method, dt, max_iter, gtol), call)


def with_call(res: MixedResults, call: dict) -> MixedResults:
    """``res`` with the arguments of the :func:`fit` call that made it (``res.extra["call"]``)."""
    res.extra["call"] = call
    return res




def _fit_lmm(formula, design: Design, method: str, dt, max_iter: int, gtol: float) -> MixedResults:
    from ..fitting.lmm import fit_lmm_arrays

    t0 = time.perf_counter()
    reml = method == "REML"
    p = design.X.shape[1]
    n = design.nobs
    if reml and n <= p:
        raise JaxmixError(f"REML needs more rows ({n}) than fixed effects ({p})")
    terms = design.terms
    tl = theta_layout(tuple(t.q for t in terms))
    fitted = fit_lmm_arrays([t.codes for t in terms], [t.nlevels for t in terms], [t.Z for t in terms],
                            design.X, design.y - design.offset, design.weights, reml, dt, gtol=gtol,
                            max_iter=max_iter)
    opt = fitted.opt
    theta = fitted.theta
    denom = n - p if reml else n
    sigma = float(np.sqrt(fitted.r2 / denom))
    RXinv = np.linalg.inv(fitted.RX) if p else np.zeros((0, 0))
    vcov = sigma**2 * RXinv.T @ RXinv

    def condvar():
        return [sigma**2 * c for c in fitted.condvar()]

    status = int(opt.status)
    converged = status == 0
    # singular as lme4's isSingular, on the scaled θ (Z columns of unit RMS): the same for intercepts
    singular = bool(np.any(opt.on_boundary)) or is_singular(opt.x, tl)
    grad = opt.grad  # in the scaled parameters θ̃ that the convergence test uses (jaxmix.fitting.lmm)
    if not converged:
        warnings.warn(f"model did not converge: {status_message(status)} "
                      f"(max|grad| = {np.max(np.abs(grad)) if grad.size else 0.0:.2e})", JaxmixWarning, stacklevel=3)
    optim = OptimSummary(theta_init=tl.init() * fitted.theta_scale, iterations=opt.n_iter,
                         evaluations=opt.n_eval, grad=grad, grad_norm=float(np.linalg.norm(grad)),
                         hess_min_eig=opt.hess_min_eig, status=status, message=status_message(status),
                         optimizer=OPTIMIZER, fit_seconds=time.perf_counter() - t0,
                         compile_seconds=fitted.compile_seconds)
    obj = float(opt.fun)
    return MixedResults(
        formula=formula, family="gaussian", link="identity", method=method, design=design,
        beta=fitted.beta, vcov_beta=vcov, theta=theta, sigma=sigma,
        loglik=-obj / 2.0, objective=obj, n_params=p + tl.size + 1, converged=converged,
        singular=singular, optim=optim, b=fitted.b, _condvar_fn=condvar,
    )


def _fit_structured(formula, design: Design, data, method: str, var_spec, cor_spec, max_iter: int,
                    gtol: float) -> MixedResults:
    """A Gaussian fit with random-term and/or residual structures (:mod:`jaxmix.fitting.structured`)."""
    import pandas as pd

    from ..spec.design import as_data_frame
    from ..fitting.structured import fit_structured_arrays

    t0 = time.perf_counter()
    reml = method == "REML"
    n, p = design.X.shape
    if reml and n <= p:
        raise JaxmixError(f"REML needs more rows ({n}) than fixed effects ({p})")
    terms = design.terms
    frame = as_data_frame(data).iloc[design.positions]
    groups = []
    for g in (t.group for t in terms):  # lme4's varcorr names: Subject, Subject.1, ...
        k = sum(1 for x in groups if x.split(".")[0] == g)
        groups.append(g if k == 0 else f"{g}.{k}")
    fitted = fit_structured_arrays([t.codes for t in terms], [t.nlevels for t in terms], [t.Z for t in terms],
                                   [t.term.structure for t in terms], design.X, design.y - design.offset,
                                   design.weights, frame, var_spec, cor_spec, reml, groups=groups,
                                   columns=[t.columns for t in terms], gtol=gtol, max_iter=max_iter)
    opt = fitted.opt
    status = int(opt.status)
    converged = status == 0
    if not converged:
        warnings.warn(f"model did not converge: {status_message(status)}", JaxmixWarning, stacklevel=3)
    grad = opt.grad
    optim = OptimSummary(theta_init=np.zeros(0), iterations=opt.n_iter, evaluations=opt.n_eval, grad=grad,
                         grad_norm=float(np.linalg.norm(grad)), hess_min_eig=opt.hess_min_eig, status=status,
                         message=status_message(status), optimizer=OPTIMIZER,
                         fit_seconds=time.perf_counter() - t0, compile_seconds=0.0)
    table = pd.DataFrame(fitted.table, columns=["group", "var1", "var2", "kind", "estimate", "se"])
    info = {"variance": var_spec.text if var_spec else None, "correlation": cor_spec.text if cor_spec else None,
            "terms": [t.term.structure for t in terms], "table": table, "vcov": fitted.vcov_table,
            "sd_by_stratum": dict(zip(fitted.strata_labels, fitted.sd_by_stratum)) if var_spec else None,
            "rho": fitted.rho, "psi": fitted.psi, "phi": fitted.phi, "row_ratio": fitted.row_ratio,
            "timings": fitted.timings, "cor_kind": fitted.cor_kind, "cor_groups": fitted.cor_groups,
            "cor_times": fitted.cor_times, "satterthwaite": fitted.satterthwaite}
    obj = fitted.objective
    return MixedResults(
        formula=formula, family="gaussian", link="identity", method=method, design=design,
        beta=fitted.beta, vcov_beta=fitted.vcov, theta=fitted.theta, sigma=fitted.sigma,
        loglik=-obj / 2.0, objective=obj, n_params=p + fitted.n_cov_params + 1, converged=converged,
        singular=bool(np.any(opt.on_boundary)), optim=optim, b=fitted.b, _condvar_fn=fitted.condvar,
        extra={"structure": info},
    )


def fit_ols(formula, design: Design, method: str) -> MixedResults:
    """Weighted least squares through the same results object (the 'traditional solution')."""
    X, y, w = design.X, design.y - design.offset, design.weights
    n, p = X.shape
    sw = np.sqrt(w)
    Q, R = np.linalg.qr(X * sw[:, None])
    beta = np.linalg.solve(R, Q.T @ (y * sw))
    rss = float(np.sum(w * (y - X @ beta) ** 2))
    sigma = float(np.sqrt(rss / (n - p))) if n > p else float("nan")
    Rinv = np.linalg.inv(R)
    vcov = sigma**2 * Rinv @ Rinv.T
    ldW = float(np.sum(np.log(w[w > 0])))
    loglik = 0.5 * ldW - 0.5 * n * (np.log(2 * np.pi * rss / n) + 1.0)  # ML, as R's logLik.lm
    return MixedResults(
        formula=formula, family="gaussian", link="identity", method="OLS", design=design, beta=beta,
        vcov_beta=vcov, theta=np.zeros(0), sigma=sigma, loglik=loglik, objective=-2 * loglik,
        n_params=p + 1, converged=True, singular=False, optim=None, b=[],
    )


# the results' methods of these names (jaxmix.results.mixed.register_extension)
register_extension("fit", fit)
