"""lme4-style formulas: split ``y ~ x + (1 + x | g)`` into a fixed part and random-effect terms.

formulaic builds every design matrix; it does not read lme4's bar terms, so they are split out here
first.  The supported random-effect syntax is lme4's:

=======================  =====================================================
``(1 | g)``              random intercept per level of ``g``
``(x | g)``              intercept (implied) and slope, correlated
``(0 + x | g)``          slope only
``(1 + x || g)``         uncorrelated: ``(1 | g) + (0 + x | g)``
``(1 | a/b)``            nested: ``(1 | a) + (1 | b:a)`` (lme4 names the inner factor ``b:a``)
``(1 | a:b)``            one factor from the combinations of ``a`` and ``b``
``(1 | a) + (1 | b)``    crossed factors
``us(x | g)``            glmmTMB's name for the default (unstructured) term
``diag(x | g)``          diagonal covariance: ``x || g``; a factor's columns get one variance each
``cs(0 + f | g)``        compound symmetry across the columns: one variance, one correlation
``ar1(0 + f | g)``       AR(1) across the columns in level order: one variance, correlation ρ^|i−j|
=======================  =====================================================

Column names that are not R names go in backticks, in the fixed part and in bar terms alike
(``(1 | `my group`)``).  As in R, ``^`` inside a function call (``I(x^2)``, ``log(x^2)``) is a power,
while ``(a + b)^2`` outside one crosses the terms.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import JaxmixError

__all__ = ["RandomTerm", "ParsedFormula", "parse_formula", "r_functions", "r_power", "split_top", "STRUCTURES"]

#: glmmTMB's covariance-structure names accepted in front of a bar term: ``diag(x | g)``
STRUCTURES = ("us", "diag", "cs", "ar1")
_STRUCT_BEFORE = re.compile(r"(?<![\w.`])(" + "|".join(STRUCTURES) + r")\s*$")


@dataclass(frozen=True)
class RandomTerm:
    """One random-effect term ``(expr | group)``.

    Attributes:
      expr: right-hand side for formulaic that builds the term's Z columns (``"1"``, ``"1 + Days"``,
        ``"0 + Days"``).
      factors: the data columns whose combinations define the grouping factor, in the order their
        values are joined in level labels (``("cask", "batch")`` gives levels ``"a:A"``).
      text: the original bar term, for error messages.
      structure: the covariance structure of the term's columns: ``"us"`` (unstructured, lme4's),
        ``"diag"``, ``"cs"`` or ``"ar1"`` (see :mod:`jaxmix.spec.re_structure`).
    """

    expr: str
    factors: tuple[str, ...]
    text: str
    structure: str = "us"

    @property
    def group(self) -> str:
        """The grouping factor's name, as lme4 prints it (``"cask:batch"``)."""
        return ":".join(self.factors)


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into response, fixed right-hand side and random terms (in formula order)."""

    formula: str
    response: str | None
    fixed: str
    random: tuple[RandomTerm, ...]

    @property
    def is_mixed(self) -> bool:
        return len(self.random) > 0


def _quoted_end(text: str, i: int) -> int:
    """If ``text[i]`` opens a backtick name or a string literal, the index just past its end, else -1."""
    ch = text[i]
    if ch not in "`'\"":
        return -1
    end = text.find(ch, i + 1)
    return len(text) if end < 0 else end + 1


def split_top(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` where it is not inside brackets, backtick names or string literals."""
    parts, depth, cur, i = [], 0, [], 0
    while i < len(text):
        ch = text[i]
        end = _quoted_end(text, i)
        if end >= 0:
            cur.append(text[i:end])
            i = end
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if depth == 0 and text.startswith(sep, i):
            parts.append("".join(cur))
            cur = []
            i += len(sep)
            continue
        cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _bar_groups(rhs: str) -> tuple[list[tuple[int, int]], list[str]]:
    """Find top-level parenthesised groups that contain a top-level ``|``.

    Returns their (start, end) spans in ``rhs`` and their inner texts.
    """
    spans, inner = [], []
    depth, start = 0, None
    i, skip_to = -1, 0
    while i + 1 < len(rhs):
        i += 1
        if i < skip_to:
            continue
        ch = rhs[i]
        end = _quoted_end(rhs, i)
        if end >= 0:
            skip_to = end
            continue
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise JaxmixError(f"unbalanced ')' in formula right-hand side {rhs!r}")
            if depth == 0:
                body = rhs[start + 1 : i]
                if len(split_top(body, "|")) > 1:
                    spans.append((start, i + 1))
                    inner.append(body)
    if depth != 0:
        raise JaxmixError(f"unbalanced '(' in formula right-hand side {rhs!r}")
    return spans, inner


_NAME = re.compile(r"^(?:[^\W\d]|\.)[\w.]*$")  # an R name (letters may be non-ASCII)


def r_power(expr: str) -> str:
    """Read ``^`` inside a function call as R does, a power: ``I(x^2)`` -> ``I(x**2)``.

    A ``^`` outside every call (``(a + b)^2``) is left alone: there it crosses terms, in R and formulaic.
    Backtick names and string literals are not touched.
    """
    out, stack, i = [], [], 0
    while i < len(expr):
        ch = expr[i]
        end = _quoted_end(expr, i)
        if end >= 0:
            out.append(expr[i:end])
            i = end
            continue
        if ch in "([{":
            before = "".join(out).rstrip()
            stack.append(ch != "(" or (bool(before) and (before[-1].isalnum() or before[-1] in "_.`")))
        elif ch in ")]}" and stack:
            stack.pop()
        elif ch == "^" and any(stack):
            ch = "**"
        out.append(ch)
        i += 1
    return "".join(out)


