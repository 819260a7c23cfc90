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


MALLOC = """
import numpy as np
from jaxmix.runtime import start
start()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
a = np.ones(2**23)  # 64 MB
before = rss()
del a
print(before - rss() > 32 * 2**20)
"""


def test_the_first_fit_keeps_freed_memory_for_reuse_unless_told_to_keep_malloc():
    """glibc only: a freed 64 MB block stays in the process (XLA:CPU's temporaries are reused without
    faulting their pages in again), and with JAXMIX_MALLOC=keep it goes back to the system."""
    import pytest

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt")
    out = {}
    for mode in ("", "keep"):
        env = dict(os.environ, JAXMIX_MALLOC=mode, JAXMIX_CACHE_DIR="off")
        r = subprocess.run([sys.executable, "-c", MALLOC], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        out[mode] = r.stdout.strip()
    assert out == {"": "False", "keep": "True"}
