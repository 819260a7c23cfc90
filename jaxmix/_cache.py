"""Persistent XLA compilation cache, so a second process with the same shapes skips compilation.

The cache lives in ``$JAXMIX_CACHE_DIR`` (default ``~/.cache/jaxmix/xla``); set
``JAXMIX_CACHE_DIR=off`` to disable it.  A cache directory the user already gave JAX is left alone.
"""
from __future__ import annotations

import os

import jax


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


def release_executables_if_needed(limit: int = MAX_MAPPINGS, caches: tuple = ()) -> bool:
    """Drop the in-process compilation caches when the process holds more than ``limit`` memory
    mappings (a long session that compiled hundreds of model shapes); returns whether it did.

    Programs compiled afterwards are compiled again (or read back from the persistent cache)."""
    if _mappings() <= limit:
        return False
    import gc

    for c in caches:
        c.clear()
    jax.clear_caches()
    gc.collect()
    return True
