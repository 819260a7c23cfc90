"""What ``jaxmix run`` writes for a model with ``estimator = "bayes"``: summary.txt, posterior.csv (the
summary table), draws.csv (``[sampler] save_draws``), trace.png, fit.json."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import JaxmixError
from .records import environment_record, json_num, json_records, write_table

__all__ = ["BAYES_OUTPUT_STEMS", "trace_plot", "posterior_record", "write_posterior_outputs"]

BAYES_OUTPUT_STEMS = ("posterior", "draws")
TRACE_FILE = "trace.png"


def trace_plot(post, path=None, dpi: int = 120):
    """Trace (draw against iteration, one line per chain) and density of every parameter; returns the
    Figure and writes ``path`` when given (matplotlib's Agg canvas, no pyplot)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg as Canvas
        from matplotlib.figure import Figure
    except ImportError as e:
        raise JaxmixError('plots need matplotlib, an optional extra: pip install "jaxmix[plot]"') from e
    k = len(post.names)
    fig = Figure(figsize=(10, 1.9 * k + 0.5))
    Canvas(fig)
    axes = fig.subplots(k, 2, squeeze=False, gridspec_kw={"width_ratios": [3, 1]})
    for j, name in enumerate(post.names):
        x = post.values[..., j]
        for c in range(x.shape[0]):
            axes[j, 0].plot(x[c], lw=0.4, alpha=0.8)
            axes[j, 1].hist(x[c], bins=40, histtype="step", density=True)
        axes[j, 0].set_ylabel(name, fontsize=8)
        axes[j, 1].set_yticks([])
    axes[-1, 0].set_xlabel("draw (after warm-up)")
    fig.suptitle(f"{post.formula}: {post.chains} chains, {post.divergences} divergences", fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def posterior_record(post, wall_seconds: float, messages, config: dict | None, environment: bool = True) -> dict:
    """The content of fit.json for a Bayesian fit."""
    from .. import __version__

    summ = post.summary()
    rec = {"jaxmix_version": __version__, "estimator": "bayes", "formula": post.formula, "family": post.family,
           "link": post.link, "nobs": int(len(post.spec.y)),
           "random_effects": "integrated out" if post.integrated else "sampled (non-centred)",
           "chains": int(post.chains), "draws": int(post.n_draws), "warmup": int(post.warmup), "seed": int(post.seed),
           "chain_method": post.extra.get("chain_method"), "divergences": int(post.divergences),
           "priors": dict(post.priors), "posterior": json_records(summ.reset_index()),
           "max_r_hat": json_num(float(np.nanmax(summ["r_hat"]))),
           "min_ess_bulk": json_num(float(np.nanmin(summ["ess_bulk"]))),
           "sampling_seconds": json_num(post.seconds), "wall_seconds": json_num(wall_seconds),
           "warnings": list(messages)}
    if environment:
        rec.update(environment_record())
    if config is not None:
        rec["config"] = config
    return rec


def write_posterior_outputs(post, folder: Path, formats, save_draws: bool, plots: bool, dpi: int,
                            wall_seconds: float, messages, config: dict | None, environment: bool) -> tuple[list, dict]:
    """Write summary.txt, posterior.<fmt>, draws.<fmt> (optional), trace.png (optional), fit.json."""
    folder = Path(folder)
    files = []
    (folder / "summary.txt").write_text(str(post) + "\n", encoding="utf-8")
    files.append(folder / "summary.txt")
    files += write_table(post.summary(), folder, "posterior", formats, "parameter")
    if save_draws:
        files += write_table(post.draws, folder, "draws", formats)
    if plots:
        try:
            trace_plot(post, folder / TRACE_FILE, dpi=dpi)
            files.append(folder / TRACE_FILE)
        except JaxmixError as e:
            if "matplotlib" not in str(e):
                raise
    record = posterior_record(post, wall_seconds, messages, config, environment)
    record["files"] = sorted(p.name for p in files) + ["fit.json"]
    (folder / "fit.json").write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    files.append(folder / "fit.json")
    return files, record
