"""What a fit's structured covariances allow downstream (a fit's ``extra["structure"]``, set by
:func:`jaxmix.fit` for models with ``variance=``/``correlation=`` or cs/ar1/diag-over-a-factor terms).

The lme4-based inference (Kenward-Roger df, likelihood profiles, ML refits, the parametric
bootstrap's batched refits) differentiates or refits lme4's model Ω = σ²ΛΛ′, W = σ²diag(1/w); for a structured
fit it would give silently wrong numbers, so it is refused with a clear error instead.
"""
from __future__ import annotations

from ..errors import JaxmixError

__all__ = ["structure_info", "has_residual_structure", "refuse_structured"]


def structure_info(res) -> dict | None:
    """The fit's structure record (variance, correlation, term structures, parameter table) or None."""
    return res.extra.get("structure") if isinstance(getattr(res, "extra", None), dict) else None


def has_residual_structure(res) -> bool:
    info = structure_info(res)
    return bool(info) and (info.get("variance") is not None or info.get("correlation") is not None)


def refuse_structured(res, what: str, instead: str = "") -> None:
    """A JaxmixError when ``res`` has structured covariances and ``what`` does not handle them."""
    info = structure_info(res)
    if not info:
        return
    parts = [f"{k}={info[k]!r}" for k in ("variance", "correlation") if info.get(k)]
    parts += [f"{s}(...) random term" for s in dict.fromkeys(info.get("terms", [])) if s in ("cs", "ar1", "diag")]
    raise JaxmixError(f"{what} is not available for a fit with structured covariances ({', '.join(parts)})"
                      + (f"; {instead}" if instead else ""))
