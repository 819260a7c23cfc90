"""lme4 formula syntax: splitting bar terms out of the fixed part, and errors on malformed formulas."""
from __future__ import annotations

import pytest

from jaxmix import JaxmixError, parse_formula


def _terms(formula):
    return [(t.expr, t.factors) for t in parse_formula(formula).random]


def test_random_intercept():
    pf = parse_formula("y ~ x + (1 | g)")
    assert pf.response == "y"
    assert pf.fixed == "x"
    assert pf.is_mixed
    assert _terms("y ~ x + (1 | g)") == [("1", ("g",))]
    assert pf.random[0].group == "g"
    assert pf.random[0].text == "(1 | g)"


def test_correlated_slope_keeps_expression():
    # (x | g): intercept implied, one correlated term with both columns
    assert _terms("y ~ x + (x | g)") == [("x", ("g",))]
    assert _terms("y ~ x + (1 + x | g)") == [("1 + x", ("g",))]


def test_slope_only():
    assert _terms("y ~ x + (0 + x | g)") == [("0 + x", ("g",))]


def test_double_bar_splits_into_uncorrelated_terms():
    assert _terms("y ~ x + (1 + x || g)") == [("1", ("g",)), ("0 + x", ("g",))]
    # intercept implied with ||, as in lme4
    assert _terms("y ~ x + (x + z || g)") == [("1", ("g",)), ("0 + x", ("g",)), ("0 + z", ("g",))]
    assert _terms("y ~ x + (0 + x + z || g)") == [("0 + x", ("g",)), ("0 + z", ("g",))]


def test_nesting_expands_with_inner_outer_names():
    terms = parse_formula("y ~ 1 + (1 | a/b)").random
    assert [t.factors for t in terms] == [("a",), ("b", "a")]
    assert [t.group for t in terms] == ["a", "b:a"]
    # three levels of nesting
    assert [t.factors for t in parse_formula("y ~ (1 | a/b/c)").random] == [("a",), ("b", "a"), ("c", "b", "a")]


def test_interaction_factor():
    terms = parse_formula("y ~ x + (1 | a:b)").random
    assert [t.factors for t in terms] == [("a", "b")]
    assert terms[0].group == "a:b"


def test_crossed_terms_and_fixed_part():
    pf = parse_formula("diameter ~ 1 + (1 | plate) + (1 | sample)")
    assert _terms(pf.formula) == [("1", ("plate",)), ("1", ("sample",))]
    assert pf.fixed == "1"
    # fixed terms between and after bar terms survive, in order
    pf = parse_formula("y ~ x + (1 | a) + z + (1 | b) + C(k)")
    assert pf.fixed == "x + z + C(k)"
    assert [t.factors for t in pf.random] == [("a",), ("b",)]


def test_several_terms_on_one_factor():
    terms = _terms("y ~ x + (1 | g) + (0 + x | g)")
    assert terms == [("1", ("g",)), ("0 + x", ("g",))]


def test_parenthesised_fixed_terms_are_not_random():
    pf = parse_formula("y ~ I(x**2) + (x + z) + (1 | g)")
    assert pf.fixed == "I(x**2) + (x + z)"
    assert _terms(pf.formula) == [("1", ("g",))]


def test_no_bar_is_not_mixed():
    pf = parse_formula("y ~ x + z")
    assert not pf.is_mixed
    assert pf.fixed == "x + z"
    assert parse_formula("y ~ (1 | g)").fixed == "1"


def test_missing_response_allowed_by_parser():
    pf = parse_formula("~ x + (1 | g)")
    assert pf.response is None
    assert pf.fixed == "x"


@pytest.mark.parametrize("formula,fragment", [
    ("y ~ x + (1 | g", "unbalanced '('"),
    ("y ~ x + 1 | g)", "unbalanced ')'"),
    ("y ~ x + ((1 | g)", "unbalanced '('"),
    ("y ~ x + ( | g)", "nothing before the bar"),
    ("y ~ x + (1 | )", "no grouping factor"),
    ("y x + (1 | g)", "exactly one '~'"),
    ("y ~ x ~ z + (1 | g)", "exactly one '~'"),
    ("y ~ x + 1 | g", "enclosed in parentheses"),
    ("y ~ x | g", "enclosed in parentheses"),
    ("y ~ ", "empty right-hand side"),
    ("y ~ x + (1 | g + h)", "must be a column name"),
])
def test_malformed_formulas(formula, fragment):
    with pytest.raises(JaxmixError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("|", r"\|")):
        parse_formula(formula)


def test_error_names_the_bad_term():
    with pytest.raises(JaxmixError) as ei:
        parse_formula("y ~ x + ( | subj)")
    assert "subj" in str(ei.value)
    with pytest.raises(JaxmixError) as ei:
        parse_formula("y ~ x + (1 | g + h)")
    assert "g + h" in str(ei.value)


def test_formula_must_be_a_string():
    with pytest.raises(JaxmixError, match="string"):
        parse_formula(None)


# ---------------------------------------------------------------------------------------------
# R's reading: ^ inside a call is a power, a trailing operator is an error, backticks in bar terms


def test_power_inside_a_call_is_read_as_a_power():
    pf = parse_formula("y ~ I(x^2) + log(z^3) + (I(x^2) | g)")
    assert pf.fixed == "I(x**2) + log(z**3)"
    assert pf.random[0].expr == "I(x**2)"
    assert pf.random[0].text == "(I(x^2) | g)"  # messages show the term as written
    # outside a call, ^ crosses terms (R and formulaic): left alone
    assert parse_formula("y ~ (a + b)^2 + (1 | g)").fixed == "(a + b)^2"
    assert parse_formula("y ~ I((a + b)^2)").fixed == "I((a + b)**2)"
    # a backtick name is not touched
    assert parse_formula("y ~ I(`x^y` + 1)").fixed == "I(`x^y` + 1)"


@pytest.mark.parametrize("formula", ["y ~ x + (1 | g) +", "y ~ x +", "y ~ x + (1 | g) + ", "y ~ x -"])
def test_trailing_operator_is_an_error(formula):
    with pytest.raises(JaxmixError, match=r"ends with '[+-]'.*missing"):
        parse_formula(formula)


def test_backtick_grouping_factors():
    assert _terms("y ~ x + (1 | `my group`)") == [("1", ("my group",))]
    assert _terms("y ~ x + (1 | `Schüler`)") == [("1", ("Schüler",))]
    assert _terms("y ~ x + (1 | Schüler)") == [("1", ("Schüler",))]  # an R name may have non-ASCII letters
    terms = parse_formula("y ~ x + (x | `a b`/c)").random
    assert [t.factors for t in terms] == [("a b",), ("c", "a b")]
    assert [t.expr for t in terms] == ["x", "x"]
    # ':' and '/' inside backticks belong to the name
    assert _terms("y ~ (1 | `a:b`:c)") == [("1", ("a:b", "c"))]
    assert _terms("y ~ (1 | `a/b`)") == [("1", ("a/b",))]
    # a '|' inside a backtick name in the fixed part is not a bar
    assert parse_formula("y ~ `p|q` + (1 | g)").fixed == "`p|q`"
