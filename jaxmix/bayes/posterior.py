"""The result of :func:`jaxmix.sample`: draws named as the ML fit's parameters, summary, diagnostics.

Parameters (columns of :attr:`Posterior.draws`, rows of :meth:`Posterior.summary`): the fixed
effects (``fit(...).fixef`` names, on the original, uncentred columns: α = α̃ − Σⱼ x̄ⱼβⱼ), then per
random term the SDs ``"sd Subject: Days"`` and correlations ``"cor Subject: (Intercept), Days"``
(``varcorr``'s group/var1/var2 and order; R = L L′ from the sampled Cholesky factor), then ``sigma``
(Gaussian).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import JaxmixError, JaxmixWarning
from .diagnostics import ess_bulk, ess_tail, rhat
from .spec import BayesSpec, parameter_names

__all__ = ["Posterior", "named_draws"]


def _fixef_np(samples: dict, spec: BayesSpec, shape: tuple) -> np.ndarray:
    p = spec.Xc.shape[1]
    cols = [j for j in range(p) if j != spec.intercept]
    beta = np.zeros(shape + (p,))
    if spec.intercept is not None:
        beta[..., spec.intercept] = np.asarray(samples["alpha"])
    if cols:
        if "beta" in samples:
            beta[..., cols] = np.asarray(samples["beta"])
        else:
            beta[..., cols] = np.stack([np.asarray(samples[f"beta_{i}"]) for i in range(len(cols))], axis=-1)
    if spec.intercept is not None:  # back to the uncentred columns
        beta[..., spec.intercept] -= beta @ spec.xbar
    return beta


def named_draws(samples: dict, spec: BayesSpec) -> tuple[list[str], np.ndarray]:
    """(names, array (chains, draws, parameters)) from numpyro's grouped samples."""
    names = parameter_names(spec)
    shape = np.asarray(next(iter(samples.values()))).shape[:2]
    cols, out = [], []
    beta = _fixef_np(samples, spec, shape)
    cols += names["fixef"]
    out += [beta[..., j] for j in range(beta.shape[-1])]
    for k, t in enumerate(spec.design.terms):
        sd = np.asarray(samples[f"sd_{k}"]).reshape(shape + (t.q,))
        cols += names["sd"][k]
        out += [sd[..., a] for a in range(t.q)]
    for k, t in enumerate(spec.design.terms):
        if t.q > 1:
            L = np.asarray(samples[f"Lcorr_{k}"])
            R = np.einsum("...ik,...jk->...ij", L, L)
            cols += names["cor"][k]
            out += [R[..., i, j] for j in range(t.q) for i in range(j + 1, t.q)]
    if spec.gaussian:
        cols.append("sigma")
        out.append(np.asarray(samples["sigma"]))
    return cols, np.stack(out, axis=-1)


