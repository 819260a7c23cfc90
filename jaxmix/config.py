"""Run configurations: a TOML file -> a validated :class:`RunConfig`.

A configuration names the data, the model and where the results go::

    [data]
    builtin = "sleepstudy"          # a built-in data set (jaxmix.datasets.list_datasets()), or
    # path = "file.csv"             # a CSV/TSV file, relative to the config file
    # args = { seed = 1 }           # keyword arguments for a built-in simulator

    [model]
    formula = "Reaction ~ Days + (Days | Subject)"
    method = "REML"                 # or "ML"
    # weights = "w"                 # a column of prior weights
    # dtype = "float64"             # or "float32"

    [output]
    dir = "out/sleepstudy"          # relative to the working directory; default out/<config name>

Many outcomes on one right-hand side (:func:`jaxmix.fit_many`) take a ``[sweep]`` section instead of
``[model]``::

    [sweep]
    formula = "~ age10 + teaching + (1 | hospital) + (1 | physician)"   # no response
    outcomes = ["death30", "cath"]
    family = "binomial"             # gaussian (default), binomial, poisson
    # link, method, nagq, weights, dtype as for [model]; batch_size = outcomes per compiled chunk
    compare_single_level = true     # also fit the formula without its bar terms and compare
    # compare_terms = ["teaching"]  # default: the covariates constant within a grouping factor
    # alpha = 0.05

    [devices]
    distributed = false             # true: jax.distributed.initialize() first (multi-host);
                                    # the environment variable JAXMIX_DISTRIBUTED=1 does the same

:func:`parse_config` is pure (a dict -> a :class:`RunConfig`, no file system access);
:func:`load_config` reads and parses a TOML file.  Every problem is a :class:`ConfigError` whose
one-line message names the section and key at fault (with a did-you-mean suggestion for
misspelt keys and names).

To add a key, add a :class:`Field` to :data:`SCHEMA` and a matching attribute to the section's
dataclass.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import JaxmixError

__all__ = ["ConfigError", "Field", "SCHEMA", "DataConfig", "ModelConfig", "OutputConfig", "RunConfig",
           "SweepConfig", "DevicesConfig", "parse_config", "load_config", "did_you_mean"]


class ConfigError(JaxmixError):
    """A configuration that cannot be used; the message names the section and key."""


_TOML_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
                    dict: "a table", list: "an array"}


@dataclass(frozen=True)
class Field:
    """One key of a section: its TOML type, default (``required=True`` for none), allowed values."""

    type: type
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] | None = None
    upper: bool = False  # compare and store choices in upper case
    doc: str = ""


#: section -> key -> Field.  Sections in REQUIRED_SECTIONS must be present.
SCHEMA: dict[str, dict[str, Field]] = {
    "data": {
        "builtin": Field(str, doc="name of a built-in data set"),
        "path": Field(str, doc="CSV (or .tsv) file, relative to the config file"),
        "args": Field(dict, default={}, doc="keyword arguments for a built-in simulator"),
    },
    "model": {
        "formula": Field(str, required=True, doc="lme4-style formula"),
        "method": Field(str, default="REML", choices=("REML", "ML"), upper=True, doc="REML or ML"),
        "weights": Field(str, doc="column of prior weights"),
        "dtype": Field(str, default="float64", choices=("float64", "float32"), doc="floating-point precision"),
    },
    "output": {
        "dir": Field(str, doc="output folder, relative to the working directory"),
    },
    "sweep": {
        "formula": Field(str, required=True, doc="right-hand side without a response, e.g. '~ x + (1 | g)'"),
        "outcomes": Field(list, required=True, doc="the response columns"),
        "family": Field(str, default="gaussian", choices=("gaussian", "binomial", "poisson"), doc="family"),
        "link": Field(str, doc="link function (default: the family's canonical link)"),
        "method": Field(str, doc="REML or ML (Gaussian), Laplace or AGQ (binomial, poisson)"),
        "nagq": Field(int, default=1, doc="Gauss-Hermite points (AGQ, one scalar term)"),
        "weights": Field(str, doc="column of prior weights"),
        "dtype": Field(str, default="float64", choices=("float64", "float32"), doc="floating-point precision"),
        "batch_size": Field(int, doc="outcomes per compiled chunk (default: all at once)"),
        "compare_single_level": Field(bool, default=False,
                                      doc="also fit the formula without random effects and compare"),
        "compare_terms": Field(list, doc="covariates to compare (default: those constant within a group)"),
        "alpha": Field(float, default=0.05, doc="significance level of the comparison"),
    },
    "devices": {
        "distributed": Field(bool, default=False, doc="call jax.distributed.initialize() (multi-host)"),
    },
}
REQUIRED_SECTIONS = ("data",)
MODEL_SECTIONS = ("model", "sweep")  # exactly one of them


def did_you_mean(word: str, candidates, fmt: str = "{!r}") -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean {fmt.format(close[0])}?" if close else ""


def _type_name(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    for t, name in _TOML_TYPE_NAMES.items():
        if isinstance(value, t):
            return name
    return type(value).__name__


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
    formula: str
    method: str = "REML"
    weights: str | None = None
    dtype: str = "float64"

    def fit_kwargs(self) -> dict:
        """Keyword arguments for :func:`jaxmix.fit` (besides formula and data)."""
        return {"method": self.method, "weights": self.weights, "dtype": self.dtype}


@dataclass(frozen=True)
class OutputConfig:
    dir: Path


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

    def fit_kwargs(self) -> dict:
        """Keyword arguments for :func:`jaxmix.fit_many` (besides formula, data and outcomes)."""
        return {"family": self.family, "link": self.link, "method": self.method, "nagq": self.nagq,
                "weights": self.weights, "dtype": self.dtype, "batch_size": self.batch_size}


@dataclass(frozen=True)
class DevicesConfig:
    distributed: bool = False


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig
    model: ModelConfig | None  # None for a sweep
    output: OutputConfig
    source: Path | None = None  # the config file, when read from one
    sweep: SweepConfig | None = None
    devices: DevicesConfig = field(default_factory=DevicesConfig)

    def with_output(self, directory) -> "RunConfig":
        return dataclasses.replace(self, output=OutputConfig(Path(directory)))

    def to_dict(self) -> dict:
        """Plain, JSON-friendly description of the resolved configuration."""
        return {
            "source": None if self.source is None else str(self.source),
            "data": {"builtin": self.data.builtin,
                     "path": None if self.data.path is None else str(self.data.path),
                     "args": dict(self.data.args)},
            "model": None if self.model is None else dataclasses.asdict(self.model),
            "sweep": None if self.sweep is None else dataclasses.asdict(self.sweep),
            "devices": dataclasses.asdict(self.devices),
            "output": {"dir": str(self.output.dir)},
        }


def _section(raw: dict, name: str) -> dict:
    """Validate one section's keys and types; returns key -> value with defaults filled in."""
    spec = SCHEMA[name]
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table, got {_type_name(table)}")
    for key in table:
        if key not in spec:
            raise ConfigError(f"unknown key {key!r} in [{name}]{did_you_mean(key, spec)}"
                              f" (allowed: {', '.join(spec)})")
    out = {}
    for key, f in spec.items():
        if key not in table:
            if f.required:
                raise ConfigError(f"[{name}] is missing the required key {key!r}")
            out[key] = dict(f.default) if isinstance(f.default, dict) else f.default
            continue
        value = table[key]
        ok = isinstance(value, f.type) and not (f.type in (int, float) and isinstance(value, bool))
        if f.type is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise ConfigError(f"[{name}] {key} must be {_TOML_TYPE_NAMES.get(f.type, f.type.__name__)}, "
                              f"got {_type_name(value)} {value!r}")
        if f.type is str and not value.strip():
            raise ConfigError(f"[{name}] {key} must not be empty")
        if f.choices is not None:
            v = value.upper() if f.upper else value
            if v not in f.choices:
                raise ConfigError(f"[{name}] {key} must be one of {', '.join(map(repr, f.choices))}, "
                                  f"got {value!r}{did_you_mean(v, f.choices)}")
            value = v
        out[key] = value
    return out


