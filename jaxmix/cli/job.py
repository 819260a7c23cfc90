"""Running a configuration: load the data, check every model before fitting, fit, write the outputs.

``jaxmix validate`` runs :func:`prepare_run` (data, designs, plot keys, formats, output folder; nothing
is created); ``jaxmix run`` runs :func:`run_config`.  For a one-model config the output folder gets
``summary.txt``, ``fixed.csv``, ``covparms.csv``, ``varcorr.csv``, ``ranef.csv``, ``fit.json``,
``anova.csv`` and ``bootstrap.csv`` when asked, and the PNG plots; with several named models each
model's files go into ``<out>/<name>/`` and ``summary.txt``, ``fit.json`` and ``lrt.csv`` into
``<out>``; every run also writes the manifest ``.jaxmix-run.json``, into a hidden folder first
(:mod:`jaxmix.cli.outdir`).  Problems are :class:`jaxmix.cli.config.ConfigError` with one-line messages.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

from .config import ConfigError, RunConfig
from ..errors import JaxmixError
from .outdir import OUTPUT_FILES, PLOT_FILES, check_output, planned_outputs, staged_output
from .records import environment_record, fit_record, json_num, json_records, write_table

__all__ = ["load_data", "check_model", "prepare_run", "run_config", "fit_messages", "one_line", "ModelJob",
           "OUTPUT_FILES", "PLOT_FILES"]

#: tables and records of one mixed model (a model without random effects has no covparms.csv / ranef.csv)


def one_line(message) -> str:
    return " ".join(str(message).split())


@contextlib.contextmanager
def fit_messages(section: str):
    """Run fits inside: a JaxmixError becomes a ConfigError naming ``[section]``; the warnings they
    raise are collected into the yielded list and printed one line each as ``jaxmix: warning: ...``."""
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield messages
        except ConfigError:
            raise
        except JaxmixError as e:
            raise ConfigError(f"[{section}] {e}") from None
    messages.extend(one_line(w.message) for w in caught
                    if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)))
    for m in messages:
        print(f"jaxmix: warning: {m}", file=sys.stderr)


# ---- data and output folder ---------------------------------------------------------------
def load_data(cfg: RunConfig) -> pd.DataFrame:
    """The configuration's data as a DataFrame; problems are :class:`ConfigError`."""
    from .. import datasets

    d = cfg.data
    if d.builtin is not None:
        try:
            return datasets.load(d.builtin, **d.args)
        except JaxmixError as e:
            raise ConfigError(f"[data] builtin {d.builtin!r}: {e}") from None
        except (TypeError, ValueError) as e:
            raise ConfigError(f"[data] builtin {d.builtin!r} with args {d.args}: {e}") from None
    path = d.path
    if not path.exists():
        raise ConfigError(f"[data] path: data file '{path}' not found")
    if path.is_dir():
        raise ConfigError(f"[data] path: '{path}' is a folder, not a data file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ConfigError(f"[data] path: reading the Parquet file '{path}' needs pyarrow "
                                  "(pip install pyarrow), which is not installed") from None
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if suffix in (".tsv", ".tab") else ",")
    except ConfigError:
        raise
    except Exception as e:  # pandas' and pyarrow's parser errors
        raise ConfigError(f"[data] path: cannot read '{path}': {one_line(e)}") from None
    if frame.empty:
        raise ConfigError(f"[data] path: data file '{path}' has no rows")
    return frame




def _check_formats(cfg: RunConfig) -> None:
    if "parquet" in cfg.output.formats:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError("[output] formats: 'parquet' needs pyarrow (pip install pyarrow), "
                              "which is not installed") from None


