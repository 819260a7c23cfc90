"""Compiled programs: JAX's persistent cache across processes, and an in-memory cache within one.

The persistent cache lives in ``$JAXMIX_CACHE_DIR`` (default ``~/.cache/jaxmix/xla``); set
``JAXMIX_CACHE_DIR=off`` to disable it.  A cache directory the user already gave JAX is left alone.
:func:`compiled_program` keeps each executable for the process, and drops them all before the
process runs out of memory mappings.
"""
from __future__ import annotations

import gc
import os
import time

import jax
import numpy as np


def enable_compilation_cache(path: str | None = None) -> str | None:
    path = path or os.environ.get("JAXMIX_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "jaxmix", "xla")
    if path.lower() in ("off", "0", "none", ""):
        return None
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


#: compiled XLA:CPU executables each hold hundreds of memory mappings; Linux refuses new ones above
#: vm.max_map_count (65,530 by default) and XLA then crashes while compiling.  Above this many mappings
#: the in-process caches (JAX's and jaxmix's) are dropped before the next compile.
MAX_MAPPINGS = 40_000


def _mappings() -> int:
    try:
        with open("/proc/self/maps", "rb") as fh:
            return sum(1 for _ in fh)
    except OSError:  # not Linux
        return 0


def release_executables_if_needed(limit: int = MAX_MAPPINGS) -> bool:
    """Drop the in-process compilation caches (JAX's and :data:`_COMPILED`) when the process holds
    more than ``limit`` memory mappings (a long session that compiled hundreds of model shapes);
    returns whether it did.  Programs compiled afterwards are compiled again (or read back from the
    persistent cache)."""
    if _mappings() <= limit:
        return False
    import gc

    _COMPILED.clear()
    jax.clear_caches()
    gc.collect()
    return True


#: (jitted function, static arguments, argument shapes and dtypes) -> executable
_COMPILED: dict = {}


def signature(tree) -> tuple:
    """The tree structure and every leaf's shape and dtype (no copy of device arrays to the host)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return (treedef,) + tuple((np.shape(x), np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype).str)
                              for x in leaves)


def compiled_program(jitted, args: tuple, kwargs: dict | None = None, statics: dict | None = None,
                     options: dict | None = None, after_lower=None):
    """``jitted.lower(*args, **kwargs, **statics).compile()``, kept in memory for the process.

    A second call with the same shapes reuses the executable (no trace, no compile, no read of the
    persistent cache).  ``options`` are XLA compiler options (part of the key).  ``after_lower()`` is
    called once the program is traced and lowered, before XLA compiles it (at once on reuse): work
    for another thread that would otherwise contend with the tracing for the interpreter.  Returns
    (executable, seconds spent compiling: 0 on reuse)."""
    kwargs, statics = kwargs or {}, statics or {}
    key = (jitted, tuple(sorted(statics.items(), key=lambda kv: kv[0])), signature((args, kwargs)),
           tuple(sorted((options or {}).items())))
    if key in _COMPILED:
        if after_lower is not None:
            after_lower()
        return _COMPILED[key], 0.0
    release_executables_if_needed()
    t0 = time.perf_counter()
    # tracing a fit allocates millions of short-lived objects: Python's cyclic collector would walk
    # them (and every live object) again and again (~20 % of the tracing time)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        lowered = jitted.lower(*args, **kwargs, **statics)
        if after_lower is not None:
            after_lower()
        exe = lowered.compile(compiler_options=options)
    finally:
        if was_enabled:
            gc.enable()
    _COMPILED[key] = exe
    return exe, time.perf_counter() - t0
