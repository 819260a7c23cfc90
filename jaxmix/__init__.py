"""jaxmix: hierarchical (mixed) models by maximum likelihood in JAX, with lme4's numbers.

float64 is switched on when jaxmix is imported (results must match lme4); pass ``dtype="float32"``
to :func:`fit` to opt into single precision.
"""
import os as _os
import sys as _sys

if _os.path.basename(_sys.argv[0] or "") == "jaxmix" and "numpy" not in _sys.modules:
    # the `jaxmix` command: one OpenBLAS thread (the dense Schur-complement Cholesky is small, and
    # OpenBLAS's threads slowed whole fits 6x on a busy machine; see README "Performance").
    # Python users set OPENBLAS_NUM_THREADS=1 themselves before importing numpy.
    _os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax as _jax  # noqa: E402

_jax.config.update("jax_enable_x64", True)

from . import datasets  # noqa: E402
from ._cache import enable_compilation_cache  # noqa: E402
from .errors import JaxmixError, JaxmixWarning  # noqa: E402
from .formula import parse_formula  # noqa: E402
from .anova import anova, homogeneity_test  # noqa: E402
from .model import fit  # noqa: E402
from .results import MixedResults, OptimSummary  # noqa: E402
from .sweep import Sweep, fit_many  # noqa: E402
from .bootstrap import BootstrapResult, bootstrap  # noqa: E402  (the function shadows the module name)

from .devices import use_cpu_devices  # noqa: E402

enable_compilation_cache()
if _os.environ.get("JAXMIX_CPU_DEVICES", "").strip():  # e.g. "auto" or "2": see jaxmix.use_cpu_devices
    use_cpu_devices(_os.environ["JAXMIX_CPU_DEVICES"].strip())

if _os.environ.get("JAXMIX_GC_FREEZE", "1").strip().lower() not in ("0", "false", "no", "off"):
    # Move the objects alive now (the modules of jax, numpy, pandas, scipy, ...) out of Python's cyclic
    # garbage collector: tracing a model allocates millions of objects, and every full collection (and
    # the last one at exit) would walk these again.  JAXMIX_GC_FREEZE=0 turns it off (see README
    # "Performance").
    import gc as _gc

    _gc.freeze()

__version__ = "0.1.0"
__all__ = ["fit", "MixedResults", "OptimSummary", "JaxmixError", "JaxmixWarning", "parse_formula",
           "datasets", "enable_compilation_cache"]
__all__ += ["fit_many", "Sweep"]
__all__ += ["bootstrap", "BootstrapResult"]
__all__ += ["anova", "homogeneity_test", "use_cpu_devices"]