_FACTOR_CALL = re.compile(r"(?<![\w.`])(?:as\.)?factor\s*\(")


def r_functions(expr: str) -> str:
    """R's ``factor(x)`` / ``as.factor(x)`` -> formulaic's ``C(x)`` (a categorical, treatment coded).

    ``poly(x, d)`` (orthogonal, as R's), ``scale(x)``, ``log(x)``, ``exp``, ``sqrt`` and ``I(...)`` are
    formulaic's own and keep their fitted state (poly's coefficients, scale's centre and SD) for new data.
    """
    return _FACTOR_CALL.sub("C(", expr)


def _group_factors(group: str, text: str) -> list[tuple[str, ...]]:
    """``a/b/c`` -> [(a,), (b, a), (c, b, a)]; ``a:b`` -> [(a, b)]; ``g`` -> [(g,)]."""
    group = group.strip()
    if not group:
        raise JaxmixError(f"random term {text!r} has no grouping factor after '|'")
    nest = [p.strip() for p in split_top(group, "/")]
    out: list[tuple[str, ...]] = []
    outer: tuple[str, ...] = ()
    for piece in nest:
        names = []
        for n in (n.strip() for n in split_top(piece, ":")):
            quoted = len(n) > 2 and n[0] == n[-1] == "`" and "`" not in n[1:-1]
            if not (quoted or _NAME.match(n)):
                raise JaxmixError(
                    f"grouping factor {n!r} in random term {text!r} must be a column name "
                    "(use a/b for nesting, a:b for combinations and `backticks` around other names)"
                )
            names.append(n[1:-1] if quoted else n)
        names = tuple(names)
        outer = names + outer if outer else names
        out.append(outer)
    return out


def _uncorrelated_exprs(lhs: str, text: str) -> list[str]:
    """``1 + x + z`` with ``||`` -> ["1", "0 + x", "0 + z"] (lme4's expansion)."""
    tokens = [t.strip() for t in split_top(lhs, "+") if t.strip()]
    intercept = True
    rest = []
    for t in tokens:
        if t == "1":
            intercept = True
        elif t in ("0", "-1"):
            intercept = False
        elif t.startswith("-"):
            raise JaxmixError(f"cannot remove {t!r} inside the uncorrelated term {text!r}")
        else:
            rest.append(t)
    exprs = (["1"] if intercept else []) + [f"0 + {t}" for t in rest]
    if not exprs:
        raise JaxmixError(f"random term {text!r} has no columns")
    return exprs


def parse_formula(formula: str) -> ParsedFormula:
    """Parse an lme4-style formula.

    Args:
      formula: e.g. ``"Reaction ~ Days + (Days | Subject)"``; the response may be omitted
        (``"~ x + (1 | g)"``) for sweeps over many outcomes.

    Returns:
      A :class:`ParsedFormula`; random terms keep formula order (the fit sorts them lme4's way).
    """
    if not isinstance(formula, str):
        raise JaxmixError(f"formula must be a string, got {type(formula).__name__}")
    sides = split_top(formula, "~")
    if len(sides) != 2:
        raise JaxmixError(f"formula {formula!r} must contain exactly one '~'")
    lhs, rhs = sides[0].strip(), sides[1].strip()
    if not rhs:
        raise JaxmixError(f"formula {formula!r} has an empty right-hand side")
    if rhs[-1] in "+-*/:^":
        raise JaxmixError(f"formula {formula!r} ends with {rhs[-1]!r}: a term is missing after it")
    spans, inner = _bar_groups(rhs)
    terms: list[RandomTerm] = []
    structures = []
    for k, (start, end) in enumerate(spans):
        m = _STRUCT_BEFORE.search(rhs[:start])
        structures.append(m.group(1) if m else "us")
        if m:
            spans[k] = (m.start(1), end)
    for body, structure in zip(inner, structures):
        text = f"({body.strip()})" if structure == "us" else f"{structure}({body.strip()})"
        pieces = split_top(body, "||")
        uncorrelated = len(pieces) == 2
        if uncorrelated and structure != "us":
            raise JaxmixError(f"random term {text!r}: use '|' inside {structure}(...); '||' is diag(...)")
        if structure == "diag":  # glmmTMB's diag(x | g) is lme4's (x || g)
            pieces = split_top(body, "|")
            uncorrelated = len(pieces) == 2
        if not uncorrelated:
            pieces = split_top(body, "|")
        if len(pieces) != 2:
            raise JaxmixError(f"random term {text!r} must have the form (expr | group)")
        expr, group = pieces[0].strip(), pieces[1].strip()
        if not expr:
            raise JaxmixError(f"random term {text!r} has nothing before the bar; use (1 | g)")
        exprs = [r_functions(r_power(e)) for e in (_uncorrelated_exprs(expr, text) if uncorrelated else [expr])]
        for factors in _group_factors(group, text):
            for e in exprs:
                terms.append(RandomTerm(expr=e, factors=factors, text=text, structure=structure))
    # remove the bar groups (and the '+' joining them) from the fixed part
    fixed = rhs
    for start, end in reversed(spans):
        fixed = fixed[:start] + " " + fixed[end:]
    pieces = [p.strip() for p in split_top(fixed, "+")]
    pieces = [p for p in pieces if p]
    fixed = " + ".join(pieces) if pieces else "1"
    if "|" in re.sub(r"`[^`]*`", "", fixed):
        raise JaxmixError(f"random term in {formula!r} must be enclosed in parentheses: (expr | group)")
    return ParsedFormula(formula=formula, response=r_power(lhs) or None, fixed=r_functions(r_power(fixed)), random=tuple(terms))
