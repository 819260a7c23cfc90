"""The ``jaxmix`` command.

::

    jaxmix run CONFIG.toml [--out DIR] [--quiet]   fit the model and write the results
    jaxmix validate CONFIG.toml [--out DIR]        check the config, data and formula, no fit
    jaxmix datasets                                list the built-in data sets

``run`` writes ``summary.txt``, ``fixed.csv``, ``varcorr.csv``, ``ranef.csv`` and ``fit.json`` into
the output folder; a ``[sweep]`` config (many outcomes, :func:`jaxmix.fit_many`) writes the files of
:mod:`jaxmix.sweep_job` (with ``compare_single_level``: the multilevel vs single-level comparison as
``comparison.csv``, ``report.txt`` and ``comparison.png``).  Any problem with the configuration, the data or the model prints one line
``jaxmix: error: ...`` on stderr and exits with status 2 (``--debug`` shows the traceback instead).
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

__all__ = ["main", "load_data", "run_config", "OUTPUT_FILES"]

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2
OUTPUT_FILES = ("summary.txt", "fixed.csv", "varcorr.csv", "ranef.csv", "fit.json")


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
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        frame = pd.read_csv(path, sep=sep)
    except (OSError, UnicodeDecodeError, ValueError) as e:  # pandas' parser errors are ValueErrors
        raise ConfigError(f"[data] path: cannot read '{path}': {e}") from None
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


# ---- results ------------------------------------------------------------------------------
def _num(x):
    """JSON-safe float (NaN and inf become null)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def fit_record(res, cfg: RunConfig | None = None, wall_seconds: float | None = None,
               warning_messages: list[str] | None = None) -> dict:
    """The content of ``fit.json``."""
    from . import __version__

    opt = res.optim
    return {
        "jaxmix_version": __version__,
        "formula": res.formula,
        "method": res.method,
        "family": res.family,
        "nobs": int(res.nobs),
        "ngroups": {str(k): int(v) for k, v in res.ngroups.items()},
        "loglik": _num(res.loglik),
        "objective": _num(res.objective),
        "aic": _num(res.aic),
        "bic": _num(res.bic),
        "sigma": _num(res.sigma),
        "theta": [_num(t) for t in np.asarray(res.theta, dtype=float).ravel()],
        "fixef": {str(k): _num(v) for k, v in res.fixef.items()},
        "converged": bool(res.converged),
        "singular": bool(res.singular),
        "optimizer_message": None if opt is None else str(opt.message),
        "iterations": None if opt is None else int(opt.iterations),
        "fit_seconds": None if opt is None else _num(opt.fit_seconds),
        "compile_seconds": None if opt is None else _num(opt.compile_seconds),
        "wall_seconds": _num(wall_seconds),
        "warnings": list(warning_messages or []),
        "config": None if cfg is None else cfg.to_dict(),
    }


def write_results(res, directory: Path, record: dict) -> list[Path]:
    directory = Path(directory)
    paths = [directory / name for name in OUTPUT_FILES]
    summary, fixed, varcorr, ranef, fitjson = paths
    summary.write_text(res.summary() + "\n", encoding="utf-8")
    res.coef_table().to_csv(fixed, index_label="term")
    res.varcorr.to_csv(varcorr, index=False)
    res.ranef.to_csv(ranef, index=False)
    fitjson.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return paths


def run_config(cfg: RunConfig):
    """Load the data, fit the model and write the outputs; returns ``(results, fit record)``."""
    from .model import fit

    if cfg.sweep is not None:
        from .sweep_job import run_sweep_config

        return run_sweep_config(cfg)
    data = load_data(cfg)
    _check_writable(cfg.output.dir)  # fail before the fit, but create nothing yet
    t0 = time.perf_counter()
    with fit_messages("model") as messages:
        res = fit(cfg.model.formula, data, **cfg.model.fit_kwargs())
    wall = time.perf_counter() - t0
    record = fit_record(res, cfg, wall, messages)
    _prepare_output(cfg.output.dir)
    write_results(res, cfg.output.dir, record)
    return res, record


# ---- sub-commands --------------------------------------------------------------------------
def _load(args) -> RunConfig:
    cfg = load_config(args.config)
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
        files = [p.name for p in getattr(res, "files", [])] or OUTPUT_FILES
        print(f"\nwrote {', '.join(files)} to {cfg.output.dir}")
    return EXIT_OK


def _cmd_validate(args) -> int:
    from .design import build_design
    from .formula import parse_formula

    cfg = _load(args)
    if cfg.sweep is not None:
        return _validate_sweep(cfg, args)
    try:
        data = load_data(cfg)
        try:
            design = build_design(parse_formula(cfg.model.formula), data, weights=cfg.model.weights)
        except ConfigError:
            raise
        except JaxmixError as e:
            raise ConfigError(f"[model] {e}") from None
        _check_writable(cfg.output.dir)
    except ConfigError as e:
        raise _in_file(cfg, e) from None
    groups = ", ".join(f"{t.group} ({t.nlevels} levels)" for t in design.terms) or "none"
    print(f"ok: {args.config}: data {cfg.data.describe()} with {len(data)} rows; "
          f"{cfg.model.method} fit of '{cfg.model.formula}' on {design.nobs} rows, "
          f"{len(design.x_names)} fixed effects, grouping factors: {groups}; output to {cfg.output.dir}")
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

    p = sub.add_parser("run", help="fit the model in CONFIG and write the results")
    p.add_argument("config", metavar="CONFIG", help="TOML configuration file")
    p.add_argument("--out", metavar="DIR", help="output folder (overrides [output] dir)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not print the summary")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="check CONFIG, its data and formula without fitting")
    p.add_argument("config", metavar="CONFIG", help="TOML configuration file")
    p.add_argument("--out", metavar="DIR", help="output folder (overrides [output] dir)")
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
