"""Design construction and bad input through ``jaxmix.fit``: every problem is a JaxmixError that names
its culprit; dropped rows and aliased columns are handled as lme4 does."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import jaxmix
from jaxmix import JaxmixError, JaxmixWarning
from jaxmix.design import build_design
from jaxmix.formula import parse_formula


def make_data(seed=0, n=60, ng=8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.arange(n) % ng
    x = rng.normal(size=n)
    c = rng.choice(["lo", "hi", "mid"], size=n)
    y = 2.0 + 1.5 * x + np.where(c == "hi", 1.0, 0.0) + rng.normal(scale=1.2, size=ng)[g] + rng.normal(size=n)
    return pd.DataFrame({
        "y": y, "x": x, "c": c, "k": rng.choice([10, 2, 3], size=n),
        "g": [f"s{i}" for i in g], "gnum": g + 1, "unused": rng.normal(size=n),
    })


def quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JaxmixWarning)
        return jaxmix.fit(*args, **kwargs)


def assert_same_fit(a, b, rtol=1e-8):
    assert a.objective == pytest.approx(b.objective, rel=rtol, abs=rtol)
    np.testing.assert_allclose(a.beta, b.beta, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(a.se.to_numpy(), b.se.to_numpy(), rtol=max(rtol, 1e-6))
    np.testing.assert_allclose(a.theta, b.theta, rtol=max(rtol, 1e-6), atol=1e-8)
    assert a.sigma == pytest.approx(b.sigma, rel=max(rtol, 1e-7))


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def base_fit(data):
    return quiet_fit("y ~ x + (1 | g)", data)


# ---------------------------------------------------------------------------------------------
# errors that name the culprit


@pytest.mark.parametrize("formula,name", [
    ("y ~ nosuch + (1 | g)", "nosuch"),
    ("resp ~ x + (1 | g)", "resp"),
    ("y ~ x + (1 + slope | g)", "slope"),
    ("y ~ x + (1 | grp)", "grp"),
    ("y ~ x + (1 | g/inner)", "inner"),
])
def test_unknown_column(data, formula, name):
    with pytest.raises(JaxmixError, match=f"'{name}'.*not in the data"):
        jaxmix.fit(formula, data)


def test_unknown_column_suggests_close_names(data):
    d = data.rename(columns={"x": "Days"})
    with pytest.raises(JaxmixError, match="'days'.*did you mean 'Days'"):
        jaxmix.fit("y ~ days + (1 | g)", d)
    # also inside a stateful transform
    with pytest.raises(JaxmixError, match="'days'.*did you mean 'Days'"):
        jaxmix.fit("y ~ center(days) + (1 | g)", d)


def test_dotted_column_names(data, base_fit):
    # R-style names with dots are columns, not attribute access
    d = data.rename(columns={"x": "x.1"})
    a = quiet_fit("y ~ x.1 + (1 | g)", d)
    assert a.x_names == ["Intercept", "x.1"]
    assert_same_fit(a, base_fit, rtol=1e-10)
    d.loc[0, "x.1"] = np.nan
    assert quiet_fit("y ~ `x.1` + (1 | g)", d).design.n_dropped == 1


def test_unknown_weights_column(data):
    with pytest.raises(JaxmixError, match="'wts'"):
        jaxmix.fit("y ~ x + (1 | g)", data, weights="wts")


def test_weights_of_wrong_length(data):
    with pytest.raises(JaxmixError, match="length 3"):
        jaxmix.fit("y ~ x + (1 | g)", data, weights=np.ones(3))


def test_negative_weights(data):
    w = np.ones(len(data))
    w[4] = -1.0
    with pytest.raises(JaxmixError, match="weights"):
        jaxmix.fit("y ~ x + (1 | g)", data, weights=w)


@pytest.mark.parametrize("col", ["x", "y"])
def test_inf_in_used_column(data, col):
    d = data.copy()
    d.loc[7, col] = np.inf if col == "x" else -np.inf
    with pytest.raises(JaxmixError, match=f"'{col}'.*inf"):
        jaxmix.fit("y ~ x + (1 | g)", d)


def test_inf_in_unused_column_is_ignored(data, base_fit):
    d = data.copy()
    d.loc[7, "unused"] = np.inf
    res = quiet_fit("y ~ x + (1 | g)", d)
    assert_same_fit(res, base_fit, rtol=1e-10)


def test_grouping_factor_with_one_level(data):
    d = data.assign(one="only")
    with pytest.raises(JaxmixError, match="'one'.*only one level"):
        jaxmix.fit("y ~ x + (1 | one)", d)


def test_grouping_factor_with_as_many_levels_as_rows(data):
    d = data.assign(rowid=[f"r{i}" for i in range(len(data))])
    with pytest.raises(JaxmixError, match=f"'rowid'.*{len(d)} levels for {len(d)} rows"):
        jaxmix.fit("y ~ x + (1 | rowid)", d)


def test_nlevels_check_applies_after_dropping_rows(data):
    # 59 labels for 60 rows passes; dropping a row whose label is shared leaves 59 labels for 59 rows
    d = data.assign(almost=[f"r{min(i, 58)}" for i in range(len(data))])
    design = build_design(parse_formula("y ~ x + (1 | almost)"), d)
    assert design.terms[0].nlevels == 59 and design.nobs == 60
    d.loc[58, "x"] = np.nan
    with pytest.raises(JaxmixError, match="'almost'.*59 levels for 59 rows"):
        jaxmix.fit("y ~ x + (1 | almost)", d)


def test_non_numeric_response(data):
    d = data.assign(label=data["c"])
    with pytest.raises(JaxmixError, match="'label'.*not numeric"):
        jaxmix.fit("label ~ x + (1 | g)", d)


def test_no_rows_left_after_dropping_missing(data):
    d = data.copy()
    d["x"] = np.nan
    with pytest.raises(JaxmixError, match="no rows left.*'x'"):
        jaxmix.fit("y ~ x + (1 | g)", d)


def test_missing_response_in_formula(data):
    with pytest.raises(JaxmixError, match="no response"):
        jaxmix.fit("~ x + (1 | g)", data)


def test_bad_method(data):
    with pytest.raises(JaxmixError, match="'LAPLACE'|Laplace"):
        jaxmix.fit("y ~ x + (1 | g)", data, method="Laplace")


# ---------------------------------------------------------------------------------------------
# rank deficiency, missing rows, grouping columns


def test_rank_deficient_X_drops_the_later_aliased_column(data, base_fit):
    d = data.assign(x2=2.0 * data["x"] - 1.0)
    with pytest.warns(JaxmixWarning, match="x2"):
        res = jaxmix.fit("y ~ x + x2 + (1 | g)", d)
    assert res.x_names == ["Intercept", "x"]
    assert res.design.dropped_columns == ["x2"]
    assert_same_fit(res, base_fit, rtol=1e-9)


def test_rank_deficient_categorical_interaction():
    # a column of zeros (an empty cell of an interaction) is dropped, the rest kept in order
    X = np.column_stack([np.ones(6), [0, 1, 0, 1, 0, 1], [0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]]).astype(float)
    from jaxmix.design import _drop_aliased

    X2, names, dropped = _drop_aliased(X, ["a", "b", "c", "d"])
    assert names == ["a", "b", "d"] and dropped == ["c"]
    np.testing.assert_array_equal(X2, X[:, [0, 1, 3]])
    # a later column equal to a combination of earlier ones goes, whatever the column norms
    X = np.column_stack([np.ones(5), np.arange(5.0), 1e3 * (1 + np.arange(5.0))])
    assert _drop_aliased(X, ["i", "t", "big"])[2] == ["big"]


def test_rows_with_missing_values_are_dropped_and_counted(data, base_fit):
    d = data.copy()
    d.loc[[3, 11, 25], "x"] = np.nan
    d.loc[40, "y"] = np.nan
    d.loc[41, "g"] = None
    d.loc[[5, 6], "unused"] = np.nan  # not in the model: must not drop rows
    res = quiet_fit("y ~ x + (1 | g)", d)
    assert res.design.n_dropped == 5
    assert res.nobs == len(d) - 5
    np.testing.assert_array_equal(res.design.rows, np.setdiff1d(d.index, [3, 11, 25, 40, 41]))
    complete = quiet_fit("y ~ x + (1 | g)", d.drop(index=[3, 11, 25, 40, 41]))
    assert complete.design.n_dropped == 0
    assert_same_fit(res, complete, rtol=1e-10)
    assert res.objective != pytest.approx(base_fit.objective, rel=1e-6)  # the rows really went
    assert "5 rows with missing values dropped" in res.summary()


def test_string_and_numeric_grouping_give_the_same_fit(data):
    # numeric levels 1..8 sort as numbers; the same factor as strings gives the same model
    a = quiet_fit("y ~ x + (1 | gnum)", data)
    b = quiet_fit("y ~ x + (1 | gstr)", data.assign(gstr=data["gnum"].astype(str)))
    assert_same_fit(a, b, rtol=1e-7)
    ra = a.ranef.set_index("level")["mode"]
    rb = b.ranef.set_index("level")["mode"]
    np.testing.assert_allclose(ra.loc[rb.index].to_numpy(), rb.to_numpy(), rtol=1e-5, atol=1e-8)


def test_numeric_grouping_levels_sort_numerically():
    d = make_data(n=60, ng=12)
    d["gnum"] = (np.arange(60) % 12) + 1  # 1..12: "10" must come after "9"
    design = build_design(parse_formula("y ~ x + (1 | gnum)"), d)
    assert design.terms[0].levels == [str(i) for i in range(1, 13)]
    # float-valued integer codes print without ".0"
    design = build_design(parse_formula("y ~ x + (1 | gf)"), d.assign(gf=d["gnum"].astype(float)))
    assert design.terms[0].levels[:3] == ["1", "2", "3"]


def test_interaction_grouping_levels():
    d = make_data()
    d["a"] = np.where(np.arange(60) % 2 == 0, "B", "A")
    design = build_design(parse_formula("y ~ x + (1 | a/g)"), d)
    inner = [t for t in design.terms if t.group == "g:a"][0]
    assert inner.nlevels == 8  # g is already unique within a here (g = i % 8, a = i % 2)
    assert inner.levels[0] == "s0:B" and all(":" in lev for lev in inner.levels)
    outer = [t for t in design.terms if t.group == "a"][0]
    assert outer.levels == ["A", "B"]
    # every row's code points at its own label
    labels = np.array(inner.levels)[inner.codes]
    np.testing.assert_array_equal(labels, [f"{g}:{a}" for g, a in zip(d["g"], d["a"])])


# ---------------------------------------------------------------------------------------------
# coding and transforms in the fixed part


def test_treatment_coding_reference_is_first_sorted_level(data):
    design = build_design(parse_formula("y ~ c + C(k) + (1 | g)"), data)
    # c appears as lo/hi/mid in the data: the reference is "hi" (first sorted)
    assert design.x_names == ["Intercept", "c[T.lo]", "c[T.mid]", "C(k)[T.3]", "C(k)[T.10]"]
    X = design.X
    np.testing.assert_array_equal(X[:, 1], (data["c"] == "lo").to_numpy(float))
    np.testing.assert_array_equal(X[:, 2], (data["c"] == "mid").to_numpy(float))
    np.testing.assert_array_equal(X[:, 4], (data["k"] == 10).to_numpy(float))


def test_random_slope_columns(data):
    design = build_design(parse_formula("y ~ x + (x | g) + (0 + x | c)"), data)
    by_group = {t.group: t for t in design.terms}
    assert by_group["g"].columns == ["Intercept", "x"]
    assert by_group["c"].columns == ["x"]
    np.testing.assert_array_equal(by_group["g"].Z[:, 1], data["x"].to_numpy())
    # lme4 order: g (8 levels) before c (3)
    assert [t.group for t in design.terms] == ["g", "c"]


def test_center_in_fixed_part(data):
    a = quiet_fit("y ~ center(x) + (1 | g)", data)
    b = quiet_fit("y ~ xc + (1 | g)", data.assign(xc=data["x"] - data["x"].mean()))
    assert a.x_names == ["Intercept", "center(x)"]
    assert_same_fit(a, b, rtol=1e-9)
    # the centring constant is the fitted data's mean, also for new data (not the new rows' mean)
    new = data.iloc[:5]
    want = a.beta[0] + a.beta[1] * (new["x"].to_numpy() - data["x"].mean())
    np.testing.assert_allclose(a.predict(new, include_re=False), want, rtol=1e-12)


def test_stateful_transform_columns_are_checked_and_their_missing_rows_dropped(data):
    with pytest.raises(JaxmixError, match="'nosuch'.*not in the data"):
        jaxmix.fit("y ~ center(nosuch) + (1 | g)", data)
    d = data.copy()
    d.loc[[2, 9], "x"] = np.nan  # x only appears inside center()
    res = quiet_fit("y ~ center(x) + (1 | g)", d)
    assert res.design.n_dropped == 2
    # centred with the mean of the rows used
    np.testing.assert_allclose(res.design.X[:, 1], d["x"].dropna() - d["x"].dropna().mean(), atol=1e-14)


def test_power_in_fixed_part(data):
    a = quiet_fit("y ~ x + I(x**2) + (1 | g)", data)
    b = quiet_fit("y ~ x + x2 + (1 | g)", data.assign(x2=data["x"] ** 2))
    assert a.x_names[2] == "I(x ** 2)" or a.x_names[2].replace(" ", "") == "I(x**2)"
    assert_same_fit(a, b, rtol=1e-9)


def test_C_of_numeric_column(data):
    a = quiet_fit("y ~ x + C(k) + (1 | g)", data)
    # the same factor as strings with the numeric sort order
    kstr = data["k"].map({2: "a2", 3: "b3", 10: "c10"})
    b = quiet_fit("y ~ x + ks + (1 | g)", data.assign(ks=kstr))
    assert a.x_names == ["Intercept", "x", "C(k)[T.3]", "C(k)[T.10]"]
    assert_same_fit(a, b, rtol=1e-9)
    # and differs from treating k as numeric
    num = quiet_fit("y ~ x + k + (1 | g)", data)
    assert len(num.beta) == 3


# ---------------------------------------------------------------------------------------------
# weights


def test_weights_column_and_array_agree_and_unit_weights_change_nothing(data, base_fit):
    rng = np.random.default_rng(3)
    w = rng.uniform(0.5, 2.0, size=len(data))
    a = quiet_fit("y ~ x + (1 | g)", data.assign(w=w), weights="w")
    b = quiet_fit("y ~ x + (1 | g)", data, weights=w)
    assert_same_fit(a, b, rtol=1e-12)
    assert a.objective != pytest.approx(base_fit.objective, rel=1e-4)
    ones = quiet_fit("y ~ x + (1 | g)", data, weights=np.ones(len(data)))
    assert_same_fit(ones, base_fit, rtol=1e-10)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_scaling_weights_rescales_sigma_only(data, method):
    # weights c·w describe the same family of models with σ² → c σ²: same maximum, same β and Ω
    rng = np.random.default_rng(4)
    w = rng.uniform(0.5, 2.0, size=len(data))
    a = quiet_fit("y ~ x + (1 | g)", data, weights=w, method=method)
    b = quiet_fit("y ~ x + (1 | g)", data, weights=3.0 * w, method=method)
    assert b.objective == pytest.approx(a.objective, rel=1e-8)
    np.testing.assert_allclose(b.beta, a.beta, rtol=1e-6)
    assert b.sigma == pytest.approx(a.sigma * np.sqrt(3.0), rel=1e-6)  # σ²/(3w) = σ_a²/w
    va, vb = a.varcorr, b.varcorr
    assert vb["vcov"].iloc[0] == pytest.approx(va["vcov"].iloc[0], rel=1e-5)
