"""Pictures of a fitted mixed model: caterpillar, fitted group lines, shrinkage.

matplotlib is an optional extra (``pip install "jaxmix[plot]"``), imported only when a plot is drawn.
Figures are built on the Agg canvas directly (no pyplot, so no window and no change to the user's
backend); pass ``ax=`` to draw into an axes of your own.  Each function returns the Figure.

* :func:`caterpillar` — conditional modes b̂ with intervals b̂ ± z·condsd, sorted; with more levels
  than ``max_levels`` the most extreme levels at both ends and an evenly spaced sample of the middle.
* :func:`group_lines` — the data coloured by group and each group's line from ``res.coef()`` (β + b).
* :func:`shrinkage` — per-group least-squares (intercept, slope) against the mixed model's β + b.
* :func:`save_all` — writes the PNGs into a folder.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import JaxmixError
from .dists import norm_ppf

__all__ = ["caterpillar", "group_lines", "shrinkage", "shrinkage_table", "save_all", "safe_name"]

_MAX_LEGEND = 20


def _mpl():
    """matplotlib's Figure and Agg canvas, or a JaxmixError saying how to install it."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise JaxmixError('plots need matplotlib, an optional extra: pip install "jaxmix[plot]"') from e
    return Figure, FigureCanvasAgg


def _figure(width: float, height: float, ncols: int = 1, sharey: bool = False):
    Figure, Canvas = _mpl()
    fig = Figure(figsize=(width, height), dpi=100)
    Canvas(fig)
    axes = fig.subplots(1, ncols, sharey=sharey, squeeze=False)[0]
    return fig, list(axes)


