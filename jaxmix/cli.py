"""The ``jaxmix`` command.

::

    jaxmix run CONFIG.toml [--out DIR] [--quiet] [--set KEY=VALUE ...]   fit the models, write the results
    jaxmix validate CONFIG.toml [--out DIR] [--set KEY=VALUE ...]        check config, data, formulas; no fit
    jaxmix datasets                                                      list the built-in data sets

``run`` writes, for a one-model config, ``summary.txt``, ``fixed.csv``, ``covparms.csv``,
``varcorr.csv``, ``ranef.csv``, ``fit.json``, ``anova.csv`` and ``bootstrap.csv`` when asked, and the
PNG plots (caterpillar, group lines, shrinkage) into the output folder; with several named models
each model's files go into ``<out>/<name>/`` and ``summary.txt``, ``fit.json`` and the
likelihood-ratio table ``lrt.csv`` into ``<out>``.  A ``[sweep]`` config (many outcomes,
:func:`jaxmix.fit_many`) writes the files of :mod:`jaxmix.sweep_job`.  ``--set section.key=value``
overrides a key of the file (value read as TOML, else a string).  Any problem with the
configuration, the data or the model prints one line ``jaxmix: error: ...`` on stderr and exits
with status 2 (``--debug`` shows the traceback instead).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .config import ConfigError, RunConfig, load_config
from .errors import JaxmixError

__all__ = ["main", "load_data", "run_config", "OUTPUT_FILES", "PLOT_FILES", "fit_record", "cache_info",
           "package_versions"]

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2
#: tables and records of one mixed model (a model without random effects has no covparms.csv / ranef.csv)
OUTPUT_FILES = ("summary.txt", "fixed.csv", "covparms.csv", "varcorr.csv", "ranef.csv", "fit.json")
PLOT_FILES = {"caterpillar": "caterpillar.png", "group_lines": "group_lines.png", "shrinkage": "shrinkage.png"}


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line too."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"jaxmix: error: {_one_line(message)} (see '{self.prog} --help')\n")


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
    messages.extend(_one_line(w.message) for w in caught
                    if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)))
    for m in messages:
        print(f"jaxmix: warning: {m}", file=sys.stderr)


def _one_line(message) -> str:
    return " ".join(str(message).split())


def _err(message) -> None:
    print(f"jaxmix: error: {_one_line(message)}", file=sys.stderr)


# ---- data and output folder ---------------------------------------------------------------
def load_data(cfg: RunConfig) -> pd.DataFrame:
    """The configuration's data as a DataFrame; problems are :class:`ConfigError`."""
    from . import datasets

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
        raise ConfigError(f"[data] path: cannot read '{path}': {_one_line(e)}") from None
    if frame.empty:
        raise ConfigError(f"[data] path: data file '{path}' has no rows")
    return frame


def _check_writable(directory: Path) -> None:
    """Whether ``directory`` could be created and written, without creating anything."""
    p = Path(os.path.abspath(directory))
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"output folder '{directory}': '{probe}' exists and is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"output folder '{directory}' is not writable (no write permission on '{probe}')")


def _prepare_output(directory: Path) -> None:
    """Create the output folder and prove it is writable before spending time on the fit."""
    _check_writable(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".jaxmix-probe-"):
            pass
    except OSError as e:
        raise ConfigError(f"output folder '{directory}' is not writable: {e.strerror or e}") from None


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
    structure AGQ needs.  Returns the :class:`jaxmix.design.Design`; problems are ConfigError."""
    from .design import build_design
    from .formula import parse_formula

    section = m.label
    try:
        if m.family == "gaussian":
            design = build_design(parse_formula(m.formula), data, weights=m.weights, offset=m.offset)
        else:
            from .model_glmm import _prepare

            parsed, frame, trials, offset = _prepare(m.formula, data, m.trials, m.offset, m.family)
            design = build_design(parsed, frame, weights=m.weights, offset=offset, check_nlevels=False,
                                  extra_columns=(trials,) if isinstance(trials, str) else ())
    except ConfigError:
        raise
    except JaxmixError as e:
        raise ConfigError(f"{section} {e}") from None
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
    """Everything ``validate`` checks: the data, every model's design, plot keys, table formats and the
    output folder (nothing is created).  Returns the data and name -> Design."""
    data = load_data(cfg)
    designs = {name: check_model(m, data) for name, m in cfg.models.items()}
    _check_plot_keys(cfg, designs)
    _check_formats(cfg)
    _check_writable(cfg.output.dir)
    return data, designs


# ---- results ------------------------------------------------------------------------------
def _num(x):
    """JSON-safe float (NaN and inf become null)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _records(frame: pd.DataFrame, index_label: str | None = None) -> list[dict]:
    """A table as a list of JSON-safe row dicts (the index as ``index_label`` when given)."""
    df = frame.reset_index().rename(columns={"index": index_label}) if index_label else frame
    rows = []
    for row in df.to_dict(orient="records"):
        out = {}
        for k, v in row.items():
            if v is None or isinstance(v, (bool, np.bool_)):
                out[str(k)] = None if v is None else bool(v)
            elif isinstance(v, (int, float, np.integer, np.floating)):
                out[str(k)] = int(v) if isinstance(v, (int, np.integer)) else _num(v)
            else:
                out[str(k)] = None if pd.isna(v) else str(v)
        rows.append(out)
    return rows


