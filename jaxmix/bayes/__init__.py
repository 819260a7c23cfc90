"""Bayesian fits of mixed models: :func:`sample` (numpyro's NUTS) -> :class:`Posterior`.

numpyro is an optional dependency (``pip install 'jaxmix[bayes]'``): importing jaxmix does not need it;
:func:`sample` raises a :class:`jaxmix.JaxmixError` naming the extra when it is missing.
"""
from .api import Sampler, sample, sample_replicates
from .posterior import Posterior

__all__ = ["sample", "Sampler", "sample_replicates", "Posterior"]