def _data(d: dict, base_dir: Path | None) -> DataConfig:
    from . import datasets

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


def _model(m: dict) -> ModelConfig:
    from .formula import parse_formula

    try:
        parse_formula(m["formula"])
    except JaxmixError as e:
        raise ConfigError(f"[model] formula: {e}") from None
    return ModelConfig(**m)


def _sweep(m: dict) -> SweepConfig:
    from .formula import parse_formula

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
    return SweepConfig(**m)


def parse_config(raw: dict, base_dir=None, source=None) -> RunConfig:
    """Validate a configuration dict (as :mod:`tomllib` returns it).

    Args:
      raw: the parsed TOML document.
      base_dir: folder that a relative ``[data] path`` is relative to (the config file's folder).
      source: the config file, for the default output folder ``out/<file stem>`` and for records.
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
        raise ConfigError("missing the [model] section (or a [sweep] section for many outcomes)")
    if len(present) > 1:
        raise ConfigError("a configuration has either a [model] or a [sweep] section, not both")
    sections = {name: _section(raw, name) for name in SCHEMA if name not in MODEL_SECTIONS or name in present}
    data = _data(sections["data"], None if base_dir is None else Path(base_dir))
    model = _model(sections["model"]) if "model" in sections else None
    sweep = _sweep(sections["sweep"]) if "sweep" in sections else None
    out_dir = sections["output"]["dir"]
    if out_dir is None:
        out_dir = Path("out") / (Path(source).stem if source is not None else "jaxmix")
    output = OutputConfig(Path(out_dir).expanduser())
    return RunConfig(data=data, model=model, output=output, source=None if source is None else Path(source),
                     sweep=sweep, devices=DevicesConfig(**sections["devices"]))


def load_config(path) -> RunConfig:
    """Read and validate a TOML configuration file; errors are prefixed with the file name."""
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
        return parse_config(raw, base_dir=path.parent, source=path)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