def _colours(n: int):
    """n distinguishable colours: tab10 / tab20, or a continuous map for many groups."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["viridis"](v) for v in np.linspace(0.0, 0.95, n)]


def _mixed(res) -> None:
    if not res.is_mixed:
        raise JaxmixError(f"{res.formula!r} has no random-effect term: nothing to plot per group")


def _group_name(res, group) -> str:
    groups = list(dict.fromkeys(t.group for t in res.design.terms))
    if group is None:
        return groups[0]
    if group not in groups:
        raise JaxmixError(f"no grouping factor {group!r} in {res.formula!r}; the model has: {', '.join(groups)}")
    return group


# ---- caterpillar -----------------------------------------------------------------------------------

def thin_levels(n: int, max_levels: int) -> tuple[np.ndarray, int]:
    """Positions (in sorted order) to show of n levels, and the size of each tail.

    All when n <= max_levels; otherwise the ``tail = max_levels // 3`` lowest and highest and an evenly
    spaced sample of the middle, ``max_levels`` in all.
    """
    if max_levels < 3:
        raise JaxmixError(f"max_levels must be at least 3, got {max_levels!r}")
    if n <= max_levels:
        return np.arange(n), 0
    tail = max_levels // 3
    mid = max_levels - 2 * tail
    middle = np.unique(np.linspace(tail, n - tail - 1, mid + 2).round().astype(int)[1:-1])
    return np.concatenate([np.arange(tail), middle, np.arange(n - tail, n)]), tail


def caterpillar(res, group: str | None = None, term: str | None = None, level: float = 0.95,
                max_levels: int = 60, ax=None):
    """Conditional modes of one grouping factor with intervals b̂ ± z·condsd, sorted (lme4's dotplot).

    Args:
      res: a fitted :class:`jaxmix.MixedResults` with a random-effect term.
      group: the grouping factor (default: the model's first).
      term: one random-effect column (e.g. ``"Days"``); default all of the group's, one panel each,
        sorted by the first (with ``ax`` given only the first or the named term is drawn).
      level: interval coverage; z = Φ⁻¹((1 + level)/2).
      max_levels: with more levels, show the ``max_levels // 3`` most extreme at each end and an evenly
        spaced sample of the middle (the title says so; dotted lines mark the gaps).
      ax: a matplotlib Axes to draw into.

    Returns:
      the matplotlib Figure.
    """
    _mpl()
    _mixed(res)
    if not 0 < level < 1:
        raise JaxmixError(f"level must be between 0 and 1, got {level!r}")
    group = _group_name(res, group)
    re_ = res.ranef[res.ranef["group"] == group]
    terms = list(dict.fromkeys(re_["term"]))
    if term is not None:
        if term not in terms:
            raise JaxmixError(f"no random-effect term {term!r} for {group!r}; it has: {', '.join(terms)}")
        terms = [term]
    if ax is not None:
        terms = terms[:1]
    wide = {t: re_[re_["term"] == t].set_index("level") for t in terms}
    first = wide[terms[0]]
    order = np.argsort(first["mode"].to_numpy(), kind="stable")
    n = len(order)
    keep, tail = thin_levels(n, max_levels)
    levels = first.index.to_numpy()[order[keep]]
    m = len(levels)
    z = norm_ppf((1 + level) / 2)
    if ax is None:
        fig, axes = _figure(max(5.6 if tail else 5.0, 3.6 * len(terms) + 1.5), max(3.0, 0.17 * m + 1.6), len(terms),
                            sharey=True)
    else:
        fig, axes = ax.figure, [ax]
    ypos = np.arange(m)
    for k, (t, a) in enumerate(zip(terms, axes)):
        w = wide[t].loc[levels]
        mode, sd = w["mode"].to_numpy(float), w["condsd"].to_numpy(float)
        has_sd = np.isfinite(sd).any()
        a.errorbar(mode, ypos, xerr=z * sd if has_sd else None, fmt="o", ms=3.5, color="#1f4e99",
                   ecolor="#7f9cc9", elinewidth=1.2, capsize=0)
        a.axvline(0.0, color="0.35", lw=0.8, ls="--")
        for y in ((tail - 0.5, m - tail - 0.5) if tail else ()):
            a.axhline(y, color="0.6", lw=0.8, ls=":")
        a.set_xlabel(f"{t}: mode ± {z:.2f} cond. SD ({level:.0%})" if has_sd else f"{t}: conditional mode")
        a.set_ylim(-0.7, m - 0.3)
        a.grid(axis="x", color="0.9", lw=0.6)
        a.set_axisbelow(True)
        if k == 0:
            a.set_yticks(ypos)
            a.set_yticklabels([str(v) for v in levels], fontsize=9 if m <= 30 else 7)
            a.set_ylabel(group)
    title = f"Conditional modes of {group} ({n} levels)"
    if tail:
        title = (f"{group}: {m} of {n} levels shown\n{tail} lowest, {tail} highest, "
                 f"{m - 2 * tail} evenly spaced between (dotted lines)")
    if len(terms) > 1:
        fig.suptitle(title, fontsize=11)
    else:
        axes[0].set_title(title, fontsize=11)
    if ax is None:
        fig.tight_layout()
    return fig


# ---- group lines and shrinkage ----------------------------------------------------------------------

def _rows(res, x: str, group: str, data) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """x, y and group label of every row used in the fit, and the group's levels."""
    d = res.design
    term = next(t for t in d.terms if t.group == group)
    labels = np.asarray(term.levels, dtype=object)[term.codes]
    if data is not None:
        if x not in data.columns:
            raise JaxmixError(f"column {x!r} is not in the data")
        xv = pd.DataFrame(data).loc[d.rows, x].to_numpy(dtype=float)
    elif x in d.x_names:
        xv = d.X[:, d.x_names.index(x)]
    else:
        raise JaxmixError(f"{x!r} is not a fixed-effect column of {res.formula!r} "
                          f"({', '.join(d.x_names)}); pass data= to plot against a data column")
    return xv, np.asarray(d.y, dtype=float), labels, list(term.levels)


def _column_mean(res, col: str) -> float:
    d = res.design
    if col in d.x_names:
        return float(np.mean(d.X[:, d.x_names.index(col)]))
    for t in d.terms:
        if col in t.columns:
            return float(np.mean(t.Z[:, t.columns.index(col)]))
    return 0.0


def _lines(res, x: str, group: str) -> tuple[pd.DataFrame, tuple[float, float], bool]:
    """Per-level (intercept, slope) in x from coef(), other columns at their means; and β's line."""
    cg = res.coef()[group]
    if x not in cg.columns:
        raise JaxmixError(f"x={x!r} is not a coefficient of {res.formula!r}; choose one of: {', '.join(cg.columns)}")
    others = [c for c in cg.columns if c != x]
    means = np.array([_column_mean(res, c) for c in others])
    held = any(c != "Intercept" for c in others)
    lines = pd.DataFrame({"intercept": cg[others].to_numpy() @ means, "slope": cg[x].to_numpy()}, index=cg.index)
    fe = res.fixef
    fe_a = float(sum(fe.get(c, 0.0) * mu for c, mu in zip(others, means)))
    return lines, (fe_a, float(fe.get(x, 0.0))), held


def _inverse_link(res):
    if res.family == "gaussian":
        return lambda eta: eta
    from .spec.families import get_family

    fam = get_family(res.family, res.link)
    return lambda eta: np.asarray(fam.linkinv(eta))


def group_lines(res, x: str, group: str | None = None, data=None, ax=None):
    """The data as points coloured by group, and each group's fitted line β + b from ``res.coef()``.

    Lines are a_g + b_g·x over the group's range of x, with any other fixed-effect columns held at their
    sample means (for a GLMM, the inverse link of that, on the response scale); the dashed black line
    is the fixed effects' (population) line.  A legend is drawn for up to 20 groups.

    Args:
      res: a fitted mixed model.
      x: the fixed-effect column on the horizontal axis (e.g. ``"use"``).
      group: the grouping factor (default: the model's first).
      data: the fitted DataFrame, needed when ``x`` is a data column but not a column of X.
      ax: a matplotlib Axes to draw into.

    Returns:
      the matplotlib Figure.
    """
    _mpl()
    _mixed(res)
    group = _group_name(res, group)
    lines, (fa, fb), held = _lines(res, x, group)
    xv, yv, labels, levels = _rows(res, x, group, data)
    inv = _inverse_link(res)
    ng = len(levels)
    many = ng > _MAX_LEGEND
    colours = _colours(ng)
    fig, axes = (_figure(7.5 if not many else 6.4, 4.8) if ax is None else (ax.figure, [ax]))
    a = axes[0]
    for k, lev in enumerate(levels):
        sel = labels == lev
        a.scatter(xv[sel], yv[sel], s=10 if many else 18, color=colours[k], alpha=0.45 if many else 0.75,
                  edgecolors="none")
        if sel.any():
            grid = np.linspace(xv[sel].min(), xv[sel].max(), 50)
            a.plot(grid, inv(lines.loc[lev, "intercept"] + lines.loc[lev, "slope"] * grid), color=colours[k],
                   lw=0.8 if many else 1.8, alpha=0.7 if many else 1.0, label=None if many else str(lev))
    grid = np.linspace(np.min(xv), np.max(xv), 50)
    a.plot(grid, inv(fa + fb * grid), color="black", lw=2.0, ls="--", label="fixed effects (population)")
    response = res.design.parsed.response or "response"
    a.set_xlabel(x)
    a.set_ylabel(response)
    sub = " (other fixed effects at their means)" if held else ""
    a.set_title(f"{response} by {x}: one line per {group}, β + b ({ng} groups){sub}", fontsize=10)
    if many:
        a.legend(loc="best", fontsize=8, frameon=False)
    else:
        a.legend(title=group, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=9,
                 frameon=False)
    if ax is None:
        fig.tight_layout()
    return fig


def group_least_squares(xv: np.ndarray, yv: np.ndarray, labels: np.ndarray, levels: list) -> pd.DataFrame:
    """Per-group least-squares intercept and slope of y on x (NaN where x takes fewer than 2 values)."""
    rows = []
    for lev in levels:
        sel = labels == lev
        xs, ys = xv[sel], yv[sel]
        if np.unique(xs).size >= 2:
            slope, intercept = np.polyfit(xs, ys, 1)
        else:
            slope, intercept = np.nan, np.nan
        rows.append((intercept, slope))
    return pd.DataFrame(rows, columns=["intercept", "slope"], index=pd.Index(levels))


def shrinkage_table(res, x: str, group: str | None = None, data=None) -> pd.DataFrame:
    """Per group: least-squares and mixed-model (intercept, slope), and how far the model pulls them.

    Columns ``ls_intercept, ls_slope`` (the group's own least-squares line of y on x, other fixed effects
    ignored; NaN where x takes fewer than two values), ``intercept, slope`` (β + b from ``res.coef()``,
    other fixed-effect columns at their means) and ``pull``: the fraction of the way from the
    least-squares point to the fixed effects β that the model moved it, ‖mixed − LS‖ / ‖β − LS‖, with
    intercepts and slopes scaled by the SDs of the least-squares estimates.  No matplotlib needed.
    """
    _mixed(res)
    group = _group_name(res, group)
    lines, (fa, fb), _ = _lines(res, x, group)
    xv, yv, labels, levels = _rows(res, x, group, data)
    ls = group_least_squares(xv, yv, labels, levels)
    out = pd.DataFrame({"ls_intercept": ls["intercept"].to_numpy(), "ls_slope": ls["slope"].to_numpy(),
                        "intercept": lines.loc[levels, "intercept"].to_numpy(),
                        "slope": lines.loc[levels, "slope"].to_numpy()}, index=pd.Index(levels, name=group))
    sa = np.nanstd(out["ls_intercept"]) if out["ls_intercept"].notna().sum() > 1 else 1.0
    sb = np.nanstd(out["ls_slope"]) if out["ls_slope"].notna().sum() > 1 else 1.0
    sa, sb = (sa if sa > 0 else 1.0), (sb if sb > 0 else 1.0)
    moved = np.hypot((out["intercept"] - out["ls_intercept"]) / sa, (out["slope"] - out["ls_slope"]) / sb)
    away = np.hypot((fa - out["ls_intercept"]) / sa, (fb - out["ls_slope"]) / sb)
    out["pull"] = np.where(away > 0, moved / np.where(away > 0, away, 1.0), 0.0)
    out.attrs["fixed"] = (fa, fb)
    return out


def robust_range(core: np.ndarray, extra: np.ndarray, k: float = 6.0) -> tuple[float, float]:
    """An axis range covering every ``core`` value and the ``extra`` values within median ± k·1.4826·MAD
    of ``extra`` (a tiny group's wild least-squares slope lies outside and is drawn at the edge)."""
    core = np.asarray(core, dtype=float)
    extra = np.asarray(extra, dtype=float)
    core, extra = core[np.isfinite(core)], extra[np.isfinite(extra)]
    keep = extra
    if extra.size >= 3:
        med = np.median(extra)
        mad = 1.4826 * np.median(np.abs(extra - med))
        spread = max(mad, np.ptp(core) if core.size else 0.0, 1e-12 * max(abs(med), 1.0))
        keep = extra[np.abs(extra - med) <= k * spread]
    allv = np.concatenate([core, keep])
    if allv.size == 0:
        return -1.0, 1.0
    lo, hi = float(np.min(allv)), float(np.max(allv))
    if hi <= lo:
        pad = max(abs(lo), 1.0) * 0.05
        return lo - pad, hi + pad
    return lo, hi


def shrinkage(res, x: str, group: str | None = None, data=None, ax=None):
    """Per-group least-squares (intercept, slope) with an arrow to the mixed model's β + b.

    The open circles are each group's own least-squares line of y on x (other fixed effects ignored),
    the filled dots the mixed model's lines from ``res.coef()`` (other fixed-effect columns at their
    means); the arrows show how far the model pulls each group towards the fixed effects (the cross;
    the title gives the median ``pull`` of :func:`shrinkage_table`).  Groups whose x takes fewer than
    two values have no least-squares line and only a dot.  The axes cover the mixed-model points and the
    least-squares points within a robust range (:func:`robust_range`); a least-squares point beyond it
    (a tiny group's extreme slope) is drawn as a triangle at the edge and counted in the title.

    Args:
      res: a fitted mixed model.
      x: the fixed-effect column whose slope is plotted.
      group: the grouping factor (default: the model's first).
      data: the fitted DataFrame, needed when ``x`` is not a column of X.
      ax: a matplotlib Axes to draw into.

    Returns:
      the matplotlib Figure.
    """
    _mpl()
    group = _group_name(res, group) if res.is_mixed else group
    tab = shrinkage_table(res, x, group, data)
    fa, fb = tab.attrs["fixed"]
    levels = list(tab.index)
    ng = len(levels)
    many = ng > _MAX_LEGEND
    colours = _colours(ng) if not many else ["#1f4e99"] * ng
    fig, axes = (_figure(6.8, 5.4) if ax is None else (ax.figure, [ax]))
    a = axes[0]
    ok = tab[["ls_intercept", "ls_slope"]].notna().all(axis=1).to_numpy()
    lsx, lsy = tab["ls_intercept"].to_numpy(float), tab["ls_slope"].to_numpy(float)
    core_x = np.append(tab["intercept"].to_numpy(float), fa)
    core_y = np.append(tab["slope"].to_numpy(float), fb)
    (x0, x1), (y0, y1) = robust_range(core_x, lsx[ok]), robust_range(core_y, lsy[ok])
    x0, x1 = x0 - 0.08 * (x1 - x0), x1 + 0.08 * (x1 - x0)  # room for the labels
    y0, y1 = y0 - 0.06 * (y1 - y0), y1 + 0.06 * (y1 - y0)
    off = ok & ((lsx < x0) | (lsx > x1) | (lsy < y0) | (lsy > y1))
    inside = ok & ~off
    px, py = np.clip(lsx, x0, x1), np.clip(lsy, y0, y1)  # off-axes points drawn at the edge
    cols = np.array(colours, dtype=object)
    a.scatter(lsx[inside], lsy[inside], s=16 if many else 40, facecolors="none",
              edgecolors=cols[inside].tolist(), linewidths=1.0, label=f"per-{group} least squares")
    if off.any():
        a.scatter(px[off], py[off], s=40, marker="^", facecolors="none", edgecolors=cols[off].tolist(),
                  linewidths=1.0, label="least squares, off the axes (at the edge)", clip_on=False)
    a.scatter(tab["intercept"], tab["slope"], s=10 if many else 30, color=colours, zorder=3,
              label="mixed model β + b")
    a.scatter([fa], [fb], marker="X", s=120, color="black", zorder=4, label="fixed effects β")
    for k, lev in enumerate(levels):
        if not ok[k]:
            continue
        lx, ly = px[k], py[k]
        mx, my = tab.loc[lev, ["intercept", "slope"]]
        if np.hypot((mx - lx) / (x1 - x0), (my - ly) / (y1 - y0)) > 0.02:  # no arrow under the markers
            a.annotate("", xy=(mx, my), xytext=(lx, ly),
                       arrowprops=dict(arrowstyle="->", color=colours[k], lw=0.7 if many else 1.2,
                                       alpha=0.6 if many else 0.9, shrinkA=3, shrinkB=3))
        if not many:
            a.annotate(str(lev), (lx, ly), textcoords="offset points", xytext=(6, -12) if off[k] else (6, 5),
                       fontsize=8,
                       color=colours[k], zorder=5, annotation_clip=False,
                       bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.7))
    a.set_xlim(x0, x1)
    a.set_ylim(y0, y1)
    a.set_xlabel(f"intercept (at {x} = 0)")
    a.set_ylabel(f"slope of {x}")
    skipped = int((~ok).sum())
    note = f"; {skipped} without a least-squares line" if skipped else ""
    offnote = f"\n{int(off.sum())} least-squares point(s) off the axes, drawn as ▲ at the edge" if off.any() else ""
    pull = float(np.nanmedian(tab["pull"][ok])) if ok.any() else float("nan")
    a.set_title(f"Shrinkage: per-{group} least squares → mixed model\n"
                f"{ng} groups{note}; median pull towards β: {pull:.0%}{offnote}", fontsize=10)
    a.legend(loc="best", fontsize=8)
    a.grid(color="0.92", lw=0.6)
    a.set_axisbelow(True)
    if ax is None:
        fig.tight_layout()
    return fig


# ---- all at once ----------------------------------------------------------------------------------

def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "group"


def save_all(res, folder, x: str | None = None, group: str | None = None, data=None, dpi: int = 120,
             max_levels: int = 60, kinds=("caterpillar", "group_lines", "shrinkage")) -> list[Path]:
    """Write the plots as PNG into ``folder`` (created if needed) and return their paths.

    ``caterpillar.png`` for ``group`` (default: the first grouping factor) and
    ``caterpillar_<group>.png`` for every other grouping factor; with ``x`` also ``group_lines.png``
    and ``shrinkage.png``.  ``kinds`` picks among ``"caterpillar"``, ``"group_lines"`` and
    ``"shrinkage"``.  A model without random effects has nothing to draw: returns ``[]``.
    """
    unknown = [k for k in kinds if k not in ("caterpillar", "group_lines", "shrinkage")]
    if unknown:
        raise JaxmixError(f"unknown plot kind {unknown[0]!r}; choose among caterpillar, group_lines, shrinkage")
    if not res.is_mixed:
        return []
    _mpl()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    main = _group_name(res, group)
    figs = {}
    if "caterpillar" in kinds:
        figs["caterpillar.png"] = caterpillar(res, group=main, max_levels=max_levels)
        for g in dict.fromkeys(t.group for t in res.design.terms):
            if g != main:
                figs[f"caterpillar_{safe_name(g)}.png"] = caterpillar(res, group=g, max_levels=max_levels)
    if x is not None and "group_lines" in kinds:
        figs["group_lines.png"] = group_lines(res, x=x, group=main, data=data)
    if x is not None and "shrinkage" in kinds:
        figs["shrinkage.png"] = shrinkage(res, x=x, group=main, data=data)
    paths = []
    for name, fig in figs.items():
        path = folder / name
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    return paths
