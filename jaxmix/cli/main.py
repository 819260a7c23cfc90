"""The ``jaxmix`` command.

::

    jaxmix run CONFIG.toml [--out DIR] [--force] [--quiet] [--set KEY=VALUE ...]   fit the models, write the results
    jaxmix validate CONFIG.toml [--out DIR] [--force] [--set KEY=VALUE ...]        check config, data, formulas; no fit
    jaxmix datasets                                                      list the built-in data sets

This module parses the command line; :mod:`jaxmix.cli.job` checks, fits and writes a model config (the
files are listed there), :mod:`jaxmix.cli.sweep_job` a ``[sweep]`` config, :mod:`jaxmix.cli.records` builds
``fit.json``.  ``--set section.key=value``
overrides a key of the file (value read as TOML, else a string).  Any problem with the
configuration, the data or the model prints one line ``jaxmix: error: ...`` on stderr and exits
with status 2 (``--debug`` shows the traceback instead); Ctrl-C prints one line and exits with 130.
The output folder's rules (manifest, ``--force``, results moved into place at the end) are
:mod:`jaxmix.cli.outdir`'s.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from .config import ConfigError, RunConfig, load_config
from ..errors import JaxmixError
from .job import OUTPUT_FILES, PLOT_FILES, load_data, one_line, prepare_run  # noqa: F401
from .job import run_config as run_model_config
from .sweep_job import run_sweep_config
from .outdir import check_output, planned_outputs
from .records import cache_info, fit_record, package_versions  # noqa: F401

__all__ = ["main", "load_data", "run_config", "OUTPUT_FILES", "PLOT_FILES", "fit_record", "cache_info",
           "package_versions"]

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line too."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"jaxmix: error: {one_line(message)} (see '{self.prog} --help')\n")


def _err(message) -> None:
    print(f"jaxmix: error: {one_line(message)}", file=sys.stderr)


# ---- sub-commands --------------------------------------------------------------------------
def _load(args) -> RunConfig:
    cfg = load_config(args.config, overrides=getattr(args, "set", None) or ())
    if getattr(args, "out", None):
        cfg = cfg.with_output(args.out)
    if getattr(args, "force", False):
        cfg = dataclasses.replace(cfg, force=True)
    args.out_dir = cfg.output.dir  # for the message of an interrupted run
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
    if m.estimator == "bayes":
        return (f"Bayesian {fam}fit (NUTS) of '{m.formula}' on {design.nobs} rows, {len(design.x_names)} fixed effects, "
                f"grouping factors: {groups}")
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
    from ..spec.design import build_design
    from ..spec.formula import parse_formula

    s = cfg.sweep
    try:
        check_output(cfg, planned_outputs(cfg))  # first: the data file may be inside the output folder
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
            from ..compare import expand_terms

            absent = [t for t in expand_terms(design, s.compare_terms) if t not in design.x_names]
            if absent:
                raise ConfigError(f"[sweep] compare_terms {absent} are not fixed-effect terms "
                                  f"(terms: {', '.join(design.x_names)})")
    except ConfigError as e:
        raise _in_file(cfg, e) from None
    groups = ", ".join(f"{t.group} ({t.nlevels} levels)" for t in design.terms) or "none"
    print(f"ok: {args.config}: data {cfg.data.describe()} with {len(data)} rows; {s.family} sweep of "
          f"'{s.formula}' over {len(s.outcomes)} outcomes on up to {design.nobs} rows, "
          f"{len(design.x_names)} fixed effects, grouping factors: {groups}; output to {cfg.output.dir}")
    return EXIT_OK


def _cmd_datasets(args) -> int:
    from .. import datasets

    names = datasets.list_datasets()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {datasets.describe(name)}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="jaxmix", description="Fit linear mixed models (lme4's numbers) from a TOML config.")
    parser.add_argument("--version", action="version", version=f"jaxmix {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("run", help="fit the models in CONFIG and write the results")
    p.add_argument("config", metavar="CONFIG", help="TOML configuration file")
    p.add_argument("--out", metavar="DIR", help="output folder (overrides [output] dir)")
    p.add_argument("--quiet", "-q", action="store_true", help="do not print the summary")
    p.add_argument("--force", action="store_true",
                   help="write into an output folder that holds files jaxmix did not write, or another "
                        "config's results (those files are kept; jaxmix's earlier results are replaced)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config key, e.g. --set model.method=ML or --set data.args.seed=2 "
                        "(repeatable; VALUE is read as TOML, else as a string)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="check CONFIG, its data and formula without fitting")
    p.add_argument("config", metavar="CONFIG", help="TOML configuration file")
    p.add_argument("--out", metavar="DIR", help="output folder (overrides [output] dir)")
    p.add_argument("--force", action="store_true",
                   help="check the output folder as 'run --force' would")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config key, e.g. --set model.method=ML or --set data.args.seed=2 "
                        "(repeatable; VALUE is read as TOML, else as a string)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("datasets", help="list the built-in data sets")
    p.set_defaults(func=_cmd_datasets)
    return parser


def run_config(cfg):
    """Run a config: its ``[sweep]`` (:mod:`jaxmix.cli.sweep_job`) or its models (:mod:`jaxmix.cli.job`);
    returns ``(job, fit record)``."""
    return run_sweep_config(cfg) if cfg.sweep is not None else run_model_config(cfg)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jaxmix`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
    try:
        return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C: the output folder is as it was (jaxmix.cli.outdir.staged_output)
        if args.debug:
            raise
        out = getattr(args, "out_dir", None)
        where = f"the output folder '{out}' and its files" if out is not None else "the files"
        print(f"jaxmix: interrupted; {where} left as they were", file=sys.stderr)
        return EXIT_INTERRUPTED
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
