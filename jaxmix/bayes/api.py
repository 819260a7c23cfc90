"""``jaxmix.sample``: a Bayesian fit of a (generalised) linear mixed model with numpyro's NUTS."""
from __future__ import annotations

import numbers
import time

from ..errors import JaxmixError

__all__ = ["sample", "Sampler", "sample_replicates", "require_numpyro"]

CHAIN_METHODS = ("vectorized", "parallel", "sequential")


def require_numpyro():
    """Import numpyro, or raise a :class:`JaxmixError` that names the ``bayes`` extra."""
    try:
        import numpyro  # noqa: F401
    except ImportError:
        raise JaxmixError("jaxmix.sample needs numpyro: pip install 'jaxmix[bayes]' (or pip install numpyro)") from None
    return numpyro


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise JaxmixError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


class Sampler:
    """NUTS for one model structure, compiled once; :meth:`run` samples data sets of the same shapes.

    :func:`sample` runs one; simulation-based calibration runs many (its priors must not depend on
    the data: give every class in ``priors``; the defaults are scaled to the first data set).
    """

    def __init__(self, formula: str, data, family: str = "gaussian", priors=None, chains: int = 4,
                 draws: int = 1000, warmup: int = 1000, *, link: str | None = None, weights=None, offset=None,
                 trials=None, target_accept: float = 0.8, max_tree_depth: int = 10, dense_mass: bool = False,
                 chain_method: str | None = None, progress: bool = True):
        require_numpyro()
        from .. import runtime

        runtime.start()
        import jax
        from numpyro.infer import MCMC, NUTS, init_to_median

        from .model import build_arrays, make_model
        from .priors import describe_priors, resolve_priors
        from .spec import build_spec

        self.chains = _positive_int(chains, "chains")
        self.draws = _positive_int(draws, "draws")
        self.warmup = _positive_int(warmup, "warmup", 0)
        if not (isinstance(target_accept, numbers.Real) and 0 < target_accept < 1):
            raise JaxmixError(f"target_accept must be between 0 and 1, got {target_accept!r}")
        max_tree_depth = _positive_int(max_tree_depth, "max_tree_depth")
        if chain_method is None:
            chain_method = "parallel" if self.chains > 1 and jax.local_device_count() >= self.chains else "vectorized"
        if chain_method not in CHAIN_METHODS:
            raise JaxmixError(f"chain_method must be one of {', '.join(CHAIN_METHODS)}, got {chain_method!r}")
        self.chain_method = chain_method
        self.formula = formula
        self._spec_kw = dict(family=family, link=link, weights=weights, offset=offset, trials=trials)
        self._build_spec, self._build_arrays = build_spec, build_arrays
        spec = build_spec(formula, data, **self._spec_kw)
        self.priors = resolve_priors(spec, priors)
        self.first = (spec, build_arrays(spec))
        self.layout = self.first[1].layout
        self.prior_text = describe_priors(self.priors)
        kernel = NUTS(make_model(spec, self.layout, self.priors), target_accept_prob=float(target_accept),
                      max_tree_depth=max_tree_depth, dense_mass=bool(dense_mass),
                      init_strategy=init_to_median(num_samples=15))
        self.mcmc = MCMC(kernel, num_warmup=self.warmup, num_samples=self.draws, num_chains=self.chains,
                         chain_method=chain_method, progress_bar=bool(progress), jit_model_args=True)

    def prepare(self, data):
        """(spec, arrays) of a data set for this sampler (checked to have the structure it was built for)."""
        if data is None:
            return self.first
        spec = self._build_spec(self.formula, data, **self._spec_kw)
        arr = self._build_arrays(spec)
        first = self.first[0]
        if arr.layout != self.layout or spec.Xc.shape != first.Xc.shape or spec.x_names != first.x_names:
            raise JaxmixError("the data give a different model structure (rows, levels or columns) than the "
                              "sampler was built for")
        return spec, arr

    def run(self, data=None, seed: int = 0, warn: bool = True):
        """Sample the posterior for ``data`` (default: the data the sampler was built with)."""
        import jax

        from .posterior import Posterior, named_draws

        seed = _positive_int(seed, "seed", 0)
        spec, arr = self.prepare(data)
        t0 = time.perf_counter()
        self.mcmc.run(jax.random.PRNGKey(seed), arr.data, extra_fields=("diverging",))
        samples = {k: v for k, v in self.mcmc.get_samples(group_by_chain=True).items()}
        seconds = time.perf_counter() - t0
        div = self.mcmc.get_extra_fields(group_by_chain=True)["diverging"]
        names, values = named_draws(samples, spec)
        post = Posterior(formula=self.formula, family=spec.family.name, link=spec.family.link, names=names,
                         values=values, divergences=int(div.sum()), priors=self.prior_text, samples=samples,
                         spec=spec, arrays=arr, seconds=seconds, warmup=self.warmup, seed=seed,
                         extra={"diverging": div, "chain_method": self.chain_method})
        if warn:
            post.warn_divergences(stacklevel=4)
        return post


