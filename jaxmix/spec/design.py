"""Data -> response, fixed-effects matrix X and random-effect terms, reusable on new data.

The fixed part goes through formulaic (treatment coding, reference = first sorted level); each random
term's columns too, and its grouping factor is built from the group expression.  Rows with a missing
value in any used column are dropped and counted (lme4's ``na.omit``).  The fitted specs are kept so that
new data get the same columns and levels.
"""
from __future__ import annotations

import ast
import difflib
import functools
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import formulaic
from formulaic import Formula

from ..errors import JaxmixError, JaxmixWarning
from .formula import ParsedFormula, RandomTerm, split_top

__all__ = ["Term", "Design", "build_design", "term_matrix_new", "fixed_matrix_new", "as_data_frame",
           "check_nobs_vs_nre", "row_values", "split_offsets", "offset_new"]


@dataclass
class Term:
    """One random-effect term after construction.

    ``Z`` holds the term's q columns per row (not the n x levels matrix); the level of row i is
    ``codes[i]``, so row i of the full Z has ``Z[i]`` at columns ``codes[i]*q : codes[i]*q + q``.
    ``keys[k]`` is level k as the tuple of its factors' values (as text); ``levels[k]`` joins them with
    ':' as lme4 prints them, which can coincide for different levels (``"p:q"``/``"t"`` and
    ``"p"``/``"q:t"``), so new data are matched on the keys.
    """

    term: RandomTerm
    group: str
    columns: list[str]
    levels: list[str]
    codes: np.ndarray
    Z: np.ndarray
    spec: object = field(repr=False, default=None)
    keys: list[tuple[str, ...]] | None = field(repr=False, default=None)

    @property
    def q(self) -> int:
        return self.Z.shape[1]

    @property
    def nlevels(self) -> int:
        return len(self.levels)


@dataclass
class Design:
    """Everything a fit needs from the data, with the rows actually used."""

    parsed: ParsedFormula
    y: np.ndarray | None
    X: np.ndarray
    x_names: list[str]
    terms: list[Term]
    weights: np.ndarray
    offset: np.ndarray
    rows: np.ndarray  # index labels of the data rows used
    n_dropped: int
    fixed_spec: object = field(repr=False, default=None)
    dropped_columns: list[str] = field(default_factory=list)
    positions: np.ndarray | None = None  # 0-based positions of the rows used (the index may repeat labels)
    # how the offset was given, to rebuild it on new data: the offset(...) expressions of the formula,
    # the offset= column name, and whether offset= was an array (which new data cannot supply)
    offset_terms: tuple[str, ...] = ()
    offset_column: str | None = None
    offset_array: bool = False

    @property
    def nobs(self) -> int:
        return self.X.shape[0]


def _python_names(code: str) -> set[str]:
    """Names a Python factor expression reads as values (not called functions or module prefixes)."""
    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError:
        return set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            skip.add(id(node.func))
        if isinstance(node, ast.Attribute):
            skip.add(id(node.value))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in skip}


def _variables(expr: str, data: pd.DataFrame | None = None) -> set[str]:
    """Data columns a formula part uses, read off its factors.

    formulaic's ``required_variables`` is not used: it leaves out the arguments of stateful transforms
    (``center(x)``, ``poly(x, 2)``) and reads a dotted column name (``x.1``, R's habit) as attribute
    access on ``x``.  Here a lookup factor is a column name as written; a Python factor uses the names
    it reads as values (not the functions it calls, nor module prefixes such as ``np.``).
    """
    try:
        formula = Formula(expr)
        factors = [f for term in formula for f in term.factors]
    except Exception as exc:  # formulaic raises many kinds of parse errors
        raise JaxmixError(f"cannot read the formula part {expr!r}: {exc}") from None
    names: set[str] = set()
    for f in factors:
        method = str(getattr(f.eval_method, "value", f.eval_method))
        if method == "lookup":
            names.add(str(f.expr))
        elif method == "python":
            names |= _python_names(str(f.expr))
    return names


