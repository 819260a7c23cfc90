"""Run configurations: a TOML file -> a validated :class:`RunConfig`.

A configuration names the data, one or more models and where the results go (every section and key
is documented in ``configs/README.md``; :data:`SCHEMA` is the machine-readable version)::

    [data]
    builtin = "sleepstudy"          # a built-in data set (jaxmix.datasets.list_datasets()), or
    # path = "file.csv"             # a CSV/TSV or Parquet file, relative to the config file
    # args = { seed = 1 }           # keyword arguments for a built-in simulator

    [model]                         # one model, or several named ones: [models.null], [models.full]
    formula = "Reaction ~ Days + (Days | Subject)"
    method = "REML"                 # REML / ML (gaussian), Laplace / AGQ (the other families)
    # family, link, nagq, weights, offset, trials, dtype, ddf, anova

    [inference]                     # defaults for every model
    # ddf = "satterthwaite"         # df method of fixed.csv
    # anova = true                  # also write anova.csv (Type III F tests)

    [comparisons]                   # with named models: likelihood-ratio tables -> lrt.csv
    # lrt = [["null", "full"]]

    [bootstrap]                     # parametric bootstrap -> bootstrap.csv
    # n = 500
    # seed = 1

    [options]
    # max_iter = 500, gtol = 1e-4, dtype = "float64"

    [output]
    dir = "out/sleepstudy"          # relative to the working directory; default out/<config name>
    # formats = ["csv"], plots = true, plot_x = "Days", plot_group = "Subject"

Many outcomes on one right-hand side (:func:`jaxmix.fit_many`) take a ``[sweep]`` section instead of
``[model]`` (see ``configs/ami.toml``); ``[devices] distributed = true`` initialises multi-host JAX.

:func:`parse_config` is pure (a dict -> a :class:`RunConfig`, no file system access);
:func:`load_config` reads and parses a TOML file, :func:`apply_overrides` applies the command line's
``--set key=value``.  Every problem is a :class:`ConfigError` whose one-line message names the
section and key at fault (with a did-you-mean suggestion for misspelt keys and names).

To add a key, add a :class:`Field` to :data:`SCHEMA` and a matching attribute to the section's
dataclass (and a row to ``configs/README.md``).
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..gee.corr import CORSTRS
from ..spec.options import MAX_NAGQ
from ..errors import did_you_mean, JaxmixError

__all__ = ["ConfigError", "Field", "SCHEMA", "DataConfig", "ModelConfig", "OutputConfig", "RunConfig",
           "SweepConfig", "DevicesConfig", "InferenceConfig", "ComparisonsConfig", "BootstrapConfig",
           "OptionsConfig", "SamplerConfig", "parse_config", "load_config", "apply_overrides", "did_you_mean",
           "DDF_METHODS", "PLOT_KINDS", "TABLE_FORMATS"]


class ConfigError(JaxmixError):
    """A configuration that cannot be used; the message names the section and key."""


_TOML_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
                    dict: "a table", list: "an array"}

FAMILIES = ("gaussian", "binomial", "poisson", "negative_binomial", "gamma")
#: the families of fit_many (``[sweep]``): all of them
SWEEP_FAMILIES = FAMILIES
DDF_METHODS = ("satterthwaite", "kenward-roger", "containment", "between-within", "residual", "asymptotic")
PLOT_KINDS = ("caterpillar", "group_lines", "shrinkage")
TABLE_FORMATS = ("csv", "parquet")
ESTIMATORS = ("ml", "bayes")
_GAUSSIAN_METHODS = ("REML", "ML")
_GLMM_METHODS = ("Laplace", "AGQ")


@dataclass(frozen=True)
class Field:
    """One key of a section: its TOML type (or a tuple of types), default (``required=True`` for
    none), allowed values."""

    type: Any
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] | None = None
    upper: bool = False  # compare and store choices in upper case
    doc: str = ""

    @property
    def types(self) -> tuple:
        return self.type if isinstance(self.type, tuple) else (self.type,)


_MODEL_SPEC = {
    "formula": Field(str, required=True, doc="lme4-style formula, e.g. 'y ~ x + (x | g)'"),
    "family": Field(str, default="gaussian", choices=FAMILIES,
                    doc="gaussian, binomial, poisson, negative_binomial (NB2, θ estimated) or gamma (shape estimated)"),
    "link": Field(str, doc="link function (default: R's default link; gamma: inverse, also log, identity)"),
    "method": Field(str, doc="REML (default) or ML for gaussian; Laplace (default) or AGQ for the other families"),
    "nagq": Field(int, doc="Gauss-Hermite points for method AGQ (default 9; one scalar random-effect term)"),
    "weights": Field(str, doc="column of prior weights"),
    "offset": Field(str, doc="column added to the linear predictor with coefficient 1"),
    "trials": Field(str, doc="binomial: column of numbers of trials (the response counts successes)"),
    "dtype": Field(str, choices=("float64", "float32"), doc="floating-point precision (default [options] dtype)"),
    "ddf": Field(str, choices=DDF_METHODS, doc="df method of fixed.csv (default [inference] ddf)"),
    "anova": Field(bool, doc="write anova.csv, Type III F tests (default [inference] anova)"),
    "variance": Field(str, doc="gaussian: residual SD per level of a factor, 'ident(f)' (nlme varIdent)"),
    "correlation": Field(str, doc="gaussian: residual correlation within groups, 'ar1(g)', 'ar1(t | g)' or 'cs(g)'"),
    "estimator": Field(str, default="ml", choices=ESTIMATORS,
                       doc="ml (maximum likelihood / REML) or bayes (NUTS with the [sampler] settings)"),
}

#: section -> key -> Field.  ``[models.NAME]`` tables take the keys of ``[model]``.
SCHEMA: dict[str, dict[str, Field]] = {
    "data": {
        "builtin": Field(str, doc="name of a built-in data set"),
        "path": Field(str, doc="CSV/TSV or Parquet file, relative to the config file"),
        "args": Field(dict, default={}, doc="keyword arguments for a built-in simulator"),
    },
    "model": _MODEL_SPEC,
    "models": _MODEL_SPEC,
    "sweep": {
        "formula": Field(str, required=True, doc="right-hand side without a response, e.g. '~ x + (1 | g)'"),
        "outcomes": Field(list, required=True, doc="the response columns"),
        "family": Field(str, default="gaussian", choices=SWEEP_FAMILIES, doc="family"),
        "link": Field(str, doc="link function (default: the family's canonical link)"),
        "method": Field(str, doc="REML or ML (Gaussian), Laplace or AGQ (the other families)"),
        "nagq": Field(int, default=1, doc="Gauss-Hermite points (AGQ, one scalar term)"),
        "weights": Field(str, doc="column of prior weights"),
        "dtype": Field(str, choices=("float64", "float32"), doc="floating-point precision (default [options] dtype)"),
        "batch_size": Field(int, doc="outcomes per compiled chunk (default: all at once)"),
        "variance": Field(str, doc="gaussian: residual SD per level of a factor, 'ident(f)' (each outcome fitted alone)"),
        "correlation": Field(str, doc="gaussian: residual correlation within groups, 'ar1(g)', 'ar1(t | g)' or 'cs(g)'"),
        "compare_single_level": Field(bool, default=False,
                                      doc="also fit the formula without random effects and compare"),
        "compare_terms": Field(list, doc="covariates to compare (default: those constant within a group)"),
        "gee": Field(bool, default=True,
                     doc="with compare_single_level, also fit the marginal model by GEE and compare it"),
        "gee_groups": Field(str, doc="cluster column of the GEE (default: the grouping factor with fewest levels)"),
        "gee_corstr": Field(str, default="exchangeable", choices=CORSTRS, doc="GEE working correlation"),
        "alpha": Field(float, default=0.05, doc="significance level of the comparison"),
    },
    "inference": {
        "ddf": Field(str, choices=DDF_METHODS, doc="df method of the coefficient table (default: the model's)"),
        "anova": Field(bool, default=False, doc="write anova.csv (Type III F tests per fixed term)"),
        "level": Field(float, default=0.95, doc="coverage of the intervals in fixed.csv"),
    },
    "comparisons": {
        "lrt": Field(list, required=True, doc="model names, or a list of lists of them: likelihood-ratio tables"),
        "refit": Field(bool, doc="refit REML fits by ML first (default: true, as lme4's anova)"),
    },
    "bootstrap": {
        "n": Field(int, default=1000, doc="number of parametric bootstrap replicates"),
        "seed": Field(int, default=0, doc="random seed"),
        "level": Field(float, default=0.95, doc="coverage of the percentile intervals"),
        "models": Field(list, doc="models to bootstrap (default: every model with random effects)"),
    },
    "options": {
        "max_iter": Field(int, default=500, doc="optimiser iteration limit"),
        "gtol": Field(float, default=1e-4, doc="convergence tolerance on the largest absolute gradient entry"),
        "dtype": Field(str, default="float64", choices=("float64", "float32"), doc="floating-point precision"),
    },
    "output": {
        "dir": Field(str, doc="output folder, relative to the working directory"),
        "formats": Field(list, default=["csv"], doc="table formats: csv and/or parquet"),
        "plots": Field((bool, list), default=True, doc="true, false, or a list of plot names"),
        "plot_x": Field(str, doc="fixed-effect column on the x axis of group_lines and shrinkage"),
        "plot_group": Field(str, doc="grouping factor of the plots (default: the model's first)"),
        "dpi": Field(int, default=120, doc="resolution of the PNG files"),
    },
    "sampler": {  # models with estimator = "bayes" (jaxmix.sample)
        "chains": Field(int, default=4, doc="Markov chains (vectorised on one device)"),
        "draws": Field(int, default=1000, doc="draws kept per chain"),
        "warmup": Field(int, default=1000, doc="warm-up (adaptation) iterations per chain"),
        "seed": Field(int, default=0, doc="random seed"),
        "target_accept": Field(float, default=0.8, doc="NUTS step-size adaptation target"),
        "priors": Field(dict, default={}, doc="per class (intercept, fixef, sd, cor, sigma): e.g. { normal = [0, 5] }"),
        "save_draws": Field(bool, default=False, doc="also write draws.csv (every draw of every parameter)"),
        "progress": Field(bool, default=True, doc="progress bar while sampling"),
    },
    "devices": {
        "distributed": Field(bool, default=False, doc="call jax.distributed.initialize() (multi-host)"),
        "cpu_devices": Field((int, str), doc="split the CPU into this many devices for sweeps ('auto': one per core)"),
    },
}
REQUIRED_SECTIONS = ("data",)
MODEL_SECTIONS = ("model", "models", "sweep")  # exactly one of them
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _type_name(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    for t, name in _TOML_TYPE_NAMES.items():
        if isinstance(value, t):
            return name
    return type(value).__name__


def _types_name(types) -> str:
    return " or ".join(_TOML_TYPE_NAMES.get(t, t.__name__) for t in types)


# ---- section dataclasses -------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    builtin: str | None = None
    path: Path | None = None
    args: dict = field(default_factory=dict)

    def describe(self) -> str:
        if self.builtin is not None:
            extra = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
            return f"built-in {self.builtin!r}" + (f" ({extra})" if extra else "")
        return f"file {str(self.path)!r}"


@dataclass(frozen=True)
class ModelConfig:
    """One model, with the [inference] and [options] defaults resolved."""

    formula: str
    family: str = "gaussian"
    link: str | None = None
    method: str = "REML"
    nagq: int = 1
    weights: str | None = None
    offset: str | None = None
    trials: str | None = None
    dtype: str = "float64"
    ddf: str | None = None
    anova: bool = False
    variance: str | None = None
    correlation: str | None = None
    estimator: str = "ml"
    name: str = "model"  # not a key: the [models.NAME] table's name ("model" for [model])

    @property
    def label(self) -> str:
        """``[model]`` or ``[models.NAME]``: how messages name it."""
        return "[model]" if self.name == "model" else f"[models.{self.name}]"

    def sample_kwargs(self, sampler: "SamplerConfig") -> dict:
        """Keyword arguments for :func:`jaxmix.sample` (besides formula and data)."""
        kw = {"family": self.family, "link": self.link, "weights": self.weights, "offset": self.offset,
              "trials": self.trials}
        return {**kw, **sampler.sample_kwargs()}

    def fit_kwargs(self, options: "OptionsConfig | None" = None) -> dict:
        """Keyword arguments for :func:`jaxmix.fit` (besides formula and data)."""
        kw = {"method": self.method, "weights": self.weights, "dtype": self.dtype}
        if self.family != "gaussian":
            kw.update(family=self.family, link=self.link, nagq=self.nagq, trials=self.trials)
        if self.offset is not None:
            kw["offset"] = self.offset
        for key in ("variance", "correlation"):
            if getattr(self, key) is not None:
                kw[key] = getattr(self, key)
        if options is not None:
            kw.update(max_iter=options.max_iter, gtol=options.gtol)
        return kw


@dataclass(frozen=True)
class OutputConfig:
    dir: Path
    formats: tuple = ("csv",)
    plots: tuple = PLOT_KINDS  # the plot kinds to draw; () for none
    plot_x: str | None = None
    plot_group: str | None = None
    dpi: int = 120


@dataclass(frozen=True)
class SweepConfig:
    """Many outcomes on one right-hand side (:func:`jaxmix.fit_many`)."""

    formula: str
    outcomes: list
    family: str = "gaussian"
    link: str | None = None
    method: str | None = None
    nagq: int = 1
    weights: str | None = None
    dtype: str = "float64"
    batch_size: int | None = None
    compare_single_level: bool = False
    compare_terms: list | None = None
    alpha: float = 0.05
    gee: bool = True
    gee_groups: str | None = None
    gee_corstr: str = "exchangeable"
    variance: str | None = None
    correlation: str | None = None

    def fit_kwargs(self) -> dict:
        """Keyword arguments for :func:`jaxmix.fit_many` (besides formula, data and outcomes)."""
        kw = {"family": self.family, "link": self.link, "method": self.method, "nagq": self.nagq,
              "weights": self.weights, "dtype": self.dtype, "batch_size": self.batch_size}
        for key in ("variance", "correlation"):
            if getattr(self, key) is not None:
                kw[key] = getattr(self, key)
        return kw


@dataclass(frozen=True)
class DevicesConfig:
    distributed: bool = False
    cpu_devices: int | str | None = None


@dataclass(frozen=True)
class InferenceConfig:
    ddf: str | None = None
    anova: bool = False
    level: float = 0.95


@dataclass(frozen=True)
class ComparisonsConfig:
    lrt: tuple = ()  # tuples of model names
    refit: bool | None = None


@dataclass(frozen=True)
class BootstrapConfig:
    n: int = 1000
    seed: int = 0
    level: float = 0.95
    models: tuple = ()  # resolved: the models to bootstrap


@dataclass(frozen=True)
class SamplerConfig:
    """``[sampler]``: NUTS settings of the models with ``estimator = "bayes"``."""

    chains: int = 4
    draws: int = 1000
    warmup: int = 1000
    seed: int = 0
    target_accept: float = 0.8
    priors: dict = field(default_factory=dict)
    save_draws: bool = False
    progress: bool = True

    def sample_kwargs(self) -> dict:
        """Keyword arguments for :func:`jaxmix.sample` (besides formula, data and the model's family)."""
        return {"chains": self.chains, "draws": self.draws, "warmup": self.warmup, "seed": self.seed,
                "target_accept": self.target_accept, "priors": dict(self.priors) or None, "progress": self.progress}


@dataclass(frozen=True)
class OptionsConfig:
    max_iter: int = 500
    gtol: float = 1e-4
    dtype: str = "float64"


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig
    models: dict  # name -> ModelConfig, in file order; {} for a sweep
    output: OutputConfig
    source: Path | None = None  # the config file, when read from one
    sweep: SweepConfig | None = None
    devices: DevicesConfig = field(default_factory=DevicesConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    comparisons: ComparisonsConfig | None = None
    bootstrap: BootstrapConfig | None = None
    options: OptionsConfig = field(default_factory=OptionsConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    named: bool = False  # models came from [models.NAME] tables
    overrides: tuple = ()  # the --set KEY=VALUE strings applied
    force: bool = False  # --force: write into an output folder beside files jaxmix did not write

    @property
    def model(self) -> ModelConfig | None:
        """The single model of a one-model config (None for a sweep or several models)."""
        return next(iter(self.models.values())) if len(self.models) == 1 else None

    def with_output(self, directory) -> "RunConfig":
        return dataclasses.replace(self, output=dataclasses.replace(self.output, dir=Path(directory)))

    def to_dict(self) -> dict:
        """Plain, JSON-friendly description of the resolved configuration."""
        def plain(dc):
            return None if dc is None else {k: (list(v) if isinstance(v, tuple) else v)
                                            for k, v in dataclasses.asdict(dc).items()}

        out = plain(self.output)
        out["dir"] = str(self.output.dir)
        return {
            "source": None if self.source is None else str(self.source),
            "overrides": list(self.overrides),
            "data": {"builtin": self.data.builtin,
                     "path": None if self.data.path is None else str(self.data.path),
                     "args": dict(self.data.args)},
            "model": plain(self.model) if not self.named else None,
            "models": {name: plain(m) for name, m in self.models.items()},
            "sweep": plain(self.sweep),
            "inference": plain(self.inference),
            "comparisons": None if self.comparisons is None else
            {"lrt": [list(c) for c in self.comparisons.lrt], "refit": self.comparisons.refit},
            "bootstrap": plain(self.bootstrap),
            "options": plain(self.options),
            "devices": plain(self.devices),
            "output": out,
        }


# ---- validation ----------------------------------------------------------------------------------
def _section(raw: dict, name: str, label: str | None = None, table=None) -> dict:
    """Validate one section's keys and types; returns key -> value with defaults filled in.

    ``label`` names the section in messages (default ``[name]``); ``table`` is the section's
    content (default ``raw[name]``).
    """
    spec = SCHEMA[name]
    label = label or f"[{name}]"
    table = raw.get(name, {}) if table is None else table
    if not isinstance(table, dict):
        raise ConfigError(f"{label} must be a table, got {_type_name(table)}")
    for key in table:
        if key not in spec:
            raise ConfigError(f"unknown key {key!r} in {label}{did_you_mean(key, spec)}"
                              f" (allowed: {', '.join(spec)})")
    out = {}
    for key, f in spec.items():
        if key not in table:
            if f.required:
                raise ConfigError(f"{label} is missing the required key {key!r}")
            out[key] = copy.deepcopy(f.default)
            continue
        value = table[key]
        ok = isinstance(value, f.types) and not (isinstance(value, bool) and bool not in f.types)
        if float in f.types and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise ConfigError(f"{label} {key} must be {_types_name(f.types)}, got {_type_name(value)} {value!r}")
        if isinstance(value, str) and not value.strip():
            raise ConfigError(f"{label} {key} must not be empty")
        if f.choices is not None:
            v = value.upper() if f.upper else value.lower() if name != "data" else value
            if key == "ddf":
                v = v.replace("_", "-").replace(" ", "-")
            if v not in f.choices:
                raise ConfigError(f"{label} {key} must be one of {', '.join(map(repr, f.choices))}, "
                                  f"got {value!r}{did_you_mean(v, f.choices)}")
            value = v
        out[key] = value
    return out


def _data(d: dict, base_dir: Path | None) -> DataConfig:
    from .. import datasets

    if (d["builtin"] is None) == (d["path"] is None):
        raise ConfigError("[data] needs exactly one of 'builtin' or 'path'"
                          + (" (both are set)" if d["builtin"] is not None else ""))
    if d["builtin"] is not None:
        name = d["builtin"]
        if name not in datasets.list_datasets():
            raise ConfigError(f"[data] builtin: unknown built-in dataset {name!r}"
                              f"{did_you_mean(name, datasets.list_datasets())}"
                              f" (available: {', '.join(datasets.list_datasets())})")
        params = inspect.signature(datasets.loader(name)).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        names = [k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for key in d["args"]:
            if key not in names and not takes_any:
                raise ConfigError(f"unknown key {key!r} in [data.args] for builtin {name!r}"
                                  f"{did_you_mean(key, names)}"
                                  f" (allowed: {', '.join(names) if names else 'none'})")
        return DataConfig(builtin=name, args=dict(d["args"]))
    if d["args"]:
        raise ConfigError("[data] args is only for a builtin data set, not for 'path'")
    path = Path(d["path"]).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return DataConfig(path=path)


def _model(m: dict, name: str, inference: InferenceConfig, options: OptionsConfig) -> ModelConfig:
    """Check one model's keys against each other (family, link, method, nagq, ddf)."""
    from ..spec.families import get_family
    from ..spec.formula import parse_formula

    label = "[model]" if name == "model" else f"[models.{name}]"
    try:
        parsed = parse_formula(m["formula"])
    except JaxmixError as e:
        raise ConfigError(f"{label} formula: {e}") from None
    family = m["family"]
    gauss = family == "gaussian"
    if m["link"] is not None:
        try:
            get_family(family, m["link"])
        except JaxmixError as e:
            raise ConfigError(f"{label} link: {e}") from None
    method = m["method"]
    allowed, other = (_GAUSSIAN_METHODS, _GLMM_METHODS) if gauss else (_GLMM_METHODS, _GAUSSIAN_METHODS)
    if method is None:
        method = "REML" if gauss else ("AGQ" if (m["nagq"] or 1) > 1 else "Laplace")
    else:
        canon = {c.upper(): c for c in allowed + other}
        v = canon.get(method.upper())
        if v in other:
            kind = "non-gaussian models" if gauss else "gaussian models"
            raise ConfigError(f"{label} method {method!r} is for {kind}; a {family} model takes "
                              f"{' or '.join(map(repr, allowed))}")
        if v is None:
            raise ConfigError(f"{label} method must be one of {', '.join(map(repr, allowed))} for a {family} model, "
                              f"got {method!r}{did_you_mean(method, allowed)}")
        method = v
    nagq = m["nagq"]
    if nagq is not None and not 1 <= nagq <= MAX_NAGQ:
        raise ConfigError(f"{label} nagq must be a whole number from 1 to {MAX_NAGQ} (as lme4's glmer nAGQ), "
                          f"got {nagq!r}")
    if gauss and nagq not in (None, 1):
        raise ConfigError(f"{label} nagq is for non-gaussian models (method 'AGQ'), not a gaussian one")
    if method == "Laplace" and nagq not in (None, 1):
        raise ConfigError(f"{label} nagq = {nagq} needs method = 'AGQ' (method 'Laplace' is nagq = 1)")
    if method == "AGQ":
        if nagq == 1:
            raise ConfigError(f"{label} method 'AGQ' needs nagq > 1 (default 9); nagq = 1 is method 'Laplace'")
        nagq = 9 if nagq is None else nagq
        if not parsed.is_mixed:
            raise ConfigError(f"{label} method 'AGQ' needs a random-effect term, e.g. (1 | g)")
    nagq = 1 if nagq is None else nagq
    if m["trials"] is not None and family != "binomial":
        raise ConfigError(f"{label} trials is for binomial models, not a {family} one")
    from ..spec.residual import parse_correlation, parse_variance

    structured = False
    for key, parse in (("variance", parse_variance), ("correlation", parse_correlation)):
        if m[key] is None:
            continue
        if not gauss:
            raise ConfigError(f"{label} {key} is for gaussian models, not a {family} one")
        try:
            parse(m[key])
        except JaxmixError as e:
            raise ConfigError(f"{label} {key}: {e}") from None
        structured = True
    structured = structured or any(t.structure in ("cs", "ar1") for t in parsed.random)
    ddf = m["ddf"] if m["ddf"] is not None else inference.ddf
    src = f"{label} ddf" if m["ddf"] is not None else f"[inference] ddf (for {label})"
    if ddf == "kenward-roger" and structured:
        if m["ddf"] is not None:
            raise ConfigError(f"{src} 'kenward-roger' is not available with structured covariances; use "
                              "'satterthwaite', 'containment', 'between-within', 'residual' or 'asymptotic'")
        ddf = None  # the [inference] default: structured fits take Satterthwaite's df (gls: residual)
    if ddf is not None:
        lmm = gauss and parsed.is_mixed
        if ddf in ("satterthwaite", "kenward-roger") and not lmm:
            what = f"a {family} GLMM" if parsed.is_mixed else "a model without random effects"
            raise ConfigError(f"{src} {ddf!r} needs a linear mixed model; this is {what} "
                              "(use 'asymptotic', 'residual', 'containment' or 'between-within')")
        if ddf == "kenward-roger" and method != "REML":
            raise ConfigError(f"{src} 'kenward-roger' needs method = 'REML', got {method!r}")
        if ddf in ("containment", "between-within") and not parsed.is_mixed:
            raise ConfigError(f"{src} {ddf!r} needs random effects; use 'residual' for this model")
    return ModelConfig(formula=m["formula"], family=family, link=None if m["link"] is None else m["link"].lower(),
                       method=method, nagq=nagq, weights=m["weights"], offset=m["offset"], trials=m["trials"],
                       dtype=m["dtype"] or options.dtype, ddf=ddf,
                       anova=inference.anova if m["anova"] is None else m["anova"], name=name,
                       variance=m["variance"], correlation=m["correlation"], estimator=m["estimator"])


def _sweep(m: dict, options: OptionsConfig) -> SweepConfig:
    from ..spec.formula import parse_formula

    try:
        parsed = parse_formula(m["formula"])
    except JaxmixError as e:
        raise ConfigError(f"[sweep] formula: {e}") from None
    if parsed.response:
        raise ConfigError(f"[sweep] formula must not name a response (got {parsed.response!r} left of '~'); "
                          "list the responses in outcomes")
    for key in ("outcomes", "compare_terms"):
        vals = m[key]
        if vals is None:
            continue
        if not vals and key == "outcomes":
            raise ConfigError("[sweep] outcomes is empty: list at least one response column")
        bad = [v for v in vals if not isinstance(v, str) or not v.strip()]
        if bad:
            raise ConfigError(f"[sweep] {key} must be a list of column names, got {bad[0]!r}")
        if len(set(vals)) != len(vals):
            dup = next(v for v in vals if vals.count(v) > 1)
            raise ConfigError(f"[sweep] {key} lists {dup!r} twice")
    if not 0.0 < m["alpha"] < 1.0:
        raise ConfigError(f"[sweep] alpha must be between 0 and 1, got {m['alpha']!r}")
    if m["nagq"] < 1:
        raise ConfigError(f"[sweep] nagq must be a positive integer, got {m['nagq']!r}")
    if m["batch_size"] is not None and m["batch_size"] < 1:
        raise ConfigError(f"[sweep] batch_size must be a positive integer, got {m['batch_size']!r}")
    from ..spec.residual import parse_correlation, parse_variance

    for key, parse in (("variance", parse_variance), ("correlation", parse_correlation)):
        if m[key] is None:
            continue
        if m["family"] != "gaussian":
            raise ConfigError(f"[sweep] {key} is for gaussian models, not a {m['family']} one")
        if m["compare_single_level"]:
            raise ConfigError(f"[sweep] {key} cannot be combined with compare_single_level (the single-level "
                              "comparison is of lme4-type models)")
        try:
            parse(m[key])
        except JaxmixError as e:
            raise ConfigError(f"[sweep] {key}: {e}") from None
    return SweepConfig(**{**m, "dtype": m["dtype"] or options.dtype})


def _names_list(value, label: str, known: dict, *, min_len: int = 1) -> tuple:
    """A list of model names, each one of ``known``."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{label} must be a list of model names, got {value!r}")
    for v in value:
        if v not in known:
            raise ConfigError(f"{label}: unknown model {v!r}{did_you_mean(v, known)}"
                              f" (models: {', '.join(known)})")
    if len(set(value)) != len(value):
        raise ConfigError(f"{label} lists {next(v for v in value if value.count(v) > 1)!r} twice")
    if len(value) < min_len:
        raise ConfigError(f"{label} needs at least {min_len} models, got {value!r}")
    return tuple(value)


def _comparisons(c: dict, models: dict) -> ComparisonsConfig:
    lrt = c["lrt"]
    if not lrt:
        raise ConfigError("[comparisons] lrt is empty: list the models to compare, e.g. [\"null\", \"full\"]")
    groups = [lrt] if all(isinstance(v, str) for v in lrt) else lrt
    if not all(isinstance(g, list) for g in groups):
        raise ConfigError("[comparisons] lrt must be a list of model names or a list of such lists, "
                          f"got {lrt!r}")
    if len(models) < 2:
        raise ConfigError("[comparisons] needs two or more named models ([models.NAME] tables)")
    return ComparisonsConfig(lrt=tuple(_names_list(g, "[comparisons] lrt", models, min_len=2) for g in groups),
                             refit=c["refit"])


def _output(o: dict, source) -> OutputConfig:
    out_dir = o["dir"]
    if out_dir is None:
        out_dir = Path("out") / (Path(source).stem if source is not None else "jaxmix")
    formats = o["formats"]
    if not formats or not all(isinstance(f, str) for f in formats):
        raise ConfigError(f"[output] formats must be a non-empty list of {', '.join(map(repr, TABLE_FORMATS))}, "
                          f"got {formats!r}")
    for f in formats:
        if f.lower() not in TABLE_FORMATS:
            raise ConfigError(f"[output] formats: unknown format {f!r}{did_you_mean(f.lower(), TABLE_FORMATS)}"
                              f" (allowed: {', '.join(TABLE_FORMATS)})")
    plots = o["plots"]
    if isinstance(plots, bool):
        kinds = PLOT_KINDS if plots else ()
    else:
        for p in plots:
            if not isinstance(p, str) or p not in PLOT_KINDS:
                raise ConfigError(f"[output] plots: unknown plot {p!r}{did_you_mean(p, PLOT_KINDS)}"
                                  f" (allowed: true, false or a list of {', '.join(PLOT_KINDS)})")
        kinds = tuple(k for k in PLOT_KINDS if k in plots)
    if not 10 <= o["dpi"] <= 1200:
        raise ConfigError(f"[output] dpi must be between 10 and 1200, got {o['dpi']!r}")
    return OutputConfig(dir=Path(out_dir).expanduser(), formats=tuple(dict.fromkeys(f.lower() for f in formats)),
                        plots=kinds, plot_x=o["plot_x"], plot_group=o["plot_group"], dpi=o["dpi"])


def _check_level(value: float, label: str) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{label} level must be between 0 and 1, got {value!r}")


def parse_config(raw: dict, base_dir=None, source=None, overrides=()) -> RunConfig:
    """Validate a configuration dict (as :mod:`tomllib` returns it).

    Args:
      raw: the parsed TOML document (with any ``--set`` overrides applied, see :func:`apply_overrides`).
      base_dir: folder that a relative ``[data] path`` is relative to (the config file's folder).
      source: the config file, for the default output folder ``out/<file stem>`` and for records.
      overrides: the ``--set`` strings, kept for the record.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"a configuration must be a table, got {_type_name(raw)}")
    for key, value in raw.items():
        if key in SCHEMA:
            continue
        owner = [s for s, spec in SCHEMA.items() if key in spec]
        if owner and not isinstance(value, dict):
            raise ConfigError(f"key {key!r} at the top level belongs in the [{owner[0]}] section")
        raise ConfigError(f"unknown section [{key}]{did_you_mean(key, SCHEMA, '[{}]')}"
                          f" (allowed: {', '.join(f'[{s}]' for s in SCHEMA)})")
    for name in REQUIRED_SECTIONS:
        if name not in raw:
            raise ConfigError(f"missing the [{name}] section")
    present = [name for name in MODEL_SECTIONS if name in raw]
    if not present:
        raise ConfigError("missing the [model] section (or [models.NAME] tables, or a [sweep] section for many "
                          "outcomes)")
    if "sweep" in present and len(present) > 1:
        raise ConfigError("a configuration has either a [model] or a [sweep] section, not both")
    if len(present) > 1:
        raise ConfigError("a configuration has either one [model] or named [models.NAME] tables, not both")
    kind = present[0]
    plain = [s for s in SCHEMA if s not in MODEL_SECTIONS]
    sections = {name: _section(raw, name) for name in plain if name != "comparisons" or name in raw}
    options = OptionsConfig(**sections["options"])
    if options.max_iter < 1:
        raise ConfigError(f"[options] max_iter must be a positive integer, got {options.max_iter!r}")
    if not options.gtol > 0:
        raise ConfigError(f"[options] gtol must be positive, got {options.gtol!r}")
    inference = InferenceConfig(**sections["inference"])
    _check_level(inference.level, "[inference]")
    data = _data(sections["data"], None if base_dir is None else Path(base_dir))
    models: dict[str, ModelConfig] = {}
    sweep = None
    if kind == "model":
        models["model"] = _model(_section(raw, "model"), "model", inference, options)
    elif kind == "models":
        tables = raw["models"]
        if not isinstance(tables, dict):
            raise ConfigError(f"[models] must be a table of named models ([models.NAME]), got {_type_name(tables)}")
        if not tables:
            raise ConfigError("[models] has no models: add tables such as [models.null] and [models.full]")
        for name, table in tables.items():
            if not isinstance(table, dict):
                hint = ("; put it in a named model table such as [models.full]" if name in _MODEL_SPEC else "")
                raise ConfigError(f"[models] {name} must be a table [models.{name}] of model keys, "
                                  f"got {_type_name(table)}{hint}")
            if not _NAME_RE.match(name):
                raise ConfigError(f"[models.{name}]: a model name may use letters, digits, '_' and '-' only")
            label = f"[models.{name}]"
            models[name] = _model(_section(raw, "models", label, table), name, inference, options)
    else:
        sweep = _sweep(_section(raw, "sweep"), options)
    for sec in ("inference", "comparisons", "bootstrap"):
        if sweep is not None and sec in raw:
            raise ConfigError(f"[{sec}] is for [model] / [models.NAME] configs, not a [sweep]")
    comparisons = None
    if "comparisons" in raw:
        comparisons = _comparisons(sections["comparisons"], models)
    bootstrap = None
    if "bootstrap" in raw:
        b = sections["bootstrap"]
        if b["n"] < 1:
            raise ConfigError(f"[bootstrap] n must be a positive number of replicates, got {b['n']!r}")
        _check_level(b["level"], "[bootstrap]")
        if b["models"] is not None:
            chosen = _names_list(b["models"], "[bootstrap] models", models)
        else:
            from ..spec.formula import parse_formula

            chosen = tuple(n for n, m in models.items() if parse_formula(m.formula).is_mixed and m.estimator == "ml")
        bootstrap = BootstrapConfig(n=b["n"], seed=b["seed"], level=b["level"], models=chosen)
    cpu = sections["devices"]["cpu_devices"]
    if cpu is not None and not (isinstance(cpu, int) and cpu >= 1 or isinstance(cpu, str) and cpu.lower() == "auto"):
        raise ConfigError(f"[devices] cpu_devices must be a positive integer or 'auto', got {cpu!r}")
    sampler = _sampler(sections["sampler"], models, raw, comparisons, bootstrap)
    output = _output(sections["output"], source)
    return RunConfig(data=data, models=models, output=output, source=None if source is None else Path(source),
                     sweep=sweep, devices=DevicesConfig(**sections["devices"]), inference=inference,
                     comparisons=comparisons, bootstrap=bootstrap, options=options, named=kind == "models",
                     overrides=tuple(overrides), sampler=sampler)


def _sampler(s: dict, models: dict, raw: dict, comparisons, bootstrap) -> SamplerConfig:
    """``[sampler]``: positive counts; only beside models with ``estimator = "bayes"``, which take no
    likelihood-ratio tests or bootstrap."""
    bayes = [n for n, m in models.items() if m.estimator == "bayes"]
    if "sampler" in raw and not bayes:
        raise ConfigError('[sampler] is for models with estimator = "bayes"; no model has it')
    for key, low in (("chains", 1), ("draws", 1), ("warmup", 0), ("seed", 0)):
        if s[key] < low:
            raise ConfigError(f"[sampler] {key} must be a whole number >= {low}, got {s[key]!r}")
    if not 0 < s["target_accept"] < 1:
        raise ConfigError(f"[sampler] target_accept must be between 0 and 1, got {s['target_accept']!r}")
    for cls in s["priors"]:
        if cls not in PRIOR_CLASSES:
            raise ConfigError(f"[sampler] priors: unknown class {cls!r}{did_you_mean(cls, PRIOR_CLASSES)} "
                              f"(allowed: {', '.join(PRIOR_CLASSES)})")
    for n in bayes:
        if comparisons is not None and any(n in names for names in comparisons.lrt):
            raise ConfigError(f"[comparisons] lrt: model {n!r} has estimator = 'bayes' (no likelihood to compare)")
        if bootstrap is not None and n in bootstrap.models:
            raise ConfigError(f"[bootstrap] model {n!r} has estimator = 'bayes'; bootstrap the ML fit instead")
        if models[n].anova:
            raise ConfigError(f"{models[n].label} anova is for ML fits, not estimator = 'bayes'")
    return SamplerConfig(**s)


#: the prior classes of [sampler] priors (jaxmix.bayes.priors.PRIOR_CLASSES, which needs numpyro to import)
PRIOR_CLASSES = ("intercept", "fixef", "sd", "cor", "sigma")


# ---- --set overrides ------------------------------------------------------------------------------
def _parse_value(text: str):
    """A TOML value (``2000``, ``true``, ``[1, 2]``, ``{ a = 1 }``, ``"x"``), else the text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict, overrides) -> dict:
    """A copy of ``raw`` with each ``KEY=VALUE`` of ``overrides`` set.

    KEY is ``section.key`` (``model.method``, ``output.dir``), ``data.args.NAME`` or
    ``models.NAME.key``; VALUE is read as a TOML value, falling back to a plain string; an empty VALUE
    (``--set data.builtin=``) removes the key.  A section not
    in the file is created.  Bad keys are :class:`ConfigError` naming the ``--set`` at fault.
    """
    raw = copy.deepcopy(raw)
    for item in overrides:
        where = f"--set {item!r}"
        if "=" not in item:
            raise ConfigError(f"{where}: expected KEY=VALUE, e.g. --set model.method=ML")
        key, text = (s.strip() for s in item.split("=", 1))
        parts = key.split(".")
        if not key or any(not p for p in parts):
            raise ConfigError(f"{where}: expected KEY=VALUE with KEY like 'section.key', got key {key!r}")
        section = parts[0]
        if section not in SCHEMA:
            raise ConfigError(f"{where}: unknown section {section!r}{did_you_mean(section, SCHEMA)}"
                              f" (allowed: {', '.join(SCHEMA)})")
        if section == "models":
            if len(parts) != 3:
                raise ConfigError(f"{where}: a model key is models.NAME.key, e.g. models.full.method")
            names = list(raw.get("models", {})) if isinstance(raw.get("models"), dict) else []
            if parts[1] not in names:
                raise ConfigError(f"{where}: no model {parts[1]!r} in the config{did_you_mean(parts[1], names)}"
                                  f" (models: {', '.join(names) or 'none'})")
            path, spec = parts[:2], SCHEMA["models"]
            rest = parts[2:]
        else:
            path, spec, rest = parts[:1], SCHEMA[section], parts[1:]
        if not rest:
            raise ConfigError(f"{where}: name a key of [{section}], e.g. {section}.{next(iter(spec))}")
        k = rest[0]
        if k not in spec:
            raise ConfigError(f"{where}: unknown key {k!r} in [{'.'.join(path)}]{did_you_mean(k, spec)}"
                              f" (allowed: {', '.join(spec)})")
        if len(rest) > 2 or (len(rest) == 2 and spec[k].type is not dict):
            raise ConfigError(f"{where}: [{'.'.join(path)}] {k} is not a table")
        node = raw
        for p in path + rest[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"{where}: {p!r} is not a table in the config")
            node = nxt
        if text == "":
            node.pop(rest[-1], None)  # --set KEY= removes the key
        else:
            node[rest[-1]] = _parse_value(text)
    return raw


def load_config(path, overrides=()) -> RunConfig:
    """Read and validate a TOML configuration file, with ``--set`` ``overrides`` applied; errors are
    prefixed with the file name."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file '{path}' is a folder, not a file") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file '{path}': {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 ({e.reason})") from None
    try:
        raw = apply_overrides(raw, overrides)
        return parse_config(raw, base_dir=path.parent, source=path, overrides=overrides)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