# ---- checks before any fit ----------------------------------------------------------------
def check_model(m, data: pd.DataFrame):
    """Build the model's design without fitting: formula columns, weights, offset, trials, and the
    structure AGQ needs.  Returns the :class:`jaxmix.spec.design.Design`; problems are ConfigError."""
    from ..spec.design import build_design, check_nobs_vs_nre
    from ..spec.formula import parse_formula

    section = m.label
    try:
        if m.family == "gaussian":
            design = build_design(parse_formula(m.formula), data, weights=m.weights, offset=m.offset)
            check_nobs_vs_nre(design)  # lmer's check, as jaxmix.fit makes it
        else:
            from ..api.generalized import prepare_glmm

            parsed, frame, trials, offset = prepare_glmm(m.formula, data, m.trials, m.offset, m.family)
            design = build_design(parsed, frame, weights=m.weights, offset=offset, check_nlevels=False,
                                  extra_columns=(trials,) if isinstance(trials, str) else ())
    except ConfigError:
        raise
    except JaxmixError as e:
        raise ConfigError(f"{section} {e}") from None
    if m.ddf is not None:
        from ..inference.wald import check_ddf_size

        try:
            check_ddf_size(m.ddf, design)
        except JaxmixError as e:
            raise ConfigError(f"{section} ddf {m.ddf!r}: {e}") from None
    if m.method == "AGQ" and (len(design.terms) != 1 or design.terms[0].q != 1):
        terms = ", ".join(f"({' + '.join('1' if c == 'Intercept' else c for c in t.columns)} | {t.group})"
                          for t in design.terms)
        raise ConfigError(f"{section} method 'AGQ' needs a single scalar random-effect term such as (1 | g); "
                          f"this model has {len(design.terms)}: {terms} (use method = 'Laplace')")
    return design


def _plot_choice(cfg: RunConfig, design, columns) -> tuple[str | None, str | None]:
    """The grouping factor and x column of the plots for one model (None, None without random effects)."""
    if not design.terms:
        return None, None
    groups = list(dict.fromkeys(t.group for t in design.terms))
    o = cfg.output
    group = o.plot_group if o.plot_group in groups else groups[0]
    if o.plot_x is not None:
        return group, (o.plot_x if o.plot_x in design.x_names else None)
    slopes = [c for t in design.terms if t.group == group for c in t.columns]
    for c in slopes + list(design.x_names):
        if c != "Intercept" and c in design.x_names and c in columns:
            return group, c
    return group, None


def _check_plot_keys(cfg: RunConfig, designs: dict) -> None:
    """[output] plot_group / plot_x must name a grouping factor / fixed-effect column of some model."""
    o = cfg.output
    mixed = {n: d for n, d in designs.items() if d.terms}
    if o.plot_group is not None and mixed:
        groups = list(dict.fromkeys(t.group for d in mixed.values() for t in d.terms))
        if o.plot_group not in groups:
            raise ConfigError(f"[output] plot_group {o.plot_group!r} is not a grouping factor of the models"
                              f"{config_did_you_mean(o.plot_group, groups)} (grouping factors: {', '.join(groups)})")
    if o.plot_x is not None and mixed:
        names = list(dict.fromkeys(x for d in mixed.values() for x in d.x_names))
        if o.plot_x not in names:
            raise ConfigError(f"[output] plot_x {o.plot_x!r} is not a fixed-effect column of the models"
                              f"{config_did_you_mean(o.plot_x, names)} (columns: {', '.join(names)})")


def config_did_you_mean(word, candidates) -> str:
    from .config import did_you_mean

    return did_you_mean(word, candidates)


def prepare_run(cfg: RunConfig) -> tuple[pd.DataFrame, dict]:
    """Everything ``validate`` checks: the data, every model's design and df method's size limit, plot
    keys, table formats and the output folder (:func:`jaxmix.cli.outdir.check_output`; nothing is created).
    Returns the data and name -> Design."""
    check_output(cfg, planned_outputs(cfg))  # first: the data file may be inside the output folder
    data = load_data(cfg)
    designs = {name: check_model(m, data) for name, m in cfg.models.items()}
    _check_plot_keys(cfg, designs)
    _check_formats(cfg)
    check_output(cfg, planned_outputs(cfg, designs))
    return data, designs


class ModelJob:
    """What a model run produced: the fits, the tables, the files written."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.results: dict = {}
        self.lrt: pd.DataFrame | None = None
        self.files: list[Path] = []
        self.text = ""

    @property
    def res(self):
        """The single model's results (one-model configs)."""
        return next(iter(self.results.values()))

    def summary(self) -> str:
        return self.text