def _check_columns(data: pd.DataFrame, names: set[str], where: str) -> None:
    for name in sorted(names):
        if name not in data.columns:
            raise JaxmixError(f"column {name!r} used in {where} is not in the data{_column_hint(name, data)}")
        if isinstance(data[name], pd.DataFrame):
            raise JaxmixError(f"the data have {data[name].shape[1]} columns named {name!r} (used in {where}); "
                              "rename them so that each name is unique")


def as_data_frame(data) -> pd.DataFrame:
    """The model data as a pandas DataFrame.

    Accepts a pandas DataFrame, a polars DataFrame (converted column by column, without pyarrow), a
    numpy structured or record array, or a dict of columns; anything else (a plain 2-D array, a list)
    has no column names for a formula to use and is an error.
    """
    if isinstance(data, pd.DataFrame):
        return data
    if type(data).__module__.split(".")[0] == "polars" and hasattr(data, "to_dict"):
        return pd.DataFrame(data.to_dict(as_series=False))
    if isinstance(data, np.ndarray) and data.dtype.names:
        return pd.DataFrame(data.reshape(-1) if data.ndim > 1 else data)
    if isinstance(data, dict):
        try:
            return pd.DataFrame(data)
        except Exception as exc:
            raise JaxmixError(f"cannot make a data frame from the dict given as data: {exc}") from None
    shape = f" of shape {data.shape}" if isinstance(data, np.ndarray) else ""
    raise JaxmixError(
        f"data must be a pandas DataFrame (or a polars DataFrame, a numpy record array or a dict of "
        f"columns) with named columns, got {type(data).__name__}{shape}"
    )


def _column_hint(name: str, data: pd.DataFrame) -> str:
    """A hint for a missing column: the columns with the closest names."""
    cols = [str(c) for c in data.columns]
    close = difflib.get_close_matches(name, cols, n=3)
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""


def _sort_key_values(values: pd.Series) -> list:
    uniq = pd.unique(values)
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return sorted(uniq)
    return sorted(uniq, key=lambda v: str(v))


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def grouping_factor(data: pd.DataFrame, factors: tuple[str, ...]) -> tuple[list[str], np.ndarray, list[tuple]]:
    """Levels (labels joined by ':'), integer codes per row, and the sorted level tuples.

    Levels are the distinct tuples of the factors' values, never the joined labels: ``("p:q", "t")``
    and ``("p", "q:t")`` are two levels (with the same label)."""
    cols = [data[f] for f in factors]
    fast = _grouping_codes(cols)
    if fast is not None:
        return fast
    keys = list(zip(*[c.tolist() for c in cols]))
    orders = []
    for c in cols:
        vals = _sort_key_values(c)
        orders.append({v: i for i, v in enumerate(vals)})
    uniq = sorted(set(keys), key=lambda t: tuple(o[v] for o, v in zip(orders, t)))
    index = {t: i for i, t in enumerate(uniq)}
    codes = np.fromiter((index[t] for t in keys), dtype=np.int32, count=len(keys))
    labels = [":".join(_fmt(v) for v in t) for t in uniq]
    return labels, codes, uniq


def _grouping_codes(cols: list[pd.Series]):
    """:func:`grouping_factor` by codes: each factor's values coded in its sorted order, the rows' tuples
    ranked by np.unique factor by factor (the same levels, order and codes as the tuples' sort, in
    vectorised passes); None where a value does not map back to its own sorted values (mixed types)."""
    codes, vals = [], []
    for c in cols:
        v = _sort_key_values(c)
        cats = pd.Index(v, dtype=object) if len(set(map(type, v))) > 1 else v  # mixed types stay objects
        k = pd.Categorical(c, categories=cats).codes.astype(np.int64)
        if len(v) == 0 or np.any(k < 0):
            return None
        codes.append(k)
        vals.append(v)
    # the rank of each row's tuple of the factors so far, one factor at a time: a rank below n times a
    # code below n never overflows (one combined code of all factors did, past 2⁶³ combinations)
    inv = np.zeros(len(cols[0]), dtype=np.int64)
    for k, v in zip(codes, vals):
        inv = np.unique(inv * len(v) + k, return_inverse=True)[1].reshape(-1)
    first = np.unique(inv, return_index=True)[1]  # a row of each level
    uniq = [tuple(v[k[i]] for v, k in zip(vals, codes)) for i in first.tolist()]
    labels = [":".join(_fmt(x) for x in t) for t in uniq]
    return labels, inv.astype(np.int32), uniq


