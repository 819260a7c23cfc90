"""Compiled programs: JAX's persistent cache across processes, and an in-memory cache within one.

The persistent cache lives in ``$JAXMIX_CACHE_DIR`` (default ``~/.cache/jaxmix/xla``); set
``JAXMIX_CACHE_DIR=off`` to disable it.  A cache directory the user already gave JAX is left alone.
:func:`compiled_program` keeps each executable for the process, and drops them all before the
process runs out of memory mappings.

JAX's persistent cache is keyed by the lowered program, so a second process still traces and lowers
every program before it finds the executable (0.15–0.35 s of a small model's first fit).  jaxmix's
folder therefore also holds the serialized executables themselves (``executables/`` beside JAX's
entries), keyed by what the program depends on — the function, its static arguments, the arguments'
tree, shapes and dtypes, the XLA options, the jax/jaxlib versions, the device kind and the CPU's
instruction set, and a digest of jaxmix's own source files — and a process that finds one loads it
without tracing.  Only CPU programs of module-level functions are stored, and only as XLA compiled
them (not an executable JAX read back from its own cache: jaxlib cannot serialize those again);
``JAXMIX_STORE_EXECUTABLES=off`` turns this off (JAX's cache stays on).
"""
from __future__ import annotations

import dataclasses
import gc
import hashlib
import os
import pickle
import sys
import threading
import time
import types

import jax
import numpy as np

try:  # the MLIR dialect JAX imports on its first compilation (~25 ms of a first fit), imported with jaxmix
    import jaxlib.mlir.dialects.mhlo  # noqa: F401
except ImportError:  # another jaxlib's layout: JAX imports what it needs
    pass


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
    _EXE_DIR[0] = os.path.join(path, "executables")  # jaxmix's own folder: its executables go there too
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
    stored = _stored_path(jitted, args, kwargs, statics, options)
    exe = _load(stored) if stored is not None else None
    if exe is not None:  # written by an earlier process: no trace, no lowering, no compile
        if after_lower is not None:
            after_lower()
        _COMPILED[key] = exe
        return exe, time.perf_counter() - t0
    # tracing a fit allocates millions of short-lived objects: Python's cyclic collector would walk
    # them (and every live object) again and again (~20 % of the tracing time)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        lowered = jitted.lower(*args, **kwargs, **statics)
        if after_lower is not None:
            after_lower()
        if stored is not None:
            _watch_persistent_hits()
        _HITS.count = 0
        exe = lowered.compile(compiler_options=options)
        from_jax_cache = getattr(_HITS, "count", 0) > 0
    finally:
        if was_enabled:
            gc.enable()
    _COMPILED[key] = exe
    # an executable JAX read back from its own cache is not serialized again: jaxlib's serialization
    # of a deserialized CPU executable drops compiled functions (the copy fails when it runs:
    # "Function ... not found"); only freshly compiled executables are stored
    if stored is not None and not from_jax_cache:
        _store(stored, exe)
    return exe, time.perf_counter() - t0


#: per thread: JAX persistent-cache hits seen during the current compile
_HITS = threading.local()
_WATCHING = [False]
_WATCH_LOCK = threading.Lock()


def _count_hit(event: str, **_) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _HITS.count = getattr(_HITS, "count", 0) + 1


def _watch_persistent_hits() -> None:
    """Listen (once per process) for JAX's persistent-cache hits, which JAX records in the compiling
    thread."""
    with _WATCH_LOCK:
        if not _WATCHING[0]:
            jax.monitoring.register_event_listener(_count_hit)
            _WATCHING[0] = True


#: the folder of serialized executables (set with the persistent cache by :func:`enable_compilation_cache`)
_EXE_DIR: list = [None]
_SOURCE_DIGEST: list = [None]


def _source_digest() -> str:
    """A digest of every jaxmix source file (computed once): an executable is never read back by
    another version of the code that traced it."""
    if _SOURCE_DIGEST[0] is None:
        h = hashlib.blake2b(digest_size=16)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for folder, dirs, files in sorted(os.walk(root)):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    h.update(os.path.relpath(path, root).encode())
                    with open(path, "rb") as fh:
                        h.update(fh.read())
        _SOURCE_DIGEST[0] = h.hexdigest()
    return _SOURCE_DIGEST[0]