_MPL_WARNED: list[bool] = []


def _plots(res, cfg: RunConfig, design, data, folder: Path) -> list[Path]:
    """The configured PNG plots of one mixed model; a missing matplotlib is one warning, no plots."""
    from .. import plots

    kinds = [k for k in cfg.output.plots if k == "caterpillar" or res.is_mixed]
    if not kinds or not res.is_mixed:
        return []
    group, x = _plot_choice(cfg, design, data.columns)
    if x is None:
        kinds = [k for k in kinds if k == "caterpillar"]
    if not kinds:
        return []
    try:
        return plots.save_all(res, folder, x=x, group=group, data=data, dpi=cfg.output.dpi, kinds=kinds)
    except JaxmixError as e:
        if "matplotlib" not in str(e):
            raise
        if not _MPL_WARNED:
            _MPL_WARNED.append(True)
            print('jaxmix: warning: plots skipped: matplotlib is not installed (pip install "jaxmix[plot]")',
                  file=sys.stderr)
        return []


def _model_outputs(name: str, res, cfg: RunConfig, design, data, folder: Path, wall: float, messages,
                   boot, environment: bool) -> tuple[list[Path], dict]:
    """Write one model's tables, plots and fit.json into ``folder``."""
    m = cfg.models[name]
    fmts = cfg.output.formats
    if m.estimator == "bayes":
        from .bayes_outputs import write_posterior_outputs

        files, record = write_posterior_outputs(res, folder, fmts, cfg.sampler.save_draws, bool(cfg.output.plots),
                                                cfg.output.dpi, wall, messages, cfg.to_dict() if environment else None,
                                                environment)
        record["name"] = name
        return files, record
    files = []
    (folder / "summary.txt").write_text(res.summary() + "\n", encoding="utf-8")
    files.append(folder / "summary.txt")
    tables = {}
    with fit_messages(m.label.strip("[]")) as more:
        fixed = res.coef_table(ddf=m.ddf, level=cfg.inference.level)
        tables["fixed"] = (fixed, "term")
        if res.is_mixed or "structure" in res.extra:
            tables["covparms"] = (res.covparm_table(), None)
        if m.anova:
            tables["anova"] = (res.anova(ddf=m.ddf), "term")
    tables["varcorr"] = (res.varcorr, None)
    if res.is_mixed:
        tables["ranef"] = (res.ranef, None)
    if boot is not None:
        ci = boot.ci(cfg.bootstrap.level)
        ci["boot_se"] = boot.se
        tables["bootstrap"] = (ci, "parameter")
    for stem, (frame, label) in tables.items():
        files += write_table(frame, folder, stem, fmts, label)
    files += _plots(res, cfg, design, data, folder)
    record = fit_record(res, cfg, wall, list(messages) + list(more),
                        tables={k: v for k, v in tables.items() if k not in ("ranef", "varcorr")},
                        environment=environment)
    record["name"] = name
    record["ddf"] = fixed.attrs.get("ddf", m.ddf)
    if boot is not None:
        record["bootstrap_info"] = {"n": int(boot.n), "failed": int(boot.n_failed), "seed": int(boot.seed),
                                    "level": cfg.bootstrap.level, "seconds": json_num(boot.seconds),
                                    "compile_seconds": json_num(boot.compile_seconds)}
    record["files"] = sorted(p.name for p in files) + ["fit.json"]
    (folder / "fit.json").write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    files.append(folder / "fit.json")
    return files, record


def _lrt_table(cfg: RunConfig, results: dict) -> pd.DataFrame:
    from ..api.anova import anova

    frames = []
    for names in cfg.comparisons.lrt:
        with fit_messages("comparisons"):
            tab = anova(*[results[n] for n in names], names=list(names),
                        refit=True if cfg.comparisons.refit is None else cfg.comparisons.refit)
        note = str(tab.attrs.get("note") or "")
        tab = tab.rename_axis("model").reset_index()
        tab.insert(0, "comparison", " vs ".join(names))
        tab["note"] = note
        frames.append(tab)
    return pd.concat(frames, ignore_index=True)


