"""lme4's ``refit()`` and ``update()``: fit the same model again with a new response or changed pieces.

The fitting function is passed in (``res.refit`` gives it :func:`jaxmix.fit`), so this module stays
outside the fit's import graph.  ``update_formula`` implements R's ``update.formula`` for the common
cases: ``.`` on either side stands for the old side, ``+ term`` adds a term, ``- term`` removes one
(a fixed term such as ``Days`` or ``x:z``, or a bar term such as ``(1 | g)``), ``- 1`` / ``+ 0``
drop the intercept.  Terms are compared as written, without spaces; R's expansion of ``a*b`` into
``a + b + a:b`` is not done (write the pieces).
"""
from __future__ import annotations

import re

import numpy as np

from ..spec.design import as_data_frame
from ..errors import JaxmixError
from ..spec.formula import split_top

__all__ = ["update_formula", "refit_model", "update_model", "FIT_ARGS"]

FIT_ARGS = ("formula", "data", "method", "weights", "family", "link", "nagq", "offset", "trials", "dtype",
            "max_iter", "gtol", "variance", "correlation")

_RESPONSE = "__jaxmix_refit_y"


def _signed_terms(rhs: str) -> list[tuple[str, str]]:
    """``"a + (1 | g) - b"`` -> [("+", "a"), ("+", "(1 | g)"), ("-", "b")], split at top level only."""
    out, cur, sign, depth = [], [], "+", 0
    for ch in rhs:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if depth == 0 and ch in "+-":
            if "".join(cur).strip():
                out.append((sign, "".join(cur).strip()))
            elif ch == "-" and sign == "-":
                raise JaxmixError(f"cannot read '--' in formula right-hand side {rhs!r}")
            sign, cur = ch, []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        out.append((sign, "".join(cur).strip()))
    return out


def _key(term: str) -> str:
    return re.sub(r"\s+", "", term)


def update_formula(old: str, new: str) -> str:
    """R's ``update(old, new)`` for formulas: ``update_formula("y ~ x + (1|g)", ". ~ . - x + z")``
    gives ``"y ~ (1|g) + z"``.  A term to remove that is not in the formula is an error naming it."""
    old_sides, new_sides = split_top(old, "~"), split_top(new, "~")
    if len(new_sides) != 2:
        raise JaxmixError(f"update formula {new!r} must contain one '~' (e.g. '. ~ . + x')")
    old_lhs, old_rhs = (old_sides[0].strip(), old_sides[1]) if len(old_sides) == 2 else ("", old_sides[0])
    lhs = new_sides[0].strip()
    lhs = old_lhs if lhs in ("", ".") else lhs
    terms: list[tuple[str, str]] = []
    for sign, tok in _signed_terms(new_sides[1]):
        if tok == ".":
            pieces = _signed_terms(old_rhs)
            terms += [(s, t) for s, t in pieces] if sign == "+" else []
            if sign == "-":
                raise JaxmixError("'- .' is not supported in an update formula")
            continue
        if sign == "+":
            if tok == "0":
                terms = [(s, t) for s, t in terms if t != "1"] + [("+", "0")]
            elif _key(tok) not in {_key(t) for s, t in terms if s == "+"}:
                terms.append(("+", tok))
            continue
        if tok in ("1", "0"):
            terms = [(s, t) for s, t in terms if t != "1"] + ([("-", "1")] if tok == "1" else [])
            continue
        before = len(terms)
        terms = [(s, t) for s, t in terms if not (s == "+" and _key(t) == _key(tok))]
        if len(terms) == before:
            have = ", ".join(t for s, t in terms if s == "+")
            raise JaxmixError(f"cannot remove term {tok!r}: it is not in the formula {old!r} (terms: {have})")
    plus = [t for s, t in terms if s == "+"]
    minus = [t for s, t in terms if s == "-"]
    rhs = " + ".join(plus) if plus else ("1" if not minus else "")
    rhs += "".join(f" - {t}" for t in minus)
    rhs = rhs.strip() or "1"
    return f"{lhs} ~ {rhs}" if lhs else f"~ {rhs}"


def _call(res) -> dict:
    call = res.extra.get("call")
    if call is None:
        raise JaxmixError("these results do not keep the call that made them (fit with jaxmix.fit to refit or update)")
    return dict(call)


def _rows(arg, positions):
    """A per-row argument restricted to the rows the fit used (a column name stays a name)."""
    if arg is None or isinstance(arg, str):
        return arg
    return np.asarray(arg, dtype=float).reshape(-1)[positions]


def refit_model(res, y, fit):
    """The model fitted again to a new response ``y`` (one value per row the fit used; lme4's ``refit``).

    ``y`` is on the scale of the fitted response: the transformed value for ``log(y) ~ …``, the number of
    successes for a binomial with trials (the trials, prior weights and offsets stay).  The result is
    the fit that ``fit`` gives on the data with the response replaced by ``y``."""
    call = _call(res)
    d = res.design
    y = np.asarray(getattr(y, "values", y), dtype=float).reshape(-1)
    if y.shape[0] != d.nobs:
        raise JaxmixError(f"refit needs one response value per row the fit used ({d.nobs}), got {y.shape[0]}")
    if not np.isfinite(y).all():
        raise JaxmixError(f"the new response for refit has {int((~np.isfinite(y)).sum())} missing or infinite "
                          "value(s); refit keeps the fitted rows, so every value must be finite")
    pos = d.positions if d.positions is not None else np.arange(d.nobs)
    data = as_data_frame(call["data"]).iloc[pos].copy()
    data[_RESPONSE] = y
    rhs = split_top(call["formula"], "~")[-1]
    call.update(formula=f"{_RESPONSE} ~ {rhs}", data=data, offset=_rows(call["offset"], pos))
    if res.family == "binomial":
        # the trials (from trials=, cbind(k, n - k) or a proportion with weights) and prior weights as fitted
        call.update(trials=np.asarray(res.extra.get("trials", np.ones(d.nobs)), dtype=float),
                    weights=np.asarray(d.weights, dtype=float))
    else:
        call["weights"] = _rows(call["weights"], pos)
    if res.family == "binomial" and isinstance(call["trials"], np.ndarray):
        data["__jaxmix_trials"] = call["trials"]
        call["trials"] = "__jaxmix_trials"
    out = fit(**call)
    out.formula = res.formula
    return out


def update_model(res, fit, formula=None, data=None, **changes):
    """The model fitted again with a new formula (R's update syntax), data or other ``jaxmix.fit``
    arguments (``method="ML"``, ``family=…``)."""
    call = _call(res)
    bad = sorted(set(changes) - set(FIT_ARGS))
    if bad:
        raise JaxmixError(f"update got unknown argument(s) {', '.join(map(repr, bad))}; "
                          f"jaxmix.fit takes {', '.join(FIT_ARGS)}")
    if formula is not None:
        call["formula"] = update_formula(call["formula"], formula)
    if data is not None:
        call["data"] = data
    call.update(changes)
    return fit(**call)
