"""jaxmix.plots: caterpillar, group lines, shrinkage, save_all; the optional-matplotlib error."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

import jaxmix
from jaxmix import plots

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def sleep():
    data = jaxmix.datasets.sleepstudy()
    return jaxmix.fit("Reaction ~ Days + (Days | Subject)", data, method="REML"), data


def _sim(n_groups: int = 200, n_per: int = 6, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), n_per)
    x = rng.uniform(0, 10, g.size)
    y = 10 + 2 * x + rng.normal(0, 3, n_groups)[g] + rng.normal(0, 2, g.size)
    return pd.DataFrame({"g": [f"G{i:03d}" for i in g], "x": x, "y": y})


@pytest.fixture(scope="module")
def many():
    data = _sim()
    return jaxmix.fit("y ~ x + (1 | g)", data, method="REML"), data


def _texts_inside(fig) -> None:
    """Each axes with its title, labels, drawn tick labels and legend lies inside the figure (nothing cut off)."""
    r = fig.canvas.get_renderer()
    fb = fig.bbox
    boxes = [ax.get_tightbbox(r) for ax in fig.axes]
    if fig._suptitle is not None:
        boxes.append(fig._suptitle.get_window_extent(r))
    for bb in boxes:
        assert bb.x0 >= fb.x0 - 1 and bb.x1 <= fb.x1 + 1 and bb.y0 >= fb.y0 - 1 and bb.y1 <= fb.y1 + 1, (bb, fb)


def _labelled(ax) -> None:
    assert ax.get_xlabel().strip()
    assert ax.get_ylabel().strip()


def test_caterpillar_panels_sorted_and_labelled(sleep):
    res, _ = sleep
    fig = plots.caterpillar(res)
    assert len(fig.axes) == 2  # Intercept and Days, one panel each
    _labelled(fig.axes[0])
    assert "Intercept" in fig.axes[0].get_xlabel() and "Days" in fig.axes[1].get_xlabel()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 18
    modes = res.ranef.query("term == 'Intercept'").set_index("level")["mode"]
    assert list(modes.loc[labels]) == sorted(modes)  # bottom to top: increasing
    _texts_inside(fig)


def test_caterpillar_one_term_into_own_axes(sleep):
    from matplotlib.figure import Figure

    res, _ = sleep
    fig = plots.caterpillar(res, term="Days", level=0.9)
    assert len(fig.axes) == 1 and "Days" in fig.axes[0].get_xlabel() and "90%" in fig.axes[0].get_xlabel()
    own = Figure()
    ax = own.add_subplot()
    assert plots.caterpillar(res, ax=ax) is own
    assert "Intercept" in ax.get_xlabel()


def test_caterpillar_thins_200_groups(many):
    res, _ = many
    fig = plots.caterpillar(res, max_levels=60)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert 50 <= len(labels) <= 60
    modes = res.ranef.set_index("level")["mode"].sort_values()
    assert labels[:20] == list(modes.index[:20]) and labels[-20:] == list(modes.index[-20:])  # the extremes
    assert "60 of 200" in ax.get_title()
    _labelled(ax)
    _texts_inside(fig)
    assert len(plots.caterpillar(res, max_levels=30).axes[0].get_yticklabels()) <= 30
    full = plots.caterpillar(res, max_levels=500).axes[0]
    assert len(full.get_yticklabels()) == 200 and "200 levels" in full.get_title()


def test_thin_levels():
    keep, tail = plots.thin_levels(10, 60)
    assert tail == 0 and list(keep) == list(range(10))
    keep, tail = plots.thin_levels(1000, 60)
    assert tail == 20 and len(keep) == 60 and len(set(keep)) == 60
    assert list(keep[:20]) == list(range(20)) and list(keep[-20:]) == list(range(980, 1000))
    assert np.all(np.diff(keep) > 0)
    with pytest.raises(jaxmix.JaxmixError, match="max_levels"):
        plots.thin_levels(10, 2)


def test_group_lines(sleep, many):
    res, data = sleep
    fig = plots.group_lines(res, x="Days", group="Subject")
    ax = fig.axes[0]
    _labelled(ax)
    assert ax.get_xlabel() == "Days" and ax.get_ylabel() == "Reaction"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(legend) == 19 and "308" in legend  # 18 subjects + the population line
    assert len(ax.lines) == 19
    _texts_inside(fig)
    # the fitted line of a subject is β + b from coef()
    c = res.coef()["Subject"].loc["308"]
    line = ax.lines[0]
    assert np.allclose(line.get_ydata(), c["Intercept"] + c["Days"] * line.get_xdata())
    # a data column works too
    assert plots.group_lines(res, x="Days", data=data).axes[0].get_xlabel() == "Days"
    res2, _ = many
    ax2 = plots.group_lines(res2, x="x").axes[0]
    assert len(ax2.get_legend().get_texts()) == 1  # no legend of 200 groups
    assert len(ax2.lines) == 201


def test_shrinkage_and_table(sleep, many):
    res, data = sleep
    tab = plots.shrinkage_table(res, x="Days", group="Subject")
    assert list(tab.columns) == ["ls_intercept", "ls_slope", "intercept", "slope", "pull"]
    d308 = data[data["Subject"] == 308]
    slope, intercept = np.polyfit(d308["Days"], d308["Reaction"], 1)
    assert tab.loc["308", "ls_slope"] == pytest.approx(slope) and tab.loc["308", "ls_intercept"] == pytest.approx(intercept)
    coef = res.coef()["Subject"]
    assert np.allclose(tab["slope"], coef["Days"]) and np.allclose(tab["intercept"], coef["Intercept"])
    assert ((tab["pull"] > 0) & (tab["pull"] < 1)).all()  # every subject pulled part of the way
    fig = plots.shrinkage(res, x="Days")
    ax = fig.axes[0]
    _labelled(ax)
    assert "slope of Days" == ax.get_ylabel()
    _texts_inside(fig)
    res2, _ = many
    ax2 = plots.shrinkage(res2, x="x").axes[0]
    _labelled(ax2)
    assert "200 groups" in ax2.get_title()


def test_save_all(tmp_path, sleep):
    res, _ = sleep
    paths = plots.save_all(res, tmp_path / "a")
    assert [p.name for p in paths] == ["caterpillar.png"]
    paths = plots.save_all(res, tmp_path / "b", x="Days", group="Subject")
    assert [p.name for p in paths] == ["caterpillar.png", "group_lines.png", "shrinkage.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    ols = jaxmix.fit("Reaction ~ Days", jaxmix.datasets.sleepstudy())
    assert plots.save_all(ols, tmp_path / "c") == []


def test_bad_arguments(sleep):
    res, _ = sleep
    with pytest.raises(jaxmix.JaxmixError, match="no grouping factor 'Nope'.*Subject"):
        plots.caterpillar(res, group="Nope")
    with pytest.raises(jaxmix.JaxmixError, match="no random-effect term 'x'"):
        plots.caterpillar(res, term="x")
    with pytest.raises(jaxmix.JaxmixError, match="level"):
        plots.caterpillar(res, level=1.5)
    with pytest.raises(jaxmix.JaxmixError, match="x='Reaction2' is not a coefficient.*Days"):
        plots.group_lines(res, x="Reaction2")
    ols = jaxmix.fit("Reaction ~ Days", jaxmix.datasets.sleepstudy())
    with pytest.raises(jaxmix.JaxmixError, match="no random-effect term"):
        plots.caterpillar(ols)


def test_missing_matplotlib(monkeypatch, sleep, tmp_path):
    res, _ = sleep
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    for call in (lambda: plots.caterpillar(res), lambda: plots.group_lines(res, x="Days"),
                 lambda: plots.shrinkage(res, x="Days"), lambda: plots.save_all(res, tmp_path)):
        with pytest.raises(jaxmix.JaxmixError, match=r'pip install "jaxmix\[plot\]"'):
            call()
    assert len(plots.shrinkage_table(res, x="Days")) == 18  # the numbers need no matplotlib


def test_save_all_kinds(tmp_path, sleep):
    res, data = sleep
    paths = plots.save_all(res, tmp_path / "k", x="Days", kinds=("shrinkage",))
    assert [p.name for p in paths] == ["shrinkage.png"]
    paths = plots.save_all(res, tmp_path / "k2", x="Days", kinds=("caterpillar", "group_lines"))
    assert [p.name for p in paths] == ["caterpillar.png", "group_lines.png"]
    with pytest.raises(jaxmix.JaxmixError, match="unknown plot kind 'pie'"):
        plots.save_all(res, tmp_path / "k3", kinds=("pie",))
