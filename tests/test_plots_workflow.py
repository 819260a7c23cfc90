"""Readable plots: the shrinkage plot with a tiny group's extreme least-squares slope, a sweep comparison
with no compared term, and compare_terms given as term names."""
import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

import jaxmix  # noqa: E402
from jaxmix import plots  # noqa: E402
from jaxmix.compare import NO_TERMS_MESSAGE, compare_sweeps, comparison_report, plot_comparison  # noqa: E402
from conftest import load_csv  # noqa: E402


def test_robust_range_leaves_out_a_wild_value():
    lo, hi = plots.robust_range(np.array([0.0, 1.0]), np.array([0.2, 0.5, 0.9, 1.1, 500.0]))
    assert (lo, hi) == (0.0, 1.1)
    assert plots.robust_range(np.array([0.0, 1.0]), np.array([-0.5, 2.0])) == (-0.5, 2.0)  # too few to judge


def test_shrinkage_axes_exclude_a_tiny_groups_extreme_slope():
    d = load_csv("sleepstudy.csv")
    # two rows 0.1 day apart: a least-squares slope of 300 that carries almost no information
    tiny = pd.DataFrame({"Subject": [999, 999], "Days": [4.0, 4.1], "Reaction": [300.0, 330.0]})
    d = pd.concat([d, tiny], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = jaxmix.fit("Reaction ~ Days + (Days | Subject)", d)
    tab = plots.shrinkage_table(res, x="Days")
    assert tab.loc["999", "ls_slope"] == pytest.approx(300.0)
    assert tab.loc["999", "slope"] < 30  # the model shrinks it to the others
    fig = plots.shrinkage(res, x="Days")
    ax = fig.axes[0]
    y0, y1 = ax.get_ylim()
    assert y1 < 100  # the extreme slope (300) would squash the other 18 subjects into a line
    assert tab["slope"].max() < y1 and tab["ls_slope"].drop("999").max() < y1  # everything else is shown
    assert "1 least-squares point(s) off the axes" in ax.get_title()
    fig.canvas.draw()


@pytest.fixture(scope="module")
def sweeps():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(12), 8)
    site = np.array(["a", "b", "c"])[rng.integers(0, 3, g.size)]  # varies within groups
    x = rng.normal(size=g.size)
    base = rng.normal(size=12)[g] + 0.5 * x + (site == "b") * 0.7
    d = pd.DataFrame({"g": g, "site": site, "x": x, "y1": base + rng.normal(size=g.size),
                      "y2": base + rng.normal(size=g.size)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        multi = jaxmix.fit_many("~ x + site + (1 | g)", d, outcomes=["y1", "y2"])
        single = jaxmix.fit_many("~ x + site", d, outcomes=["y1", "y2"])
    return multi, single


def test_compare_terms_accepts_term_names(sweeps):
    multi, single = sweeps
    tab = compare_sweeps(multi, single, terms=["site", "x"])
    assert list(dict.fromkeys(tab["term"])) == ["site[T.b]", "site[T.c]", "x"]
    same = compare_sweeps(multi, single, terms=["site[T.b]", "site[T.c]", "x"])
    pd.testing.assert_frame_equal(tab, same)
    # the numbers are the sweeps' own estimates
    assert tab.set_index(["outcome", "term"]).loc[("y1", "x"), "estimate_multilevel"] == \
        pytest.approx(multi.fixef.loc["y1", "x"])
    with pytest.raises(jaxmix.JaxmixError, match="'sight'"):
        compare_sweeps(multi, single, terms=["sight"])


def test_no_compared_term_writes_a_figure_that_says_why(sweeps, tmp_path):
    multi, single = sweeps
    tab = compare_sweeps(multi, single)  # no covariate is constant within g
    assert len(tab) == 0
    path = tmp_path / "comparison.png"
    assert plot_comparison(tab, path) is True and path.stat().st_size > 0
    from matplotlib.image import imread

    img = imread(path)
    assert img[..., :3].std() > 0  # not an empty canvas: the message is drawn
    assert "No covariate compared" in comparison_report(tab, multi, single)
    assert "compare_terms" in NO_TERMS_MESSAGE
