"""jaxmix.runtime: importing jaxmix changes no global state; the first fit applies the settings."""
from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import gc, os, jax
import jaxmix
before = (jax.config.jax_enable_x64, gc.get_freeze_count(), jax.config.jax_compilation_cache_dir,
          os.path.exists(os.environ["JAXMIX_CACHE_DIR"]))
d = jaxmix.datasets.sleepstudy()
r = jaxmix.fit("Reaction ~ Days + (1 | Subject)", d)
after = (jax.config.jax_enable_x64, gc.get_freeze_count() > 0, jax.config.jax_compilation_cache_dir,
         os.path.exists(os.environ["JAXMIX_CACHE_DIR"]))
print(before, after, r.beta.dtype)
"""


def test_import_has_no_side_effects_and_the_first_fit_starts_the_runtime(tmp_path):
    cache = tmp_path / "xla"
    env = dict(os.environ, JAXMIX_CACHE_DIR=str(cache))
    env.pop("JAXMIX_GC_FREEZE", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"(False, 0, None, False) (True, True, '{cache}', True) float64"


def _rss() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * 4096


def test_freed_memory_stays_in_the_process_for_reuse():
    """glibc only: after the allocator setting a freed 64 MB block stays in the process (XLA:CPU's
    temporaries are reused without faulting their pages in again); glibc's default hands it back."""
    import numpy as np
    import pytest

    from jaxmix import runtime

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt")
    assert runtime._keep_freed_memory()
    a = np.ones(2**23)  # 64 MB
    before = _rss()
    del a
    assert before - _rss() < 32 * 2**20


def test_start_sets_the_allocator_unless_told_to_keep_it(monkeypatch):
    from jaxmix import runtime

    calls = []
    monkeypatch.setattr(runtime, "_keep_freed_memory", lambda: calls.append(1))
    monkeypatch.setattr(runtime, "enable_compilation_cache", lambda: None)
    monkeypatch.setattr(runtime.gc, "freeze", lambda: None)
    monkeypatch.setenv("JAXMIX_BLAS_THREADS", "keep")
    for mode, expect in (("keep", []), ("", [1])):
        monkeypatch.setattr(runtime, "_STARTED", [False])
        monkeypatch.setenv("JAXMIX_MALLOC", mode)
        calls.clear()
        runtime.start()
        assert calls == expect
