"""Design construction and bad input through ``jaxmix.fit``: every problem is a JaxmixError that names
its culprit; dropped rows and aliased columns are handled as lme4 does."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import jaxmix
from jaxmix import JaxmixError, JaxmixWarning
from jaxmix.spec.design import build_design, check_nobs_vs_nre, term_matrix_new
from jaxmix.spec.formula import parse_formula


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
    from jaxmix.spec.design import drop_aliased

    X2, names, dropped = drop_aliased(X, ["a", "b", "c", "d"])
    assert names == ["a", "b", "d"] and dropped == ["c"]
    np.testing.assert_array_equal(X2, X[:, [0, 1, 3]])
    # a later column equal to a combination of earlier ones goes, whatever the column norms
    X = np.column_stack([np.ones(5), np.arange(5.0), 1e3 * (1 + np.arange(5.0))])
    assert drop_aliased(X, ["i", "t", "big"])[2] == ["big"]


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


# ---------------------------------------------------------------------------------------------
# formulas and data read as R reads them


@pytest.mark.parametrize("col", ["k", "x"])
def test_power_in_I_is_a_power_on_int_and_float_columns(data, col):
    # R's ^ inside I() is a power (Python's ^ on integers is XOR: 10^2 == 8)
    design = build_design(parse_formula(f"y ~ {col} + I({col}^2) + (1 | g)"), data)
    np.testing.assert_array_equal(design.X[:, 2], data[col].to_numpy(float) ** 2)
    np.testing.assert_array_equal(design.X, build_design(parse_formula(f"y ~ {col} + I({col}**2) + (1 | g)"), data).X)
    # in a random term too
    design = build_design(parse_formula(f"y ~ 1 + (0 + I({col}^2) | g)"), data)
    np.testing.assert_array_equal(design.terms[0].Z[:, 0], data[col].to_numpy(float) ** 2)


def test_power_of_a_sum_outside_I_crosses(data):
    design = build_design(parse_formula("y ~ (x + k)^2 + (1 | g)"), data)
    assert design.x_names == ["Intercept", "x", "k", "x:k"]


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize("formula,name", [
    ("y ~ log(z) + (1 | g)", "log(z)"),
    ("y ~ x + (0 + log(z) | g)", "log(z)"),
    ("y ~ np.log(z) + (1 | g)", "np.log(z)"),
])
def test_transform_that_gives_inf_is_an_error_naming_the_column(data, formula, name):
    d = data.assign(z=np.abs(data["x"]))
    d.loc[5, "z"] = 0.0  # log(0) = -inf: an error, not a column dropped as aliased
    with pytest.raises(JaxmixError, match=re.escape(f"'{name}'") + r".*-inf \(data row 5\)"):
        build_design(parse_formula(formula), d)


@pytest.mark.parametrize("formula,kwargs,name", [
    ("y ~ x + (1 | g)", {}, "x"),
    ("y ~ x + (1 | g)", {}, "g"),
    ("y ~ x + (1 | g)", {}, "y"),
    ("y ~ x + (1 | g)", {"weights": "w"}, "w"),
])
def test_duplicate_column_names_are_an_error_naming_the_column(data, formula, kwargs, name):
    d = data.assign(w=1.0)
    d = pd.concat([d, d[[name]]], axis=1)
    with pytest.raises(JaxmixError, match=f"2 columns named '{name}'"):
        jaxmix.fit(formula, d, **kwargs)
    # a duplicated column the model does not use is no problem
    d = pd.concat([data, data[["unused"]]], axis=1)
    assert build_design(parse_formula(formula), d).nobs == len(data)


@pytest.fixture(scope="module")
def binom():
    rng = np.random.default_rng(7)
    n = 48
    size = rng.integers(2, 9, size=n)
    x = rng.normal(size=n)
    return pd.DataFrame({"k": rng.binomial(size, 1 / (1 + np.exp(-0.3 - 0.8 * x))), "size": size, "x": x,
                         "g": np.arange(n) % 8})


def test_trials_with_a_repeated_or_non_default_index(binom):
    # trials are taken by position, as the rows of the data (the GLM path reads them as the GLMM's does)
    ref = quiet_fit("k ~ x", binom, family="binomial", trials="size")
    dup = binom.set_axis([0] * len(binom))  # every row labelled 0
    for trials in ["size", binom["size"].to_numpy()]:
        res = quiet_fit("k ~ x", dup, family="binomial", trials=trials)
        np.testing.assert_array_equal(res.extra["trials"], binom["size"].to_numpy(float))
        assert res.objective == pytest.approx(ref.objective, rel=1e-12)
    # a shuffled index with a dropped row: the trials of the rows kept, in the data's order
    d = binom.set_axis(np.arange(len(binom))[::-1] * 3)
    d.iloc[3, d.columns.get_loc("x")] = np.nan
    res = quiet_fit("k ~ x", d, family="binomial", trials=binom["size"].to_numpy())
    np.testing.assert_array_equal(res.extra["trials"], binom["size"].drop(index=3).to_numpy(float))
    assert res.objective == pytest.approx(
        quiet_fit("k ~ x", binom.drop(index=3), family="binomial", trials="size").objective, rel=1e-12)


def test_interaction_levels_are_pairs_not_joined_labels():
    # ("p:q", "t") and ("p", "q:t") both print as "p:q:t" but are different levels
    a = np.array(["p:q", "p", "u", "u", "v", "v"] * 2)
    b = np.array(["t", "q:t", "s", "t", "s", "t"] * 2)
    d = pd.DataFrame({"y": np.arange(12.0), "A": a, "B": b})
    term = build_design(parse_formula("y ~ 1 + (1 | A:B)"), d).terms[0]
    assert term.nlevels == 6 and term.levels.count("p:q:t") == 2
    assert term.codes[0] != term.codes[1]
    # new data (predict) find each row's own level, not the other one with the same label
    Z, codes = term_matrix_new(term, d)
    np.testing.assert_array_equal(codes, term.codes)
    np.testing.assert_array_equal(term_matrix_new(term, d.iloc[[1, 0]])[1], term.codes[[1, 0]])
    # nesting: the inner factor B:A of (1 | A/B) is built from pairs too
    d2 = d.assign(A=np.where(a == "p:q", "z", np.where(a == "p", "y:z", a)),
                  B=np.where(b == "t", "x:y", np.where(b == "q:t", "x", b)))
    design = build_design(parse_formula("y ~ 1 + (1 | A/B)"), d2)
    inner = [t for t in design.terms if t.group == "B:A"][0]
    assert inner.levels.count("x:y:z") == 2 and inner.codes[0] != inner.codes[1]
    np.testing.assert_array_equal(term_matrix_new(inner, d2)[1], inner.codes)


def test_more_random_effects_than_observations_is_an_error_for_lmms():
    rng = np.random.default_rng(5)
    d = pd.DataFrame({"y": rng.normal(size=12), "x": rng.normal(size=12), "g": np.arange(12) % 6})
    msg = ("number of observations (=12) <= number of random effects (=12) for term (x | g); "
           "the random-effects parameters and the residual variance (or scale parameter) are probably "
           "unidentifiable")
    with pytest.raises(JaxmixError, match=re.escape(msg)):
        jaxmix.fit("y ~ 1 + (x | g)", d)
    # checked per term: (1 | g) and (0 + x | g) have 6 random effects each for 12 rows
    check_nobs_vs_nre(build_design(parse_formula("y ~ 1 + (1 + x || g)"), d))
    with pytest.raises(JaxmixError, match=re.escape("(=10) <= number of random effects (=12) for term (x | g)")):
        check_nobs_vs_nre(build_design(parse_formula("y ~ 1 + (x | g) + (1 | h)"), d.assign(h=np.arange(12) % 2).iloc[:10]))
    # the design itself (used by GLMMs, which lme4 does not check) is still built
    assert build_design(parse_formula("y ~ 1 + (x | g)"), d).terms[0].nlevels == 6


def test_numpy_record_array_data(data, base_fit):
    rec = data.to_records(index=False)
    res = quiet_fit("y ~ x + (1 | g)", rec)
    assert_same_fit(res, base_fit, rtol=1e-10)
    structured = np.array(list(zip(data["y"], data["x"], data["g"])),
                          dtype=[("y", "f8"), ("x", "f8"), ("g", "U4")])
    assert_same_fit(quiet_fit("y ~ x + (1 | g)", structured), base_fit, rtol=1e-10)


def test_polars_data(data, base_fit):
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({c: data[c].tolist() for c in ["y", "x", "g"]})
    assert_same_fit(quiet_fit("y ~ x + (1 | g)", frame), base_fit, rtol=1e-10)


@pytest.mark.parametrize("bad,shown", [
    (np.zeros((10, 3)), r"got ndarray of shape \(10, 3\)"),
    ([[1.0, 2.0], [3.0, 4.0]], "got list"),
    (pd.Series([1.0, 2.0]), "got Series"),
])
@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_data_without_column_names_is_an_error(bad, shown, family):
    with pytest.raises(JaxmixError, match=r"data must be a pandas DataFrame .*with named columns, " + shown):
        jaxmix.fit("y ~ x + (1 | g)", bad, family=family)


def test_backtick_grouping_columns(data, base_fit):
    for name in ["my group", "Schüler"]:
        res = quiet_fit(f"y ~ x + (1 | `{name}`)", data.rename(columns={"g": name}))
        assert_same_fit(res, base_fit, rtol=1e-10)
        assert res.varcorr["group"].iloc[0] == name
        np.testing.assert_allclose(res.predict(data.rename(columns={"g": name})), res.fitted, rtol=1e-10)
    d = data.rename(columns={"g": "a b"}).assign(c=np.arange(len(data)) % 2)
    design = build_design(parse_formula("y ~ x + (x | `a b`/c)"), d)
    assert sorted(t.group for t in design.terms) == ["a b", "c:a b"]
    inner = [t for t in design.terms if t.group == "c:a b"][0]
    assert inner.nlevels == 8 and inner.columns == ["Intercept", "x"]


def test_grouping_codes_equal_the_tuples_sort(monkeypatch):
    """The vectorised coding gives the levels, codes and order of sorting the rows' tuples."""
    from jaxmix.spec import design as dm

    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "a": rng.choice(["b", "a", "c10", "c9"], 200), "n": rng.choice([3, 1, 2.5], 200),
        "m": rng.choice(["x", 1, 2], 200).tolist(), "t": rng.choice([True, False], 200),
        "c": pd.Categorical(rng.choice(["v", "u"], 200)),
    })
    for facs in [("a",), ("n",), ("m",), ("t",), ("c",), ("a", "n"), ("n", "a", "m"), ("c", "t")]:
        fast = dm.grouping_factor(df, facs)
        with monkeypatch.context() as mp:
            mp.setattr(dm, "_grouping_codes", lambda cols: None)
            slow = dm.grouping_factor(df, facs)
        assert fast[0] == slow[0] and fast[2] == slow[2]
        np.testing.assert_array_equal(fast[1], slow[1])


