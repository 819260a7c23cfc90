"""jaxmix.fitting.cache: the in-process executables are dropped before the process runs out of memory mappings."""
from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pytest

import jaxmix
from jaxmix.fitting import cache as _cache
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/maps")
def test_release_executables_when_mappings_pile_up():
    d = jaxmix.datasets.sleepstudy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = jaxmix.fit("Reaction ~ Days + (Days | Subject)", d)
        again = jaxmix.fit("Reaction ~ Days + (Days | Subject)", d)
    assert again.optim.compile_seconds == 0.0  # reused in memory
    assert len(_cache._COMPILED) >= 1
    before = _cache._mappings()
    assert not _cache.release_executables_if_needed(limit=10**9)
    assert _cache.release_executables_if_needed(limit=0)
    assert len(_cache._COMPILED) == 0 and _cache._mappings() < before
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        third = jaxmix.fit("Reaction ~ Days + (Days | Subject)", d)  # compiled again, same numbers
    assert third.optim.compile_seconds > 0.0
    assert third.loglik == first.loglik and (third.fixef == first.fixef).all()


def test_first_fit_freezes_the_garbage_collector_unless_disabled():
    """The first fit (jaxmix.runtime.start) moves the objects alive then out of the cyclic collector
    (JAXMIX_GC_FREEZE=0: not); import jaxmix alone does not (tests/test_runtime.py)."""
    import subprocess
    import sys

    code = "import gc, jaxmix; jaxmix.runtime.start(); print(gc.get_freeze_count())"
    counts = {}
    for value in ("1", "0"):
        env = dict(os.environ, JAXMIX_GC_FREEZE=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        counts[value] = int(out.stdout.strip().splitlines()[-1])
    assert counts["1"] > 10_000 and counts["0"] == 0


def test_compiled_program_leaves_the_collector_as_it_was():
    import gc

    import jax
    import jax.numpy as jnp

    from jaxmix.fitting.cache import compiled_program

    f = jax.jit(lambda x: jnp.sin(x) * 2.0)
    assert gc.isenabled()
    exe, _ = compiled_program(f, (jnp.ones(3),))
    assert gc.isenabled() and float(exe(jnp.ones(3))[0]) == pytest.approx(2 * np.sin(1.0))
    gc.disable()
    try:
        compiled_program(jax.jit(lambda x: x + 1.0), (jnp.ones(4),))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_after_lower_runs_between_lowering_and_compiling_and_on_reuse():
    """``after_lower`` (the LMM fit starts its second program's compile there) is called once the
    program is lowered and before XLA compiles it; on reuse of a compiled program, at once."""
    import jax
    import jax.numpy as jnp

    from jaxmix.fitting.cache import compiled_program

    events = []
    f = jax.jit(lambda x: jnp.cos(x) + 3.0)
    real_lower = f.lower

    class Lowered:
        def __init__(self, lo):
            self.lo = lo

        def compile(self, **kw):
            events.append("compile")
            return self.lo.compile(**kw)

    def lower(*a, **k):
        events.append("lower")
        return Lowered(real_lower(*a, **k))

    g = type("J", (), {"lower": staticmethod(lower)})()
    exe, s = compiled_program(g, (jnp.ones(5),), after_lower=lambda: events.append("after"))
    assert events == ["lower", "after", "compile"] and s > 0
    assert float(exe(jnp.zeros(5))[0]) == pytest.approx(4.0)
    exe2, s2 = compiled_program(g, (jnp.ones(5),), after_lower=lambda: events.append("again"))
    assert exe2 is exe and s2 == 0.0 and events[-1] == "again" and events.count("compile") == 1


def _run_script(script: str, tmp_path, store: str):
    """The last line of ``script``'s output (JSON), run in a new process with the cache folder under
    ``tmp_path`` and the executable store ``store`` (on/off)."""
    import json
    import subprocess

    env = dict(os.environ, JAXMIX_CACHE_DIR=str(tmp_path / "cache"), JAXMIX_STORE_EXECUTABLES=store)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


_STORE_SCRIPT = r"""
import json, sys, warnings
import jax.monitoring as mon
traces = []
mon.register_event_duration_secs_listener(lambda name, dur, **kw: traces.append(name) if "trace" in name else None)
import numpy as np, jaxmix
warnings.simplefilter("ignore")
d = jaxmix.datasets.sleepstudy()
lmm = jaxmix.fit("Reaction ~ Days + (Days | Subject)", d)
n_lmm = len(traces)
print(json.dumps({"lmm_traces": n_lmm, "loglik": lmm.loglik, "fixef": list(lmm.fixef),
                  "se": list(lmm.coef_table()["se"]), "theta": list(lmm.theta),
                  "compile": lmm.optim.compile_seconds}))
"""


def test_a_second_process_loads_the_stored_executable_without_tracing(tmp_path):
    """With a cache folder, the first process stores the fit's executable in ``executables/``; a second
    one loads it — its LAPACK calls included — without tracing any program, and gives the same numbers
    to the last bit.  ``JAXMIX_STORE_EXECUTABLES=off`` keeps the store out (JAX's own cache traces)."""
    def run(store: str):
        return _run_script(_STORE_SCRIPT, tmp_path, store)

    first = run("on")
    stored = list((tmp_path / "cache" / "executables").glob("*.exe"))
    assert first["lmm_traces"] >= 1 and len(stored) >= 1
    second = run("on")
    assert second["lmm_traces"] == 0
    for key in ("loglik", "fixef", "se", "theta"):
        assert second[key] == first[key]
    third = run("off")  # JAX's persistent cache only: the program is traced and lowered again
    assert third["lmm_traces"] >= 1 and third["loglik"] == first["loglik"]


_REREAD_SCRIPT = r"""
import json
import jax, jax.numpy as jnp
from jaxmix import runtime
from jaxmix.fitting.cache import compiled_program
runtime.start()


def many_fusions(x, idx):  # enough fusions for XLA:CPU to split its code into several modules
    out = []
    for k in range(40):
        y = jnp.sin(x * k) + jnp.where(x > k, x, -x) * jnp.cos(x + k)
        out.append(jnp.sum(y[idx]) + jnp.max(y))
    return jnp.stack(out)


x = jnp.linspace(0.0, 1.0, 100_000)
idx = jnp.arange(0, 100_000, 7)
exe, _ = compiled_program(jax.jit(many_fusions), (x, idx))
print(json.dumps([float(v) for v in exe(x, idx)]))
"""


def test_an_executable_read_from_jax_cache_is_not_stored_again(tmp_path):
    """A program JAX reads back from its own persistent cache is not written to the store (jaxlib's
    serialization of a deserialized CPU executable drops compiled functions, and the copy failed when a
    later process ran it); later processes still get the same numbers."""
    import jax

    if jax.default_backend() != "cpu":
        pytest.skip("executables are stored on the CPU only")

    def run(store: str):
        return _run_script(_REREAD_SCRIPT, tmp_path, store)

    first = run("off")  # JAX's cache only
    assert not list((tmp_path / "cache" / "executables").glob("*.exe"))
    second = run("on")  # JAX's cache hit: nothing stored (a later process would load nothing broken)
    assert not list((tmp_path / "cache" / "executables").glob("*.exe"))
    assert second == first


def test_stored_executables_are_keyed_by_what_the_program_depends_on(monkeypatch, tmp_path):
    """The store's file name changes with the static arguments, the arguments' shapes, the XLA options,
    the CPU and jaxmix's source; closures and lambdas are never stored (what they captured is not in the
    key)."""
    import jax
    import jax.numpy as jnp

    monkeypatch.setenv("JAXMIX_STORE_EXECUTABLES", "on")
    monkeypatch.setattr(_cache, "_EXE_DIR", [str(tmp_path)])
    if jax.default_backend() != "cpu":
        pytest.skip("executables are stored on the CPU only")
    f = jax.jit(_keyed, static_argnames=("k",))
    x3, x4 = jnp.ones(3), jnp.ones(4)
    base = _cache._stored_path(f, (x3,), {}, {"k": 1}, None)
    assert base is not None and base.startswith(str(tmp_path))
    assert _cache._stored_path(f, (x3,), {}, {"k": 1}, None) == base
    assert _cache._stored_path(f, (x3,), {}, {"k": 2}, None) != base
    assert _cache._stored_path(f, (x4,), {}, {"k": 1}, None) != base
    assert _cache._stored_path(f, (x3,), {}, {"k": 1}, {"xla_backend_optimization_level": 0}) != base
    monkeypatch.setattr(_cache, "_machine", lambda: "another CPU")
    other_cpu = _cache._stored_path(f, (x3,), {}, {"k": 1}, None)
    assert other_cpu != base
    monkeypatch.setattr(_cache, "_SOURCE_DIGEST", ["another version"])
    assert _cache._stored_path(f, (x3,), {}, {"k": 1}, None) not in (base, other_cpu)
    c = 2.0
    assert _cache._stored_path(jax.jit(lambda x: x * c), (x3,), {}, {}, None) is None
    monkeypatch.setenv("JAXMIX_STORE_EXECUTABLES", "off")
    assert _cache._stored_path(f, (x3,), {}, {"k": 1}, None) is None


def _keyed(x, *, k):
    return x * k