def level_keys(data: pd.DataFrame, factors: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Each row's grouping level as the tuple of its factors' values as text (what new data match on)."""
    return [tuple(_fmt(v) for v in t) for t in zip(*[data[f].tolist() for f in factors])]


def _check_finite(mm: pd.DataFrame, frame: pd.DataFrame, where: str) -> None:
    """A column a transform made infinite (``log(z)`` at z = 0) is an error naming it, as a raw inf is."""
    vals = mm.to_numpy(dtype=float)
    bad = ~np.isfinite(vals)
    if bad.any():
        i, j = (int(k[0]) for k in np.nonzero(bad))
        what = "NaN" if np.isnan(vals[i, j]) else ("-inf" if vals[i, j] < 0 else "inf")
        more = int(bad[:, j].sum()) - 1
        raise JaxmixError(f"column {str(mm.columns[j])!r} of {where} contains {what} (data row "
                          f"{frame.index[i]!r}{f' and {more} more' if more else ''})")


def check_nobs_vs_nre(design: Design) -> None:
    """lme4's ``check.nobs.vs.nRE`` for linear mixed models: more observations than random effects.

    Each term needs nobs > levels * q, or the random-effects parameters and the residual variance
    cannot both be estimated; lmer stops with this message (glmer does not check by default).
    """
    n = design.nobs
    for t in design.terms:
        nre = t.nlevels * t.q
        if n <= nre:
            raise JaxmixError(
                f"number of observations (={n}) <= number of random effects (={nre}) for term "
                f"({t.term.expr} | {t.group}); the random-effects parameters and the residual variance "
                "(or scale parameter) are probably unidentifiable"
            )


def _numeric_checks(frame: pd.DataFrame, where: str) -> None:
    for col in frame.columns:
        vals = frame[col]
        if pd.api.types.is_numeric_dtype(vals) and not pd.api.types.is_bool_dtype(vals):
            arr = vals.to_numpy(dtype=float)
            if np.isinf(arr).any():
                raise JaxmixError(f"column {col!r} used in {where} contains inf")


@functools.lru_cache(maxsize=1)
def _intercept_spec():
    """formulaic's model spec of the formula ``1`` (a column of ones named ``Intercept``; it reads no
    data column, so one spec serves every intercept-only random term)."""
    return formulaic.model_matrix("1", pd.DataFrame(index=range(1)), output="pandas").model_spec


def _model_matrix(expr: str, data: pd.DataFrame, where: str):
    try:
        mm = formulaic.model_matrix(expr, data, na_action="raise", output="pandas")
    except Exception as exc:
        missing = re.search(r"name '([^']+)' is not defined", str(exc))
        if missing and missing.group(1) not in data.columns:
            raise JaxmixError(f"column {missing.group(1)!r} used in {where} is not in the data"
                              f"{_column_hint(missing.group(1), data)}") from None
        raise JaxmixError(f"cannot build {where} from {expr!r}: {exc}") from None
    return mm


def drop_aliased(X: np.ndarray, names: list[str], tol: float = 1e-7) -> tuple[np.ndarray, list[str], list[str]]:
    """Drop columns of X that are linear combinations of earlier ones (lme4's rule).

    Like R's ``qr()`` (LINPACK ``dqrdc2``, limited pivoting) as used by lme4's ``chkRank.drop.cols``:
    columns are taken left to right and a column is dropped when the part of it orthogonal to the
    columns kept so far has norm below ``tol`` times its own norm, so the *later* of two aliased columns
    goes (``y ~ x + x2`` with ``x2 = 2 x`` drops ``x2``).
    """
    p = X.shape[1]
    if p == 0:
        return X, names, []
    norms = np.linalg.norm(X, axis=0)
    # X = QR with Q orthonormal, so the columns of R have the dependencies (and the norms) of the
    # columns of X; scaling the columns first keeps the QR's rounding small for every column
    R = np.linalg.qr(X / np.where(norms > 0, norms, 1.0), mode="r")
    Q = np.zeros((R.shape[0], 0))
    keep: list[int] = []
    for j in range(p):
        if norms[j] == 0.0:
            continue
        v = R[:, j]
        norm0 = float(np.linalg.norm(v))
        for _ in range(2):  # Gram-Schmidt with one re-orthogonalisation
            v = v - Q @ (Q.T @ v)
        norm = float(np.linalg.norm(v))
        if norm > tol * norm0:
            Q = np.column_stack([Q, v / norm])
            keep.append(j)
    if len(keep) == p:
        return X, names, []
    kept = set(keep)
    dropped = [names[j] for j in range(p) if j not in kept]
    return X[:, keep], [names[j] for j in keep], dropped


def build_design(
    parsed: ParsedFormula,
    data: pd.DataFrame,
    weights=None,
    offset=None,
    require_response: bool = True,
    check_nlevels: bool = True,
    extra_columns: tuple[str, ...] = (),
) -> Design:
    """Build y, X and the random terms from ``data``.

    Args:
      parsed: the parsed formula.
      data: a pandas DataFrame (or what :func:`as_data_frame` accepts).
      weights, offset: a column name or an array of length ``len(data)``.
      require_response: whether the formula must name a response.
      check_nlevels: lme4's LMM check that every grouping factor has fewer levels than rows.
      extra_columns: more columns whose missing values drop a row (e.g. a trials column).
    """
    data = as_data_frame(data)
    if parsed.response is None and require_response:
        raise JaxmixError(f"formula {parsed.formula!r} has no response on the left of '~'")

    used: set[str] = set()
    resp_vars = _variables(parsed.response, data) if parsed.response else set()
    _check_columns(data, resp_vars, "the response")
    fixed_expr, offset_terms = split_offsets(parsed.fixed)
    fixed_vars = _variables(fixed_expr, data)
    _check_columns(data, fixed_vars, "the fixed effects")
    used |= resp_vars | fixed_vars
    for t in parsed.random:
        tv = _variables(t.expr, data)
        _check_columns(data, tv, f"random term {t.text}")
        _check_columns(data, set(t.factors), f"the grouping factor of {t.text}")
        used |= tv | set(t.factors)
    for c in extra_columns:
        _check_columns(data, {c}, "the model")
        used.add(c)

    w_arr = row_values(weights, data, "weights")
    o_arr = row_values(offset, data, "offset")
    for expr in offset_terms:
        used |= _offset_columns(expr, data, "the data")
        vals = _offset_values(expr, data, "the data")
        o_arr = vals if o_arr is None else o_arr + vals
    cols = [c for c in data.columns if c in used]
    frame = data[cols]
    keep = ~frame.isna().any(axis=1).to_numpy()
    for arr, name in ((w_arr, "weights"), (o_arr, "offset")):
        if arr is not None:
            keep &= ~np.isnan(arr)
    n_dropped = int((~keep).sum())
    if keep.sum() == 0:
        counts = {c: int(frame[c].isna().sum()) for c in frame.columns}
        for arr, name in ((w_arr, "weights"), (o_arr, "offset")):
            if arr is not None:
                counts[name] = int(np.isnan(arr).sum())
        worst = ", ".join(f"{c!r} ({k} of {len(frame)} missing)"
                          for c, k in sorted(counts.items(), key=lambda it: -it[1]) if k)
        raise JaxmixError(
            "no rows left after dropping rows with missing values in the model's columns: "
            + (worst or f"the data has {len(frame)} rows")
        )
    frame = frame.loc[keep]
    positions = np.flatnonzero(keep)
    _numeric_checks(frame, "the model")

    y = None
    if parsed.response:
        y = _response(parsed.response, frame)

    fixed_mm = _model_matrix(fixed_expr, frame, "the fixed effects")
    _check_finite(fixed_mm, frame, "the fixed effects")
    X = fixed_mm.to_numpy(dtype=float)
    x_names = [str(c) for c in fixed_mm.columns]
    X, x_names, dropped = drop_aliased(X, x_names)
    if dropped:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient: dropping column(s) {', '.join(dropped)}",
            JaxmixWarning,
            stacklevel=3,
        )

    n = X.shape[0]
    terms: list[Term] = []
    for rt in parsed.random:
        if rt.expr.strip() == "1":  # (1 | g): formulaic's column of ones without its ~5 ms per term
            columns, Z, spec = ["Intercept"], np.ones((n, 1)), _intercept_spec()
        else:
            mm = _model_matrix(rt.expr, frame, f"random term {rt.text}")
            if mm.shape[1] == 0:
                raise JaxmixError(f"random term {rt.text} has no columns")
            _check_finite(mm, frame, f"random term {rt.text}")
            columns, Z, spec = [str(c) for c in mm.columns], mm.to_numpy(dtype=float), mm.model_spec
        labels, codes, uniq = grouping_factor(frame, rt.factors)
        group = rt.group
        if len(labels) < 2:
            raise JaxmixError(
                f"grouping factor {group!r} in {rt.text} has only one level ({labels[0]!r}); "
                "a random effect needs at least two"
            )
        if check_nlevels and len(labels) >= n:
            raise JaxmixError(
                f"grouping factor {group!r} in {rt.text} has {len(labels)} levels for {n} rows; "
                "it must have fewer levels than rows (the random effects would be confounded with the residual)"
            )
        terms.append(
            Term(term=rt, group=group, columns=columns, levels=labels, codes=codes, Z=Z, spec=spec,
                 keys=[tuple(_fmt(v) for v in t) for t in uniq])
        )
    # lme4's order: decreasing number of levels, ties keep formula order
    terms = [t for _, t in sorted(enumerate(terms), key=lambda it: (-it[1].nlevels, it[0]))]

    w = np.ones(n) if w_arr is None else w_arr[keep]
    if (w < 0).any() or not np.isfinite(w).all():
        raise JaxmixError("weights must be finite and non-negative")
    o = np.zeros(n) if o_arr is None else o_arr[keep]
    if not np.isfinite(o).all():
        raise JaxmixError("offset contains inf")
    X = np.array(X, dtype=float)  # read-only: what is derived from it (a GLM start's digest) stays valid
    X.setflags(write=False)
    return Design(
        parsed=parsed, y=y, X=X, x_names=x_names, terms=terms, weights=w, offset=o,
        rows=np.asarray(frame.index), n_dropped=n_dropped, fixed_spec=fixed_mm.model_spec,
        dropped_columns=dropped, positions=positions, offset_terms=offset_terms,
        offset_column=offset if isinstance(offset, str) else None,
        offset_array=offset is not None and not isinstance(offset, str),
    )


def split_offsets(fixed: str) -> tuple[str, tuple[str, ...]]:
    """``"x + offset(np.log(e))"`` -> ``("x", ("np.log(e)",))``: the fixed part without its offset terms,
    and the expressions inside ``offset(...)`` (added to the linear predictor with coefficient 1)."""
    keep, offs = [], []
    for piece in (p.strip() for p in split_top(fixed, "+")):
        expr = _offset_call(piece)
        if expr == "":
            raise JaxmixError("offset() in the formula needs an expression, e.g. offset(np.log(exposure))")
        if expr is not None:
            offs.append(expr)
        elif piece:
            keep.append(piece)
    if offs and not keep:
        keep = ["1"]
    return (" + ".join(keep) if offs else fixed), tuple(offs)


def _offset_call(piece: str) -> str | None:
    """The argument of a whole-term ``offset(...)``, else None."""
    m = re.match(r"offset\s*\(", piece)
    if not m:
        return None
    depth = 0
    for i in range(m.end() - 1, len(piece)):
        depth += {"(": 1, ")": -1}.get(piece[i], 0)
        if depth == 0:
            return piece[m.end() : i].strip() if i == len(piece) - 1 else None
    return None


def _offset_columns(expr: str, data: pd.DataFrame, where: str) -> set[str]:
    """The data columns an ``offset(expr)`` term reads; a missing one is an error naming it."""
    names = {expr} if expr in data.columns else _python_names(expr)
    for name in sorted(names):
        if name not in data.columns:
            raise JaxmixError(f"column {name!r} used in offset({expr}) is not in {where}"
                              f"{_column_hint(name, data)}")
    return names


def _offset_values(expr: str, data: pd.DataFrame, where: str) -> np.ndarray:
    """``expr`` evaluated on every row of ``data`` (missing values stay NaN)."""
    _offset_columns(expr, data, where)
    if expr in data.columns:
        vals = data[expr]
    else:
        try:
            mm = formulaic.model_matrix(f"0 + I({expr})", data, na_action="ignore", output="pandas")
        except Exception as exc:
            raise JaxmixError(f"cannot evaluate offset({expr}) on {where}: {exc}") from None
        if mm.shape[1] != 1:
            raise JaxmixError(f"offset({expr}) must give one numeric value per row")
        vals = mm.iloc[:, 0]
    if not (pd.api.types.is_numeric_dtype(vals) or pd.api.types.is_bool_dtype(vals)):
        raise JaxmixError(f"offset({expr}) is not numeric (dtype {vals.dtype})")
    return vals.to_numpy(dtype=float)


def offset_new(design: Design, newdata: pd.DataFrame) -> np.ndarray:
    """The offset for new data, as the model was given it: ``offset(...)`` terms of the formula
    evaluated on ``newdata`` plus its ``offset=`` column."""
    o = np.zeros(len(newdata))
    for expr in design.offset_terms:
        o = o + _offset_values(expr, newdata, "the new data")
    if design.offset_column is not None:
        if design.offset_column not in newdata.columns:
            raise JaxmixError(f"offset column {design.offset_column!r} is not in the new data"
                              f"{_column_hint(design.offset_column, newdata)}")
        o = o + _row_vector(design.offset_column, newdata, "offset")
    elif design.offset_array:
        raise JaxmixError("the model was fitted with offset= given as an array, which new data cannot supply: "
                          "to predict on new data, give offset= as a column name (or offset(...) in the formula)")
    return o


def row_values(spec, data: pd.DataFrame, what: str) -> np.ndarray:
    """A per-row numeric argument (weights, offset, trials): a column name or an array, one value per data
    row, by position (the data's index labels play no part)."""
    if isinstance(spec, str):
        _check_columns(data, {spec} & set(data.columns), f"the {what}")
    return _row_vector(spec, data, what)


def _row_vector(spec, data: pd.DataFrame, what: str):
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec not in data.columns:
            raise JaxmixError(f"{what} column {spec!r} is not in the data")
        vals = data[spec]
        if not pd.api.types.is_numeric_dtype(vals):
            raise JaxmixError(f"{what} column {spec!r} is not numeric")
        return vals.to_numpy(dtype=float)
    arr = np.asarray(spec, dtype=float).reshape(-1)
    if arr.shape[0] != len(data):
        raise JaxmixError(f"{what} has length {arr.shape[0]} but the data has {len(data)} rows")
    return arr


def _response(expr: str, frame: pd.DataFrame) -> np.ndarray:
    if expr in frame.columns:
        vals = frame[expr]
        if pd.api.types.is_bool_dtype(vals):
            return vals.to_numpy(dtype=float)
        if not pd.api.types.is_numeric_dtype(vals):
            raise JaxmixError(f"response column {expr!r} is not numeric (dtype {vals.dtype})")
        return vals.to_numpy(dtype=float)
    # the left-hand side is arithmetic, as in R (incidence/size is a ratio, not nesting)
    mm = _model_matrix(f"0 + I({expr})", frame, "the response")
    if mm.shape[1] != 1:
        raise JaxmixError(f"response {expr!r} must be a single numeric column")
    return mm.to_numpy(dtype=float)[:, 0]


def _show_value(v) -> str:
    return repr(v.item() if isinstance(v, np.generic) else v)


def _check_new_categories(spec, newdata: pd.DataFrame, where: str) -> None:
    """Raise a JaxmixError naming the column when new data hold a category the fit never saw."""
    state = getattr(spec, "encoder_state", None) or {}
    for expr, (kind, st) in state.items():
        if getattr(kind, "value", kind) != "categorical" or "categories" not in st:
            continue
        m = re.fullmatch(r"\s*(?:C\(\s*)?`?([A-Za-z_.][A-Za-z0-9_.]*)`?\s*(?:[,)].*)?", str(expr))
        col = m.group(1) if m else None
        if col is None or col not in newdata.columns:
            continue
        seen = set(st["categories"])
        new = [v for v in pd.unique(newdata[col].dropna()) if v not in seen]
        if new:
            shown = ", ".join(_show_value(v) for v in new[:5]) + (" ..." if len(new) > 5 else "")
            raise JaxmixError(
                f"column {col!r} in new data has categor{'y' if len(new) == 1 else 'ies'} {shown} not seen "
                f"when fitting {where} (fitted levels: {', '.join(map(_show_value, st['categories']))})"
            )


def _model_matrix_new(spec, newdata: pd.DataFrame, where: str):
    """Model matrix for new data from a fitted spec; unseen categories are an error, not NaN."""
    _check_new_categories(spec, newdata, where)
    try:
        with warnings.catch_warnings():
            # formulaic casts an unseen category to NaN with only a warning; make it an error
            warnings.filterwarnings("error", message=".*categories outside of the nominated levels.*")
            return spec.get_model_matrix(newdata, na_action="raise", output="pandas")
    except Exception as exc:
        raise JaxmixError(f"cannot build {where} for new data: {exc}") from None


def fixed_matrix_new(design: Design, newdata: pd.DataFrame) -> np.ndarray:
    """X for new data with the fitted columns and levels; an unseen category is an error."""
    mm = _model_matrix_new(design.fixed_spec, newdata, "the fixed effects")
    cols = [str(c) for c in mm.columns]
    idx = [cols.index(n) for n in design.x_names]
    X = mm.to_numpy(dtype=float)[:, idx]
    return X


def term_matrix_new(term: Term, newdata: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(Z columns, codes) for new data; an unseen level gets code -1 (its b is 0)."""
    for f in term.term.factors:
        if f not in newdata.columns:
            raise JaxmixError(f"grouping column {f!r} of random term {term.term.text} is not in the new data")
    mm = _model_matrix_new(term.spec, newdata, f"random term {term.term.text}")
    if term.keys is not None:
        keys = level_keys(newdata, term.term.factors)
        index = {key: i for i, key in enumerate(term.keys)}
    else:
        keys = [":".join(t) for t in level_keys(newdata, term.term.factors)]
        index = {lab: i for i, lab in enumerate(term.levels)}
    codes = np.array([index.get(k, -1) for k in keys], dtype=np.int64)
    return mm.to_numpy(dtype=float), codes