def cache_info() -> dict:
    """Whether JAX's persistent compilation cache is on, and its folder (see :mod:`jaxmix._cache`)."""
    import jax

    folder = jax.config.jax_compilation_cache_dir
    enabled = bool(folder) and bool(getattr(jax.config, "jax_enable_compilation_cache", True))
    return {"enabled": enabled, "dir": folder or None}


def package_versions() -> dict:
    """Versions of Python, jaxmix and the packages the numbers depend on (None: not installed)."""
    import platform
    from importlib import metadata

    from . import __version__

    out = {"python": platform.python_version(), "jaxmix": __version__}
    for pkg in ("jax", "jaxlib", "numpy", "scipy", "pandas", "optax", "formulaic", "matplotlib", "pyarrow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _environment() -> dict:
    import jax

    return {"versions": package_versions(), "devices": [str(d) for d in jax.devices()],
            "backend": jax.default_backend(), "compilation_cache": cache_info()}


def fit_record(res, cfg: RunConfig | None = None, wall_seconds: float | None = None,
               warning_messages: list[str] | None = None, tables: dict | None = None,
               environment: bool = True) -> dict:
    """The content of ``fit.json``: every number of the fit, its tables, timings and the config.

    ``tables``: name -> DataFrame already computed (``fixed``, ``covparms``, ``anova``, ``bootstrap``);
    ``environment``: include package versions, devices and the compilation cache.
    """
    from . import __version__

    opt = res.optim
    rec = {
        "jaxmix_version": __version__,
        "formula": res.formula,
        "family": res.family,
        "link": res.link,
        "method": res.method,
        "nobs": int(res.nobs),
        "ngroups": {str(k): int(v) for k, v in res.ngroups.items()},
        "n_params": int(res.n_params),
        "loglik": _num(res.loglik),
        "objective": _num(res.objective),
        "deviance": _num(res.deviance),
        "aic": _num(res.aic),
        "bic": _num(res.bic),
        "sigma": _num(res.sigma),
        "theta": [_num(t) for t in np.asarray(res.theta, dtype=float).ravel()],
        "fixef": {str(k): _num(v) for k, v in res.fixef.items()},
        "se": {str(k): _num(v) for k, v in res.se.items()},
        "vcov": [[_num(v) for v in row] for row in np.asarray(res.vcov_beta, dtype=float)],
        "varcorr": _records(res.varcorr),
        "converged": bool(res.converged),
        "singular": bool(res.singular),
        "optimizer": None if opt is None else {
            "optimizer": opt.optimizer, "status": int(opt.status), "message": str(opt.message),
            "iterations": int(opt.iterations), "evaluations": int(opt.evaluations),
            "grad": [_num(g) for g in np.asarray(opt.grad, dtype=float).ravel()],
            "grad_norm": _num(opt.grad_norm), "hess_min_eig": _num(opt.hess_min_eig)},
        "optimizer_message": None if opt is None else str(opt.message),
        "iterations": None if opt is None else int(opt.iterations),
        "fit_seconds": None if opt is None else _num(opt.fit_seconds),
        "compile_seconds": None if opt is None else _num(opt.compile_seconds),
        "wall_seconds": _num(wall_seconds),
        "warnings": list(warning_messages or []),
    }
    for name, (frame, label) in (tables or {}).items():
        rec[name] = _records(frame, label)
    if environment:
        rec.update(_environment())
        rec["config"] = None if cfg is None else cfg.to_dict()
    return rec


def _write_table(frame: pd.DataFrame, folder: Path, stem: str, formats, index_label=None) -> list[Path]:
    df = frame.reset_index().rename(columns={"index": index_label}) if index_label else frame.copy()
    if index_label and index_label not in df.columns:  # a named index
        df = df.rename(columns={df.columns[0]: index_label})
    paths = []
    for fmt in formats:
        path = folder / f"{stem}.{fmt}"
        if fmt == "csv":
            df.to_csv(path, index=False)
        else:
            pq = df.copy()
            for c in pq.columns:
                if pq[c].dtype == object:
                    pq[c] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in pq[c]]
            pq.to_parquet(path, index=False)
        paths.append(path)
    return paths


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
    from . import plots

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
    files = []
    (folder / "summary.txt").write_text(res.summary() + "\n", encoding="utf-8")
    files.append(folder / "summary.txt")
    tables = {}
    with fit_messages(m.label.strip("[]")) as more:
        fixed = res.coef_table(ddf=m.ddf, level=cfg.inference.level)
        tables["fixed"] = (fixed, "term")
        if res.is_mixed:
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
        files += _write_table(frame, folder, stem, fmts, label)
    files += _plots(res, cfg, design, data, folder)
    record = fit_record(res, cfg, wall, list(messages) + list(more),
                        tables={k: v for k, v in tables.items() if k not in ("ranef", "varcorr")},
                        environment=environment)
    record["name"] = name
    record["ddf"] = fixed.attrs.get("ddf", m.ddf)
    if boot is not None:
        record["bootstrap_info"] = {"n": int(boot.n), "failed": int(boot.n_failed), "seed": int(boot.seed),
                                    "level": cfg.bootstrap.level, "seconds": _num(boot.seconds),
                                    "compile_seconds": _num(boot.compile_seconds)}
    record["files"] = sorted(p.name for p in files) + ["fit.json"]
    (folder / "fit.json").write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    files.append(folder / "fit.json")
    return files, record


