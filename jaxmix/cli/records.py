"""What ``jaxmix run`` records: ``fit.json`` (every number, timings, versions, devices, cache) and tables.

:func:`fit_record` turns a :class:`jaxmix.MixedResults` into a JSON-safe dict; :func:`write_table`
writes a DataFrame as CSV and/or Parquet.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .config import RunConfig

__all__ = ["fit_record", "cache_info", "package_versions", "environment_record", "write_table", "json_num", "json_records"]


def json_num(x):
    """JSON-safe float (NaN and inf become null)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def json_records(frame: pd.DataFrame, index_label: str | None = None) -> list[dict]:
    """A table as a list of JSON-safe row dicts (the index as ``index_label`` when given)."""
    df = frame.reset_index().rename(columns={"index": index_label}) if index_label else frame
    rows = []
    for row in df.to_dict(orient="records"):
        out = {}
        for k, v in row.items():
            if v is None or isinstance(v, (bool, np.bool_)):
                out[str(k)] = None if v is None else bool(v)
            elif isinstance(v, (int, float, np.integer, np.floating)):
                out[str(k)] = int(v) if isinstance(v, (int, np.integer)) else json_num(v)
            else:
                out[str(k)] = None if pd.isna(v) else str(v)
        rows.append(out)
    return rows


def cache_info() -> dict:
    """Whether JAX's persistent compilation cache is on, and its folder (see :mod:`jaxmix.fitting.cache`)."""
    import jax

    folder = jax.config.jax_compilation_cache_dir
    enabled = bool(folder) and bool(getattr(jax.config, "jax_enable_compilation_cache", True))
    return {"enabled": enabled, "dir": folder or None}


def package_versions() -> dict:
    """Versions of Python, jaxmix and the packages the numbers depend on (None: not installed)."""
    import platform
    from importlib import metadata

    from .. import __version__

    out = {"python": platform.python_version(), "jaxmix": __version__}
    for pkg in ("jax", "jaxlib", "numpy", "scipy", "pandas", "optax", "formulaic", "matplotlib", "pyarrow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def environment_record() -> dict:
    import jax

    return {"versions": package_versions(), "devices": [str(d) for d in jax.devices()],
            "backend": jax.default_backend(), "compilation_cache": cache_info()}


def structure_record(res) -> dict | None:
    """A structured fit's residual and random-term structures and their own parameters (None otherwise)."""
    info = res.extra.get("structure") if isinstance(res.extra, dict) else None
    if info is None:
        return None
    sds = info.get("sd_by_stratum")
    return {"variance": info.get("variance"), "correlation": info.get("correlation"),
            "random_terms": list(info.get("terms", [])),
            "sd_by_level": None if sds is None else {str(k): json_num(v) for k, v in sds.items()},
            "rho": None if info.get("rho") is None else json_num(info["rho"]),
            "parameters": json_records(info["table"])}


def fit_record(res, cfg: RunConfig | None = None, wall_seconds: float | None = None,
               warning_messages: list[str] | None = None, tables: dict | None = None,
               environment: bool = True) -> dict:
    """The content of ``fit.json``: every number of the fit, its tables, timings and the config.

    ``tables``: name -> DataFrame already computed (``fixed``, ``covparms``, ``anova``, ``bootstrap``);
    ``environment``: include package versions, devices and the compilation cache.
    """
    from .. import __version__

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
        "loglik": json_num(res.loglik),
        "objective": json_num(res.objective),
        "deviance": json_num(res.deviance),
        "aic": json_num(res.aic),
        "bic": json_num(res.bic),
        "sigma": json_num(res.sigma),
        "theta": [json_num(t) for t in np.asarray(res.theta, dtype=float).ravel()],
        "fixef": {str(k): json_num(v) for k, v in res.fixef.items()},
        "se": {str(k): json_num(v) for k, v in res.se.items()},
        "vcov": [[json_num(v) for v in row] for row in np.asarray(res.vcov_beta, dtype=float)],
        "varcorr": json_records(res.varcorr),
        "structure": structure_record(res),
        "dispersion": json_records(res.dispersion_table),
        "converged": bool(res.converged),
        "singular": bool(res.singular),
        "optimizer": None if opt is None else {
            "optimizer": opt.optimizer, "status": int(opt.status), "message": str(opt.message),
            "iterations": int(opt.iterations), "evaluations": int(opt.evaluations),
            "grad": [json_num(g) for g in np.asarray(opt.grad, dtype=float).ravel()],
            "grad_norm": json_num(opt.grad_norm), "hess_min_eig": json_num(opt.hess_min_eig)},
        "optimizer_message": None if opt is None else str(opt.message),
        "iterations": None if opt is None else int(opt.iterations),
        "fit_seconds": None if opt is None else json_num(opt.fit_seconds),
        "compile_seconds": None if opt is None else json_num(opt.compile_seconds),
        "wall_seconds": json_num(wall_seconds),
        "warnings": list(warning_messages or []),
    }
    for name, (frame, label) in (tables or {}).items():
        rec[name] = json_records(frame, label)
    if environment:
        rec.update(environment_record())
        rec["config"] = None if cfg is None else cfg.to_dict()
    return rec


def write_table(frame: pd.DataFrame, folder: Path, stem: str, formats, index_label=None) -> list[Path]:
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