def test_grouping_codes_of_factors_with_more_combinations_than_int64(monkeypatch):
    """Six factors of 3,000 levels each (3,000⁶ > 2⁶³ combinations): the levels, their order and every
    row's code are those of the tuples' sort (one combined integer code overflowed here)."""
    from jaxmix.spec import design as dm

    rng = np.random.default_rng(1)
    df = pd.DataFrame({f"f{i}": rng.permutation(3000) for i in range(6)})
    facs = tuple(df.columns)
    fast = dm.grouping_factor(df, facs)
    with monkeypatch.context() as mp:
        mp.setattr(dm, "_grouping_codes", lambda cols: None)
        slow = dm.grouping_factor(df, facs)
    assert fast[2] == slow[2] == sorted(set(map(tuple, df.to_numpy().tolist())))
    np.testing.assert_array_equal(fast[1], slow[1])
    assert fast[0] == slow[0]


def test_intercept_term_is_formulaics_column_of_ones(data):
    """(1 | g) is built without a formulaic call per fit; its columns, Z and new-data matrix are what
    formulaic gives for the term's formula ``1`` (the same ones whatever rows the data keep)."""
    import formulaic

    sub = data.iloc[5:40]
    (term,) = build_design(parse_formula("y ~ x + (1 | g)"), sub).terms
    ref = formulaic.model_matrix("1", sub, na_action="raise", output="pandas")
    assert term.columns == [str(c) for c in ref.columns]
    np.testing.assert_array_equal(term.Z, ref.to_numpy(dtype=float))
    new = data.iloc[[0, 2, 50]]
    Z_new, codes = term_matrix_new(term, new)
    np.testing.assert_array_equal(Z_new, np.ones((3, 1)))
    assert codes.tolist() == [term.levels.index(g) for g in new["g"]]