def _lrt_table(cfg: RunConfig, results: dict) -> pd.DataFrame:
    from .anova import anova

    frames = []
    for names in cfg.comparisons.lrt:
        with fit_messages("comparisons"):
            tab = anova(*[results[n] for n in names], names=list(names), refit=cfg.comparisons.refit)
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
    from .model import fit

    if cfg.sweep is not None:
        from .sweep_job import run_sweep_config

        return run_sweep_config(cfg)
    from .devices import init_distributed, maybe_init_from_env

    if cfg.devices.distributed:
        init_distributed()
    else:
        maybe_init_from_env()
    data, designs = prepare_run(cfg)  # fail before any fit, but create nothing yet
    job = ModelJob(cfg)
    walls, msgs, boots = {}, {}, {}
    for name, m in cfg.models.items():
        t0 = time.perf_counter()
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
    _prepare_output(out)
    single = len(cfg.models) == 1
    records = {}
    for name in cfg.models:
        folder = out if single else out / name
        folder.mkdir(parents=True, exist_ok=True)
        files, records[name] = _model_outputs(name, job.results[name], cfg, designs[name], data, folder,
                                              walls[name], msgs[name], boots.get(name), environment=single)
        job.files += files
    if single:
        job.text = job.res.summary()
        return job, records[next(iter(records))]
    parts = [f"== {n}: {r.formula}\n{r.summary()}" for n, r in job.results.items()]
    if job.lrt is not None:
        job.files += _write_table(job.lrt, out, "lrt", cfg.output.formats)
        shown = job.lrt.drop(columns=["note"]).to_string(index=False, float_format=lambda v: f"{v:.6g}")
        notes = "".join(f"\n{n}" for n in dict.fromkeys(job.lrt["note"]) if n)
        parts.append(f"== likelihood-ratio tests\n{shown}{notes}")
    job.text = "\n\n".join(parts)
    (out / "summary.txt").write_text(job.text + "\n", encoding="utf-8")
    record = {"jaxmix_version": records[next(iter(records))]["jaxmix_version"], "kind": "models",
              "models": records, "lrt": None if job.lrt is None else _records(job.lrt),
              "wall_seconds": _num(sum(walls.values())), **_environment(), "config": cfg.to_dict()}
    (out / "fit.json").write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    job.files += [out / "summary.txt", out / "fit.json"]
    return job, record


# ---- sub-commands --------------------------------------------------------------------------
def _load(args) -> RunConfig:
    cfg = load_config(args.config, overrides=getattr(args, "set", None) or ())
    if getattr(args, "out", None):
        cfg = cfg.with_output(args.out)
    return cfg


def _in_file(cfg: RunConfig, e: ConfigError) -> ConfigError:
    return ConfigError(f"{cfg.source}: {e}" if cfg.source is not None else str(e))


def _cmd_run(args) -> int:
    cfg = _load(args)
    try:
        res, _ = run_config(cfg)
    except ConfigError as e:
        raise _in_file(cfg, e) from None
    if not args.quiet:
        print(res.summary())
        files = getattr(res, "files", [])
        out = Path(cfg.output.dir)
        names = [str(Path(p).relative_to(out)) if Path(p).is_relative_to(out) else str(p) for p in files]
        top = [n for n in names if "/" not in n and os.sep not in n]
        subs = list(dict.fromkeys(Path(n).parts[0] for n in names if n not in top))
        listed = ", ".join(top or ([] if subs else list(OUTPUT_FILES)))
        if subs:
            listed += (", " if listed else "") + "one folder per model: " + ", ".join(f"{d}/" for d in subs)
        print(f"\nwrote {listed} to {cfg.output.dir}")
    return EXIT_OK