def _machine() -> str:
    """The CPU's architecture and instruction-set flags (a cache folder shared by machines of other
    CPUs, a cluster's home directory, must not hand one an executable built for another's)."""
    import platform

    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    flags = line.split(":", 1)[-1].strip()
                    break
    except OSError:
        pass
    return f"{platform.machine()}|{platform.processor()}|{flags}"


def _stable(obj) -> str:
    """A description of a static argument that is the same in every process (functions by name, not
    by address)."""
    if callable(obj) and hasattr(obj, "__qualname__"):
        return f"{getattr(obj, '__module__', '')}.{obj.__qualname__}"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return f"{type(obj).__qualname__}({', '.join(_stable(getattr(obj, f.name)) for f in dataclasses.fields(obj))})"
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return f"{type(obj).__qualname__}({', '.join(_stable(v) for v in obj)})"
    if isinstance(obj, (tuple, list)):
        return "(" + ", ".join(_stable(v) for v in obj) + ")"
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{k!r}: {_stable(v)}" for k, v in sorted(obj.items())) + "}"
    return repr(obj)


def _single_device(tree) -> bool:
    """Whether every array argument lives on one device (sharded programs are not stored)."""
    for leaf in jax.tree_util.tree_leaves(tree):
        sh = getattr(leaf, "sharding", None)
        if sh is not None and len(sh.device_set) != 1:
            return False
    return True


def _stored_path(jitted, args, kwargs, statics, options) -> str | None:
    """The file of this program's serialized executable, or None where none is kept (no jaxmix cache
    folder, arguments on several devices)."""
    folder = _EXE_DIR[0]
    if (folder is None or jax.default_backend() != "cpu"
            or os.environ.get("JAXMIX_STORE_EXECUTABLES", "on").strip().lower() in ("off", "0", "no", "false")
            or not _single_device((args, kwargs))):
        return None
    fn = getattr(jitted, "__wrapped__", None)
    # a module-level function only: what a closure or lambda captured is not part of the key
    if (not isinstance(fn, types.FunctionType) or fn.__closure__ or "<" in fn.__qualname__):
        return None
    import jaxlib

    dev = jax.devices()[0]
    parts = [_source_digest(), jax.__version__, jaxlib.__version__, sys.version.split()[0],
             dev.platform, getattr(dev, "device_kind", ""), str(jax.device_count()), _machine(),
             str(jax.config.jax_enable_x64), str(jax.config.jax_default_matmul_precision),
             os.environ.get("XLA_FLAGS", ""), f"{fn.__module__}.{fn.__qualname__}",
             _stable(statics), str(signature((args, kwargs))), _stable(options or {})]
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=20).hexdigest()
    return os.path.join(folder, digest + ".exe")


def _load(path: str):
    """The executable stored at ``path``, or None (none there, or one this jaxlib cannot read)."""
    try:
        with open(path, "rb") as fh:
            payload, in_tree, out_tree = pickle.load(fh)
        from jax.experimental.serialize_executable import deserialize_and_load

        _lapack_ready()
        return deserialize_and_load(payload, in_tree, out_tree)
    except Exception:  # noqa: BLE001 - missing, partial or unreadable: compile instead
        return None


def _lapack_ready() -> None:
    """Bind jaxlib's LAPACK kernels (the CPU programs' Cholesky factors and triangular solves call
    them): jaxlib does it when it lowers a LAPACK call, which a process that only loads executables
    never does — they would call unbound functions."""
    if jax.default_backend() == "cpu":
        from jaxlib.cpu import _lapack

        _lapack.initialize()


def _store(path: str, exe) -> None:
    """Write ``exe`` to ``path`` (a new file renamed into place, so a reader never sees a partial
    one); programs that cannot be serialized (host callbacks) are not stored."""
    try:
        from jax.experimental.serialize_executable import serialize

        data = pickle.dumps(serialize(exe))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"  # per process and thread
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - the cache is an optimisation: a failed write changes nothing
        try:
            os.remove(tmp)
        except (OSError, UnboundLocalError):
            pass
