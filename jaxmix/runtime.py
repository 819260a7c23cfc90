"""Process-wide settings a fit needs, applied when the first fit starts (``import jaxmix`` sets none).

:func:`start` (idempotent) is called by :func:`jaxmix.fit`, :func:`jaxmix.fit_many` and everything built
on them.  It

* switches JAX to 64-bit floats (``jax_enable_x64``: results must match lme4; ``dtype="float32"``
  is the opt-in for single precision);
* turns on JAX's persistent compilation cache in ``$JAXMIX_CACHE_DIR`` (default
  ``~/.cache/jaxmix/xla``; ``off`` disables it; a cache folder the user gave JAX is left alone);
* splits the CPU into ``$JAXMIX_CPU_DEVICES`` devices when that is set (see
  :func:`jaxmix.use_cpu_devices`);
* limits the BLAS/LAPACK libraries already loaded (OpenBLAS of numpy and scipy, whose LAPACK XLA:CPU
  calls) to ``$JAXMIX_BLAS_THREADS`` threads, default 1 (``keep`` leaves them as they are), with
  threadpoolctl: the dense factors of a fit are small, and waking OpenBLAS's threads costs more
  than they save on a busy machine (both cores of a 2-core machine busy: a 512 x 512 Cholesky took
  236 ms with two threads, 2.3 ms with one; ``benchmarks/bench_blas_threads.py``);
* on Linux with glibc, unless ``JAXMIX_MALLOC=keep``, keeps freed memory in the process for reuse
  (``mallopt``: large blocks from the heap instead of fresh ``mmap`` pages, no trimming of the heap's
  top): XLA:CPU allocates each evaluation's temporaries anew, and pages handed back to the system
  fault in again on the next evaluation (the InstEval-like crossed fit 3.6 -> 3.2 s).  The process's
  peak memory is unchanged; what it frees is not returned to the system until it exits;
* unless ``JAXMIX_GC_FREEZE=0``, moves the objects alive at that moment (the modules of jax, numpy,
  pandas, scipy, ...) out of Python's cyclic garbage collector (``gc.freeze()``): tracing a model
  allocates millions of objects, and every full collection would walk these again.

Code that builds JAX arrays for jaxmix's functions before its first fit calls :func:`start` first.
"""
from __future__ import annotations

import gc
import os

import jax

from .fitting.cache import enable_compilation_cache

__all__ = ["start"]

_STARTED = [False]


def start() -> None:
    """Apply the settings above once per process."""
    if _STARTED[0]:
        return
    _STARTED[0] = True
    jax.config.update("jax_enable_x64", True)
    enable_compilation_cache()
    if os.environ.get("JAXMIX_CPU_DEVICES", "").strip():
        from .devices import use_cpu_devices

        use_cpu_devices(os.environ["JAXMIX_CPU_DEVICES"].strip())
    blas = os.environ.get("JAXMIX_BLAS_THREADS", "1").strip().lower()
    if blas not in ("keep", "0", ""):
        from threadpoolctl import threadpool_limits

        try:
            threadpool_limits(int(blas), user_api="blas")
        except ValueError:
            from .errors import JaxmixError

            raise JaxmixError(f"JAXMIX_BLAS_THREADS must be a positive integer or 'keep', not {blas!r}") from None
    if os.environ.get("JAXMIX_MALLOC", "").strip().lower() != "keep":
        _keep_freed_memory()
    if os.environ.get("JAXMIX_GC_FREEZE", "1").strip().lower() not in ("0", "false", "no", "off"):
        gc.freeze()


#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def _keep_freed_memory() -> bool:
    """glibc's allocator set to serve large blocks from its heap and never trim it (see :func:`start`);
    False where the C library is not glibc."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    ok &= mallopt(_M_TOP_PAD, 64 << 20) == 1
    return bool(ok)