@dataclass
class Posterior:
    """Posterior draws of a Bayesian mixed model (:func:`jaxmix.sample`).

    Attributes:
      formula, family, link: as given.
      names: parameter names (fixed effects, ``sd …``, ``cor …``, ``sigma``).
      values: draws, shape (chains, draws, parameters).
      divergences: number of divergent transitions after warm-up (a warning is issued when > 0).
      priors: the prior of each class, as text.
      samples: numpyro's raw draws by site (centred intercept ``alpha``, ``beta``, ``sd_k``, ``Lcorr_k``,
        ``sigma``, GLMM ``u1``/``uR``), shape (chains, draws, ...).
      seconds: wall time of warm-up and sampling (compilation included).
      integrated: True when the random effects were integrated out (Gaussian models).
    """

    formula: str
    family: str
    link: str
    names: list
    values: np.ndarray
    divergences: int
    priors: dict
    samples: dict = field(repr=False)
    spec: BayesSpec = field(repr=False)
    arrays: object = field(repr=False)
    seconds: float = 0.0
    warmup: int = 0
    seed: int = 0
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def integrated(self) -> bool:
        return self.family == "gaussian"

    @property
    def chains(self) -> int:
        return self.values.shape[0]

    @property
    def n_draws(self) -> int:
        return self.values.shape[1]

    @property
    def draws(self) -> pd.DataFrame:
        """One row per draw: ``chain``, ``draw``, then a column per parameter."""
        c, d, k = self.values.shape
        df = pd.DataFrame(self.values.reshape(c * d, k), columns=self.names)
        df.insert(0, "draw", np.tile(np.arange(d), c))
        df.insert(0, "chain", np.repeat(np.arange(c), d))
        return df

    def __getitem__(self, name: str) -> np.ndarray:
        """Draws of one parameter, shape (chains, draws)."""
        if name not in self.names:
            from ..errors import did_you_mean

            raise JaxmixError(f"no parameter {name!r}{did_you_mean(name, self.names)}; parameters: "
                              f"{', '.join(self.names)}")
        return self.values[..., self.names.index(name)]

    @property
    def fixef(self) -> pd.Series:
        """Posterior means of the fixed effects."""
        p = len(self.spec.x_names)
        return pd.Series(self.values[..., :p].mean(axis=(0, 1)), index=self.spec.x_names, name="mean")

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """mean, sd, equal-tailed interval (``2.5%``, ``97.5%`` for level 0.95), r_hat, ess_bulk, ess_tail."""
        if not 0 < level < 1:
            raise JaxmixError(f"level must be between 0 and 1, got {level!r}")
        lo, hi = (1 - level) / 2, (1 + level) / 2
        rows = []
        for j, name in enumerate(self.names):
            x = self.values[..., j]
            rows.append((x.mean(), x.std(ddof=1), np.quantile(x, lo), np.quantile(x, hi), rhat(x), ess_bulk(x),
                         ess_tail(x)))
        cols = ["mean", "sd", f"{100 * lo:g}%", f"{100 * hi:g}%", "r_hat", "ess_bulk", "ess_tail"]
        return pd.DataFrame(rows, index=pd.Index(self.names, name="parameter"), columns=cols)

    def posterior_predictive(self, n: int | None = None, seed: int = 0) -> np.ndarray:
        """Replicated responses y_rep, shape (n, rows), from n draws spread over the chains (all by default).

        Conditional on the groups of the data: GLMMs use the sampled random effects; Gaussian models
        draw b | y, β, θ, σ exactly (:func:`jaxmix.bayes.likelihood.conditional_u`).  Binomial draws
        count successes out of the trials.
        """
        from .predictive import posterior_predictive

        return posterior_predictive(self, n=n, seed=seed)

    def to_arviz(self):
        """An ``arviz.InferenceData`` with the named draws (needs arviz: ``pip install arviz``)."""
        try:
            import arviz as az
        except ImportError:
            raise JaxmixError("to_arviz() needs arviz: pip install arviz") from None
        post = {name: self.values[..., j] for j, name in enumerate(self.names)}
        stats = {"diverging": np.asarray(self.extra.get("diverging", np.zeros(self.values.shape[:2], bool)))}
        return az.from_dict(posterior=post, sample_stats=stats)

    def warn_divergences(self, stacklevel: int = 3) -> None:
        if self.divergences > 0:
            warnings.warn(f"{self.divergences} divergent transition(s) after warm-up: the posterior may be "
                          "biased; raise target_accept (e.g. 0.95) or reparametrise", JaxmixWarning,
                          stacklevel=stacklevel)

    def __str__(self) -> str:
        head = (f"Bayesian {self.family} mixed model (NUTS, {self.chains} chains x {self.n_draws} draws "
                f"after {self.warmup} warm-up; random effects "
                f"{'integrated out' if self.integrated else 'sampled, non-centred'})\n"
                f"formula: {self.formula}\npriors: " + "; ".join(f"{k} {v}" for k, v in self.priors.items())
                + f"\ndivergences: {self.divergences}\n")
        return head + self.summary().to_string(float_format=lambda v: f"{v:.4g}")

    __repr__ = __str__