def run_config(cfg: RunConfig):
    """Load the data, fit the models and write the outputs; returns ``(job, fit record)``.

    ``job.results`` maps model names to :class:`jaxmix.MixedResults`; ``job.files`` lists the files.
    """
    from ..api.fit import fit

    if cfg.sweep is not None:
        raise ValueError("a [sweep] config runs through jaxmix.cli.sweep_job.run_sweep_config")
    from ..devices import start as start_devices

    start_devices(cfg.devices.cpu_devices, cfg.devices.distributed)
    data, designs = prepare_run(cfg)  # fail before any fit, but create nothing yet
    job = ModelJob(cfg)
    walls, msgs, boots = {}, {}, {}
    for name, m in cfg.models.items():
        t0 = time.perf_counter()
        if m.estimator == "bayes":  # jaxmix.sample with the [sampler] settings
            from ..bayes import sample

            with fit_messages(f"sampler] [{m.label.strip('[]')}") as messages:
                job.results[name] = sample(m.formula, data, **m.sample_kwargs(cfg.sampler))
            walls[name], msgs[name] = time.perf_counter() - t0, messages
            continue
        with fit_messages(m.label.strip("[]")) as messages:
            job.results[name] = fit(m.formula, data, **m.fit_kwargs(cfg.options))
        walls[name], msgs[name] = time.perf_counter() - t0, messages
    if cfg.comparisons is not None:
        job.lrt = _lrt_table(cfg, job.results)
    if cfg.bootstrap is not None:
        b = cfg.bootstrap
        for name in b.models:
            with fit_messages(f"bootstrap] [{cfg.models[name].label.strip('[]')}"):
                boots[name] = job.results[name].bootstrap(n=b.n, seed=b.seed, max_iter=cfg.options.max_iter,
                                                          gtol=cfg.options.gtol)
    out = Path(cfg.output.dir)
    with staged_output(cfg, planned_outputs(cfg, designs)) as stage:  # moved into place at the end
        record = _write_outputs(job, cfg, designs, data, walls, msgs, boots, stage)
    job.files = [out / Path(p).relative_to(stage) for p in job.files]
    return job, record


def _summary_text(res) -> str:
    """The printed summary of an ML fit or of a posterior (``estimator = "bayes"``)."""
    text = res.summary()
    return text if isinstance(text, str) else str(res)


def _write_outputs(job: ModelJob, cfg: RunConfig, designs, data, walls, msgs, boots, out: Path) -> dict:
    """Write every model's files into ``out`` (the staging folder); returns the run's record."""
    single = len(cfg.models) == 1
    records = {}
    for name in cfg.models:
        folder = out if single else out / name
        folder.mkdir(parents=True, exist_ok=True)
        files, records[name] = _model_outputs(name, job.results[name], cfg, designs[name], data, folder,
                                              walls[name], msgs[name], boots.get(name), environment=single)
        job.files += files
    if single:
        job.text = _summary_text(job.res)
        return records[next(iter(records))]
    parts = [f"== {n}: {r.formula}\n{_summary_text(r)}" for n, r in job.results.items()]
    if job.lrt is not None:
        job.files += write_table(job.lrt, out, "lrt", cfg.output.formats)
        shown = job.lrt.drop(columns=["note"]).to_string(index=False, float_format=lambda v: f"{v:.6g}")
        notes = "".join(f"\n{n}" for n in dict.fromkeys(job.lrt["note"]) if n)
        parts.append(f"== likelihood-ratio tests\n{shown}{notes}")
    job.text = "\n\n".join(parts)
    (out / "summary.txt").write_text(job.text + "\n", encoding="utf-8")
    record = {"jaxmix_version": records[next(iter(records))]["jaxmix_version"], "kind": "models",
              "models": records, "lrt": None if job.lrt is None else json_records(job.lrt),
              "wall_seconds": json_num(sum(walls.values())), **environment_record(), "config": cfg.to_dict()}
    (out / "fit.json").write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    job.files += [out / "summary.txt", out / "fit.json"]
    return record


