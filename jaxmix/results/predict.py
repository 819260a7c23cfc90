"""Predictions with lme4's ``re.form`` and confidence / prediction intervals.

η₀ = x₀′β̂ + offset + Σ_{k ∈ re_form} z₀ₖ′ b̂ₖ[level], with

* ``re_form=None``: every random term (lme4's default); ``"NA"`` / ``"~0"``: the fixed part only;
  a formula such as ``"~(1|Subject)"``: only the random terms it names (matched to the fit's terms);
* new data with a level the fit never saw: b = 0 for it, with a :class:`JaxmixWarning` naming the
  factor and levels (lme4 stops unless ``allow.new.levels = TRUE``, then also uses b = 0).

Intervals (normal quantile z = Φ⁻¹((1 + level)/2), on the link scale, mapped through the inverse
link for ``type="response"``):

* ``"confidence"``: se² = x₀′ Var(β̂) x₀, the fixed part only (what emmeans reports);
* ``"prediction"`` (Gaussian only): se² = x₀′ Var(β̂) x₀ + σ² + Σ_{k ∈ re_form} z₀ₖ′ Cₖ z₀ₖ, where
  Cₖ is the conditional covariance of the level's b (lme4's ``condVar``) for a level seen in the fit
  and the unconditional covariance Ωₖ for a new level.  Left out: the covariance between β̂ and b̂
  and the conditional covariances between different terms (crossed factors), as in
  ``merTools::predictInterval``'s default, so the interval can be off by those terms.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd

from ..spec.design import fixed_matrix_new, offset_new, term_matrix_new
from ..errors import JaxmixError, JaxmixWarning
from ..spec.formula import parse_formula
from ..dists import norm_ppf

__all__ = ["select_terms", "predict_frame", "INTERVALS"]

INTERVALS = (None, "confidence", "prediction")


def _norm(expr: str) -> str:
    return re.sub(r"\s+", "", expr)


def select_terms(design, re_form) -> list[int]:
    """Indices of the fit's random terms that ``re_form`` keeps (see the module docstring)."""
    terms = design.terms
    if re_form is None:
        return list(range(len(terms)))
    if re_form is False or (isinstance(re_form, float) and np.isnan(re_form)):
        return []
    if not isinstance(re_form, str):
        raise JaxmixError(f"re_form must be None, 'NA', '~0' or a formula string, got {re_form!r}")
    text = re_form.strip()
    if text.upper() == "NA" or _norm(text) in ("~0", "~-1", "0"):
        return []
    if "~" not in text:
        text = "~" + text
    parsed = parse_formula(text)
    if not parsed.random:
        raise JaxmixError(f"re_form {re_form!r} names no random term; use '~0' (or 'NA') for the fixed part only")
    keep = []
    for rt in parsed.random:
        hit = [k for k, t in enumerate(terms)
               if t.term.factors == rt.factors and _norm(t.term.expr) == _norm(rt.expr)]
        if not hit:
            have = ", ".join(dict.fromkeys(t.term.text for t in terms))
            raise JaxmixError(f"random term ({rt.expr} | {rt.group}) of re_form {re_form!r} is not in the "
                              f"model; its random terms are {have}")
        keep += [k for k in hit if k not in keep]
    return sorted(keep)


def _pieces(res, newdata, keep):
    """(X₀, offset, [(k, Z₀ₖ, codes)]) for the fit's rows (newdata None) or new data."""
    d = res.design
    if newdata is None:
        return d.X, d.offset, [(k, d.terms[k].Z, np.asarray(d.terms[k].codes)) for k in keep]
    if not isinstance(newdata, pd.DataFrame):
        newdata = pd.DataFrame(newdata)
    X = fixed_matrix_new(d, newdata)
    off = offset_new(d, newdata)
    out = []
    for k in keep:
        t = d.terms[k]
        Z, codes = term_matrix_new(t, newdata)
        new = codes < 0
        if new.any():
            lev = pd.unique(pd.Series([":".join(map(str, r)) for r in
                                       newdata.loc[new, list(t.term.factors)].itertuples(index=False)]))
            shown = ", ".join(map(repr, lev[:8])) + (" ..." if len(lev) > 8 else "")
            warnings.warn(f"new data have level(s) {shown} of grouping factor {t.group!r} not seen in the fit; "
                          "their random effects are set to 0 (lme4: allow.new.levels = TRUE)", JaxmixWarning,
                          stacklevel=4)
        out.append((k, Z, codes))
    return X, off, out


def predict_frame(res, newdata=None, re_form=None, interval=None, level: float = 0.95,
                  type: str = "response", condvar_fn=None):
    """η₀ (or μ₀) for ``newdata``; with ``interval`` a DataFrame fit, se, lower, upper (see module doc).

    The ``se`` column is on the link scale.  ``condvar_fn``: returns the per-term conditional covariances (needed for prediction intervals).
    """
    from ..spec.families import get_family

    if interval not in INTERVALS:
        raise JaxmixError(f"interval must be None, 'confidence' or 'prediction', got {interval!r}")
    if type not in ("link", "response"):
        raise JaxmixError(f"type must be 'link' or 'response', got {type!r}")
    if not 0.0 < float(level) < 1.0:
        raise JaxmixError(f"level must lie between 0 and 1, got {level!r}")
    d = res.design
    if newdata is not None and not isinstance(newdata, pd.DataFrame):
        newdata = pd.DataFrame(newdata)
    keep = select_terms(d, re_form)
    X, off, zs = _pieces(res, newdata, keep)
    eta = X @ res.beta + off
    for k, Z, codes in zs:
        bk = np.asarray(res.b[k])
        eta = eta + np.einsum("nq,nq->n", Z, np.where((codes >= 0)[:, None], bk[np.maximum(codes, 0)], 0.0))
    gaussian = res.family == "gaussian"
    inv = (lambda e: e) if (gaussian or type == "link") else (
        lambda e: np.asarray(get_family(res.family, res.link).linkinv(e), dtype=float))
    if interval is None:
        return inv(eta)
    var = np.einsum("np,pq,nq->n", X, res.vcov_beta, X)
    if interval == "prediction":
        if not gaussian:
            raise JaxmixError(f"interval='prediction' is for Gaussian models; for family {res.family!r} use "
                              "interval='confidence' (or res.simulate for predictive draws)")
        var = var + res.sigma**2
        if zs:
            cv = condvar_fn() if condvar_fn is not None else None
            if cv is None:
                raise JaxmixError("this fit has no conditional variances for a prediction interval")
            omegas = res.term_covariances()
            for k, Z, codes in zs:
                C = np.where((codes >= 0)[:, None, None], np.asarray(cv[k])[np.maximum(codes, 0)], omegas[k][None])
                var = var + np.einsum("nq,nqr,nr->n", Z, C, Z)
    se = np.sqrt(np.maximum(var, 0.0))
    z = norm_ppf(0.5 + float(level) / 2.0)
    index = d.rows if newdata is None else getattr(newdata, "index", None)
    return pd.DataFrame({"fit": inv(eta), "se": se, "lower": inv(eta - z * se), "upper": inv(eta + z * se)},
                        index=index)