def _describe_model(m, design) -> str:
    groups = ", ".join(f"{t.group} ({t.nlevels} levels)" for t in design.terms) or "none"
    fam = "" if m.family == "gaussian" else f"{m.family} "
    if not design.terms:
        kind = "least-squares" if m.family == "gaussian" else f"{m.family} GLM (ML)"
        return (f"{kind} fit of '{m.formula}' on {design.nobs} rows, {len(design.x_names)} fixed effects, "
                "no random effects")
    return (f"{fam}{m.method} fit of '{m.formula}' on {design.nobs} rows, {len(design.x_names)} fixed effects, "
            f"grouping factors: {groups}")


def _cmd_validate(args) -> int:
    cfg = _load(args)
    if cfg.sweep is not None:
        return _validate_sweep(cfg, args)
    try:
        data, designs = prepare_run(cfg)
    except ConfigError as e:
        raise _in_file(cfg, e) from None
    if len(cfg.models) == 1:
        what = _describe_model(cfg.model, designs[next(iter(designs))])
    else:
        what = f"{len(cfg.models)} models: " + "; ".join(
            f"{n}: {_describe_model(m, designs[n])}" for n, m in cfg.models.items())
        if cfg.comparisons is not None:
            what += "; likelihood-ratio tests: " + ", ".join(" vs ".join(c) for c in cfg.comparisons.lrt)
    print(f"ok: {args.config}: data {cfg.data.describe()} with {len(data)} rows; {what}; output to {cfg.output.dir}")
    return EXIT_OK


def _validate_sweep(cfg: RunConfig, args) -> int:
    from .design import build_design
    from .formula import parse_formula

    s = cfg.sweep
    try:
        data = load_data(cfg)
        missing = [c for c in s.outcomes if c not in data.columns]
        if missing:
            raise ConfigError(f"[sweep] outcome column(s) {', '.join(map(repr, missing))} not in the data")
        try:
            design = build_design(parse_formula(s.formula), data, weights=s.weights, require_response=False,
                                  check_nlevels=False)
        except ConfigError:
            raise
        except JaxmixError as e:
            raise ConfigError(f"[sweep] {e}") from None
        if s.compare_terms:
            absent = [t for t in s.compare_terms if t not in design.x_names]
            if absent:
                raise ConfigError(f"[sweep] compare_terms {absent} are not fixed-effect terms "
                                  f"(terms: {', '.join(design.x_names)})")
        _check_writable(cfg.output.dir)
    except ConfigError as e:
        raise _in_file(cfg, e) from None
    groups = ", ".join(f"{t.group} ({t.nlevels} levels)" for t in design.terms) or "none"
    print(f"ok: {args.config}: data {cfg.data.describe()} with {len(data)} rows; {s.family} sweep of "
          f"'{s.formula}' over {len(s.outcomes)} outcomes on up to {design.nobs} rows, "
          f"{len(design.x_names)} fixed effects, grouping factors: {groups}; output to {cfg.output.dir}")
    return EXIT_OK


def _cmd_datasets(args) -> int:
    from . import datasets

    names = datasets.list_datasets()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {datasets.describe(name)}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="jaxmix", description="Fit linear mixed models (lme4's numbers) from a TOML config.")
    parser.add_argument("--version", action="version", version=f"jaxmix {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("run", help="fit the models in CONFIG and write the results")
    p.add_argument("config", metavar="CONFIG", help="TOML configuration file")
    p.add_argument("--out", metavar="DIR", help="output folder (overrides [output] dir)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not print the summary")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config key, e.g. --set model.method=ML or --set data.args.seed=2 "
                        "(repeatable; VALUE is read as TOML, else as a string)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="check CONFIG, its data and formula without fitting")
    p.add_argument("config", metavar="CONFIG", help="TOML configuration file")
    p.add_argument("--out", metavar="DIR", help="output folder (overrides [output] dir)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config key, e.g. --set model.method=ML or --set data.args.seed=2 "
                        "(repeatable; VALUE is read as TOML, else as a string)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("datasets", help="list the built-in data sets")
    p.set_defaults(func=_cmd_datasets)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jaxmix`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
    try:
        return args.func(args)
    except JaxmixError as e:  # includes ConfigError
        if args.debug:
            raise
        _err(e)
        return EXIT_USAGE
    except OSError as e:
        if args.debug:
            raise
        where = f"'{e.filename}': " if e.filename else ""
        _err(f"{where}{e.strerror or e}")
        return EXIT_USAGE
    except Exception as e:  # a bug in jaxmix, not in the config: still one line unless --debug
        if args.debug:
            raise
        _err(f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