def sample(formula: str, data, family: str = "gaussian", priors=None, chains: int = 4, draws: int = 1000,
           warmup: int = 1000, seed: int = 0, *, link: str | None = None, weights=None, offset=None,
           trials=None, target_accept: float = 0.8, max_tree_depth: int = 10, dense_mass: bool = False,
           chain_method: str | None = None, progress: bool = True):
    """Sample the posterior of a mixed model with the No-U-Turn sampler (numpyro's NUTS).

    The formula, data, family, link, weights, offset and trials mean what they mean in
    :func:`jaxmix.fit`.  Gaussian models integrate the random effects out (the marginal likelihood that
    ``fit`` maximises: y ~ N(Xβ, σ²(ZΛΛ′Z′ + W⁻¹)), evaluated from the cross-products); binomial and
    poisson GLMMs sample them non-centred (b = Λu, u ~ N(0, I)).

    Args:
      priors: per class ``{"intercept", "fixef", "sd", "cor", "sigma"}``: numpyro distributions or specs
        such as ``{"normal": [0, 5]}``; the defaults are weakly informative and scaled to the data
        (:mod:`jaxmix.bayes.priors`).
      chains, draws, warmup: chains; draws kept per chain; warm-up (adaptation) iterations per chain.
      seed: random seed (integer).
      target_accept, max_tree_depth, dense_mass: NUTS settings (step-size adaptation target, tree depth
        limit, dense mass matrix).
      chain_method: ``"vectorized"`` (default on one device), ``"parallel"`` (default when JAX has at
        least ``chains`` devices) or ``"sequential"``.
      progress: numpyro's progress bar while sampling.

    Returns:
      :class:`jaxmix.bayes.Posterior`.
    """
    sampler = Sampler(formula, data, family=family, priors=priors, chains=chains, draws=draws, warmup=warmup,
                      link=link, weights=weights, offset=offset, trials=trials, target_accept=target_accept,
                      max_tree_depth=max_tree_depth, dense_mass=dense_mass, chain_method=chain_method,
                      progress=progress)
    return sampler.run(seed=seed)


def sample_replicates(formula: str, datasets: list, family: str = "gaussian", priors=None, chains: int = 1,
                      draws: int = 1000, warmup: int = 1000, seed: int = 0, *, link: str | None = None,
                      weights=None, offset=None, trials=None, target_accept: float = 0.8, progress: bool = False):
    """Posteriors of R data sets of one structure (same rows, levels and columns) in one NUTS run.

    The joint model holds R independent copies of the parameters (:func:`jaxmix.bayes.model.make_model`
    with ``replicates``), so its posterior is the product of the R posteriors and one compilation serves
    all of them (simulation-based calibration).  The priors must not depend on the data: the defaults
    are scaled to the first data set.  Returns a list of R :class:`Posterior` (``divergences`` counts
    the whole run's).
    """
    require_numpyro()
    from .. import runtime

    runtime.start()
    import jax
    import numpy as np
    from numpyro.infer import MCMC, NUTS, init_to_median

    from .model import make_model, stack_data
    from .posterior import Posterior, named_draws
    from .priors import describe_priors, resolve_priors

    if not datasets:
        raise JaxmixError("sample_replicates needs at least one data set")
    s = Sampler(formula, datasets[0], family=family, priors=priors, chains=chains, draws=draws, warmup=warmup,
                link=link, weights=weights, offset=offset, trials=trials, progress=progress)
    prepared = [s.prepare(d) for d in datasets]
    R = len(prepared)
    spec0 = prepared[0][0]
    pri = resolve_priors(spec0, priors)
    kernel = NUTS(make_model(spec0, s.layout, pri, replicates=R), target_accept_prob=float(target_accept),
                  init_strategy=init_to_median(num_samples=15))
    mcmc = MCMC(kernel, num_warmup=s.warmup, num_samples=s.draws, num_chains=s.chains,
                chain_method=s.chain_method, progress_bar=bool(progress))
    mcmc.run(jax.random.PRNGKey(_positive_int(seed, "seed", 0)), stack_data([a for _, a in prepared]),
             extra_fields=("diverging",))
    samples = mcmc.get_samples(group_by_chain=True)
    div = mcmc.get_extra_fields(group_by_chain=True)["diverging"]
    out = []
    for r, (spec, arr) in enumerate(prepared):
        sr = {k: np.asarray(v)[:, :, r] for k, v in samples.items()}
        names, values = named_draws(sr, spec)
        out.append(Posterior(formula=formula, family=spec.family.name, link=spec.family.link, names=names,
                             values=values, divergences=int(div.sum()), priors=describe_priors(pri), samples=sr,
                             spec=spec, arrays=arr, warmup=s.warmup, seed=seed,
                             extra={"diverging": div, "chain_method": s.chain_method, "replicate": r}))
    return out
