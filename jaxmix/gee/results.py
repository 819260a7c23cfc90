"""Results of :func:`jaxmix.fit_gee`: one outcome (:class:`GEEResults`) or many (:class:`GEEFits`).

Wald inference on the robust (sandwich) covariance by default: z = β̂ / SE, p = 2 Φ(−|z|),
interval β̂ ± z_{1−α/2} SE (``cov="naive"`` uses the model-based covariance instead).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import JaxmixError
from ..dists import norm_ppf, norm_sf

__all__ = ["GEEResults", "GEEFits", "wald_table"]


def wald_table(estimate: np.ndarray, se: np.ndarray, names: list[str], alpha: float = 0.05) -> pd.DataFrame:
    """term, estimate, se, z, p = 2Φ(−|z|), ci_low/ci_high = estimate ∓ z_{1−α/2} se."""
    z = estimate / se
    q = norm_ppf(1.0 - alpha / 2.0)
    return pd.DataFrame({"term": names, "estimate": estimate, "se": se, "z": z, "p": 2.0 * norm_sf(np.abs(z)),
                         "ci_low": estimate - q * se, "ci_high": estimate + q * se})


@dataclass
class GEEResults:
    """One marginal (GEE) fit.

    Attributes: ``fixef`` (Series), ``se`` (robust), ``se_naive``, ``vcov_robust``, ``vcov_naive``
    (DataFrames), ``working_correlation`` (ρ̂ for exchangeable/ar1, 0 for independence, the time x time
    DataFrame for unstructured), ``scale`` (φ̂), ``converged``, ``n_iter``, ``nobs``, ``n_clusters``.
    """

    formula: str
    response: str
    family: str
    link: str
    corstr: str
    groups: str
    x_names: list[str]
    beta: np.ndarray
    cov_robust: np.ndarray
    cov_naive: np.ndarray
    dep: object
    scale: float
    converged: bool
    n_iter: int
    nobs: int
    n_clusters: int
    cluster_sizes: tuple[int, int]
    time_levels: list | None = field(default=None, repr=False)

    @property
    def fixef(self) -> pd.Series:
        return pd.Series(self.beta, index=self.x_names, name="estimate")

    @property
    def vcov_robust(self) -> pd.DataFrame:
        return pd.DataFrame(self.cov_robust, index=self.x_names, columns=self.x_names)

    @property
    def vcov_naive(self) -> pd.DataFrame:
        return pd.DataFrame(self.cov_naive, index=self.x_names, columns=self.x_names)

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.cov_robust)), index=self.x_names, name="se")

    @property
    def se_naive(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.cov_naive)), index=self.x_names, name="se_naive")

    @property
    def working_correlation(self):
        if self.corstr == "unstructured":
            return pd.DataFrame(self.dep, index=self.time_levels, columns=self.time_levels)
        return float(self.dep)

    def coef_table(self, alpha: float = 0.05, cov: str = "robust") -> pd.DataFrame:
        """term, estimate, se, z, p, ci_low, ci_high (Wald, on the robust covariance by default)."""
        if cov not in ("robust", "naive"):
            raise JaxmixError(f"cov must be 'robust' or 'naive', not {cov!r}")
        se = self.se if cov == "robust" else self.se_naive
        return wald_table(self.beta, se.to_numpy(), self.x_names, alpha)

    def summary(self, alpha: float = 0.05) -> str:
        corr = self.working_correlation
        if isinstance(corr, pd.DataFrame):
            corr_txt = "\n" + "\n".join("  " + ln for ln in corr.to_string(float_format=lambda v: f"{v:.3f}").splitlines())
        else:
            corr_txt = f" {corr:.4f}"
        model = f"{self.response} {self.formula}" if self.formula.lstrip().startswith("~") else self.formula
        tab = self.coef_table(alpha)
        tab["se_naive"] = self.se_naive.to_numpy()
        lines = [
            f"Marginal model (GEE): {model}  [{self.family}, {self.link}]",
            f"clusters: {self.groups} ({self.n_clusters}; {self.cluster_sizes[0]}-{self.cluster_sizes[1]} rows each), "
            f"rows: {self.nobs}",
            f"working correlation: {self.corstr};{corr_txt}",
            f"scale: {self.scale:.5g}; iterations: {self.n_iter}; converged: {self.converged}",
            "standard errors: robust (sandwich); se_naive: model-based",
            "",
            tab.set_index("term").to_string(float_format=lambda v: f"{v:.5g}"),
        ]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.summary()


@dataclass
class GEEFits:
    """Several outcomes' GEE fits on one right-hand side: ``fits[name]`` is a :class:`GEEResults`."""

    results: dict
    seconds: float = float("nan")

    @property
    def names(self) -> list[str]:
        return list(self.results)

    def __getitem__(self, name: str) -> GEEResults:
        return self.results[name]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self):
        return iter(self.results.values())

    @property
    def fixef(self) -> pd.DataFrame:
        return pd.DataFrame({k: r.fixef for k, r in self.results.items()}).T

    @property
    def se(self) -> pd.DataFrame:
        return pd.DataFrame({k: r.se for k, r in self.results.items()}).T

    @property
    def se_naive(self) -> pd.DataFrame:
        return pd.DataFrame({k: r.se_naive for k, r in self.results.items()}).T

    def to_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """outcome, term, estimate, se (robust), se_naive, z, p, ci_low, ci_high; one row per outcome x term."""
        frames = []
        for name, r in self.results.items():
            t = r.coef_table(alpha)
            t.insert(0, "outcome", name)
            t.insert(4, "se_naive", r.se_naive.to_numpy())
            frames.append(t)
        return pd.concat(frames, ignore_index=True)

    def summary(self) -> str:
        return "\n".join(r.summary() for r in self.results.values())
