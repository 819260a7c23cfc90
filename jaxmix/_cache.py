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
