"""``jaxmix run`` for a ``[sweep]`` config: many outcomes, optionally compared with single-level fits.

Writes into the output folder:

=========================  ==========================================================================
``summary.txt``            the sweep's per-outcome summary (and the single-level one)
``fixed.csv``              outcome, term, estimate, se, df, statistic, p, 95% interval (multilevel)
``varcorr.csv``            outcome, group, var1, var2, vcov, sdcor
``fit.json``               every outcome's nobs, loglik, status, fixef and se; times, devices, config
``fixed_single_level.csv`` with ``compare_single_level``: the same table without the random effects
``comparison.csv``         one row per outcome and compared covariate (:mod:`jaxmix.compare`); with
                           ``gee`` (default) also the marginal (GEE) estimate, robust SE and p
``report.txt``             a short text report of the comparison
``comparison.png``         estimates ± z·SE under both analyses (needs matplotlib: ``pip install .[plot]``;
                           not with ``[output] plots = false``)
=========================  ==========================================================================

and the manifest ``.jaxmix-run.json``; the folder's rules are :mod:`jaxmix.cli.outdir`'s.
"""
from __future__ import annotations

import importlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, RunConfig
from .records import environment_record
from .records import json_num as _num
from .outdir import COMPARE_OUTPUT_FILES, SWEEP_OUTPUT_FILES

__all__ = ["run_sweep_config", "SWEEP_OUTPUT_FILES", "COMPARE_OUTPUT_FILES", "SweepJob"]


@dataclass
class SweepJob:
    """What a sweep run produced: the sweeps, the comparison table and report, the files written."""

    multilevel: object
    single: object | None = None
    marginal: object | None = None  # jaxmix.GEEFits of the same fixed effects ([sweep] gee)
    comparison: object | None = None
    report: str | None = None
    files: list = field(default_factory=list)

    def summary(self) -> str:
        return self.report if self.report is not None else self.multilevel.summary()


def _structure_rows(sw) -> dict:
    """outcome -> its covariance-parameter rows of a structured sweep (empty for other sweeps)."""
    tab = sw.structure_table
    out: dict = {}
    for r in tab.itertuples(index=False):
        out.setdefault(r.outcome, []).append({
            "group": r.group, "var1": None if not isinstance(r.var1, str) else r.var1,
            "var2": None if not isinstance(r.var2, str) else r.var2, "kind": r.kind,
            "estimate": _num(r.estimate), "se": _num(r.se)})
    return out


def _sweep_record(sw) -> dict:
    se = sw.se
    struct = _structure_rows(sw)
    return {
        "formula": sw.formula, "family": sw.family, "method": sw.method,
        "variance": sw.problem.variance, "correlation": sw.problem.correlation,
        "compile_seconds": _num(sw.compile_seconds), "fit_seconds": _num(sw.seconds),
        "outcomes": {
            name: {"nobs": int(sw.nobs_[j]), "loglik": _num(sw.loglik_[j]), "converged": bool(sw.status_[j] == 0),
                   "status": int(sw.status_[j]), "message": sw.messages.iloc[j],
                   "fixef": {t: _num(v) for t, v in zip(sw.x_names, sw.beta[j])},
                   "se": {t: _num(v) for t, v in zip(sw.x_names, se.iloc[j])},
                   "theta": [_num(v) for v in sw.theta_[j]],
                   **({} if sw.dispersion_ is None else {"dispersion": {
                       "parameter": sw.problem.fam.dispersion, "estimate": _num(sw.dispersion_[0][j]),
                       "se": _num(sw.dispersion_[1][j])}}),
                   **({"structure": struct[name]} if name in struct else {})}
            for j, name in enumerate(sw.names)},
    }


def run_sweep_config(cfg: RunConfig) -> tuple[SweepJob, dict]:
    """Load the data, fit the sweep (and the single-level comparison), write the outputs."""
    from ..compare import compare_sweeps
    from .job import fit_messages, load_data
    from .outdir import check_output, planned_outputs, staged_output
    from ..devices import start as start_devices
    from ..spec.formula import parse_formula
    from ..api.many import fit_many

    s = cfg.sweep
    start_devices(cfg.devices.cpu_devices, cfg.devices.distributed)
    planned = planned_outputs(cfg)
    check_output(cfg, planned)  # before the data: the data file may be inside the output folder
    data = load_data(cfg)
    t0 = time.perf_counter()
    job = loading = None
    with fit_messages("sweep") as messages:
        opts = dict(max_iter=cfg.options.max_iter, gtol=cfg.options.gtol)
        multi = fit_many(s.formula, data, outcomes=list(s.outcomes), **s.fit_kwargs(), **opts)
        job = SweepJob(multilevel=multi)
        if s.compare_single_level:
            parsed = parse_formula(s.formula)
            if not parsed.is_mixed:
                raise ConfigError("[sweep] compare_single_level needs a formula with random-effect terms")
            job.single = fit_many("~ " + parsed.fixed, data, outcomes=list(s.outcomes), family=s.family,
                                  link=s.link, weights=s.weights, dtype=s.dtype, **opts)
            if cfg.output.plots:
                # the picture's matplotlib (~0.6 s of imports) on a thread while the GEE's numpy runs
                # on the other core (not during the single-level fits: their Python would wait)
                loading = _import_in_background("matplotlib.figure", "matplotlib.backends.backend_agg")
            if s.gee and s.weights is None:  # fit_gee takes no prior weights
                job.marginal = _fit_marginal(s, parsed, data, multi, job.single.fixef)
            job.comparison = compare_sweeps(multi, job.single, s.compare_terms, s.alpha, job.marginal)
        if loading is not None:
            loading.join()
    wall = time.perf_counter() - t0
    out = Path(cfg.output.dir)
    with staged_output(cfg, planned) as stage:  # moved into place at the end
        record = _write_sweep_outputs(job, cfg, multi, wall, messages, stage)
    job.files = [out / Path(p).relative_to(stage) for p in job.files]
    return job, record


