"""jaxmix: hierarchical (mixed) models by maximum likelihood in JAX, with lme4's numbers.

Importing jaxmix changes no global state: float64, the compilation cache and the other process-wide
settings are applied when the first fit starts (:func:`jaxmix.runtime.start`).  Pass
``dtype="float32"`` to :func:`fit` to opt into single precision.
"""
import os as _os
import sys as _sys

if _os.path.basename(_sys.argv[0] or "") == "jaxmix" and "numpy" not in _sys.modules:
    # the `jaxmix` command: one OpenBLAS thread (the dense Schur-complement Cholesky is small, and
    # OpenBLAS's threads slowed whole fits 6x on a busy machine; see README "Performance").
    # In Python, the first fit limits the BLAS libraries to one thread (jaxmix.runtime.start).
    _os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from . import datasets  # noqa: E402
from .fitting.cache import enable_compilation_cache  # noqa: E402
from .errors import JaxmixError, JaxmixWarning  # noqa: E402
from .spec.formula import parse_formula  # noqa: E402
from .api.anova import anova, homogeneity_test  # noqa: E402
from .api.fit import fit  # noqa: E402
from .results.mixed import MixedResults, OptimSummary  # noqa: E402
from .api.many import Sweep, fit_many  # noqa: E402
from .api.bootstrap import BootstrapResult, bootstrap  # noqa: E402  (the function shadows the module name)
from .bayes import Posterior, sample  # noqa: E402  (numpyro is imported when sample() runs)

from .devices import use_cpu_devices  # noqa: E402
from .gee.estimate import fit_gee  # noqa: E402
from .gee.results import GEEFits, GEEResults  # noqa: E402

from . import runtime  # noqa: E402
# the inference layer registers the results' methods (coef_table, confint, summary, ...) when imported
from .inference import contrasts, emmeans, intervals, summary, wald  # noqa: E402,F401

__version__ = "0.1.0"
__all__ = ["fit", "MixedResults", "OptimSummary", "JaxmixError", "JaxmixWarning", "parse_formula",
           "datasets", "enable_compilation_cache"]
__all__ += ["fit_many", "Sweep"]
__all__ += ["bootstrap", "BootstrapResult"]
__all__ += ["sample", "Posterior"]
__all__ += ["anova", "homogeneity_test", "use_cpu_devices"]
__all__ += ["fit_gee", "GEEResults", "GEEFits"]