def _import_in_background(*modules: str) -> threading.Thread:
    """A started thread importing ``modules`` (one that is missing or fails is left to the code that
    uses it to report)."""
    def run():
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - reported where the module is used
                return

    thread = threading.Thread(target=run, name="jaxmix-import", daemon=True)
    thread.start()
    return thread


def gee_clusters(s, multi) -> str:
    """The GEE's clusters: ``[sweep] gee_groups``, else the grouping factor with the fewest levels (the
    top level of a nested design: hospitals, whose covariates are the ones the comparison is about)."""
    if s.gee_groups:
        return s.gee_groups
    terms = sorted(multi.problem.design.terms, key=lambda t: t.nlevels)
    return terms[0].group


def _fit_marginal(s, parsed, data, multi, start=None):
    """The marginal model of the same fixed effects by GEE (``[sweep] gee``), all outcomes in one solve,
    from ``start`` (the single-level fits: the GLM the GEE starts from, fitted already); None when
    the automatic clusters are not a data column."""
    from ..gee.estimate import fit_gee

    groups = gee_clusters(s, multi)
    if groups not in data.columns:
        if s.gee_groups:
            raise ConfigError(f"[sweep] gee_groups {groups!r} is not a data column")
        return None  # e.g. (1 | a:b): no column names the clusters; the report says so
    return fit_gee("~ " + parsed.fixed, data, groups=groups, family=s.family, link=s.link, corstr=s.gee_corstr,
                   outcomes=list(s.outcomes), start=start)


def _marginal_record(fits) -> dict:
    first = next(iter(fits))
    return {"groups": first.groups, "corstr": first.corstr, "seconds": _num(fits.seconds),
            "outcomes": {r.response: {"nobs": r.nobs, "converged": r.converged, "n_iter": r.n_iter,
                                      "scale": _num(r.scale),
                                      "working_correlation": _num(r.dep) if r.corstr != "unstructured" else None,
                                      "fixef": {t: _num(v) for t, v in r.fixef.items()},
                                      "se": {t: _num(v) for t, v in r.se.items()},
                                      "se_naive": {t: _num(v) for t, v in r.se_naive.items()}}
                         for r in fits}}


def _write_sweep_outputs(job: SweepJob, cfg: RunConfig, multi, wall: float, messages, out: Path) -> dict:
    """Write the sweep's files into ``out`` (the staging folder); returns the record."""
    import jax

    from .. import __version__
    from ..compare import comparison_report, plot_comparison

    s = cfg.sweep
    files = [out / name for name in SWEEP_OUTPUT_FILES]
    summary, fixed, varcorr, fitjson = files
    text = multi.summary()
    if job.single is not None:
        text += "\n\nSingle-level fits (no random effects):\n" + job.single.summary()
    summary.write_text(text + "\n", encoding="utf-8")
    multi.coef_table().to_csv(fixed, index=False)
    multi.varcorr.to_csv(varcorr, index=False)
    record = {"jaxmix_version": __version__, "kind": "sweep", "multilevel": _sweep_record(multi),
              "wall_seconds": _num(wall), **environment_record(), "warnings": messages, "config": cfg.to_dict()}
    if job.single is not None:
        f_single, f_comp, f_report, f_png = (out / name for name in COMPARE_OUTPUT_FILES)
        job.single.coef_table().to_csv(f_single, index=False)
        job.comparison.to_csv(f_comp, index=False)
        notes = []
        if not cfg.output.plots:  # [output] plots = false
            files += [f_single, f_comp, f_report]
        elif plot_comparison(job.comparison, f_png, s.alpha):
            files += [f_single, f_comp, f_report, f_png]
        else:
            notes.append("(comparison.png not written: matplotlib is not installed; pip install '.[plot]')")
            files += [f_single, f_comp, f_report]
        if s.gee and job.marginal is None:
            notes.append("(no marginal (GEE) column: fit_gee takes no weights, and its clusters must be a data "
                         "column: set [sweep] gee_groups)")
        if job.marginal is not None:
            notes.append(f"Marginal (GEE) fits: {job.marginal.seconds:.1f} s, clusters = "
                         f"{next(iter(job.marginal)).groups}.")
        notes.append(f"Fitted in {wall:.1f} s ({multi.compile_seconds + job.single.compile_seconds:.1f} s "
                     f"compiling) on {', '.join(str(d) for d in jax.devices())}.")
        job.report = comparison_report(job.comparison, multi, job.single, s.alpha, notes, job.marginal)
        f_report.write_text(job.report, encoding="utf-8")
        differs = job.comparison["differs"].dropna().astype(bool)
        record["single_level"] = _sweep_record(job.single)
        if job.marginal is not None:
            record["marginal"] = _marginal_record(job.marginal)
        record["comparison"] = {"alpha": s.alpha, "compared": int(len(differs)), "differ": int(differs.sum()),
                                "share_differ": _num(differs.mean()) if len(differs) else None}
    fitjson.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    job.files = files
    return record
