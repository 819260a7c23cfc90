"""Devices: a sweep over several CPU devices (jaxmix.use_cpu_devices / JAXMIX_CPU_DEVICES) and over two
processes joined by jax.distributed equals the one-device run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jaxmix

REPO = Path(__file__).resolve().parents[1]


def test_use_cpu_devices_after_start_and_bad_values():
    import jax

    have = len(jax.devices("cpu"))
    assert jaxmix.use_cpu_devices(have) == have  # already so: nothing to do
    with pytest.raises(jaxmix.JaxmixError, match=f"cannot split the CPU into {have + 1} devices"):
        jaxmix.use_cpu_devices(have + 1)
    for bad in (0, -2, "many", 1.5j):
        with pytest.raises(jaxmix.JaxmixError, match="positive integer or 'auto'"):
            jaxmix.use_cpu_devices(bad)


CPU_SCRIPT = r"""
import json, warnings
import numpy as np, jax, jaxmix
warnings.simplefilter("ignore")
d = jaxmix.datasets.sleepstudy()
rng = np.random.default_rng(0)
Y = d["Reaction"].to_numpy()[:, None] + rng.normal(0, 20, (len(d), 5))
sw = jaxmix.fit_many("~ Days + (Days | Subject)", d, Y=Y)
print(json.dumps({"devices": len(jax.devices()), "beta": sw.beta.tolist(), "loglik": sw.loglik_.tolist()}))
"""


def test_cpu_devices_from_the_environment():
    runs = {}
    for n in ("2", "1"):
        env = dict(os.environ, JAX_PLATFORMS="cpu", JAXMIX_CPU_DEVICES=n)
        env.pop("XLA_FLAGS", None)
        proc = subprocess.run([sys.executable, "-c", CPU_SCRIPT], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert runs["2"]["devices"] == 2 and runs["1"]["devices"] == 1
    np.testing.assert_allclose(runs["2"]["beta"], runs["1"]["beta"], rtol=1e-8)
    np.testing.assert_allclose(runs["2"]["loglik"], runs["1"]["loglik"], rtol=1e-10)


MULTIHOST_SCRIPT = r"""
import json, sys, warnings
import numpy as np, jax, jaxmix
from jaxmix.devices import maybe_init_from_env
assert maybe_init_from_env()  # JAXMIX_DISTRIBUTED=1 with JAX_COORDINATOR_ADDRESS / _NUM_PROCESSES / _PROCESS_ID
warnings.simplefilter("ignore")
rng = np.random.default_rng(3)
g = np.repeat(np.arange(12), 8); x = np.tile(np.arange(8.0), 12)
Y = 2 + 0.5 * x[:, None] + rng.normal(0, 1, (12, 5))[g] + rng.normal(0, 1, (96, 5))
Y[rng.random(Y.shape) < 0.1] = np.nan
import pandas as pd
d = pd.DataFrame({"g": [f"g{i}" for i in g], "x": x})
sw = jaxmix.fit_many("~ x + (1 | g)", d, Y=Y)
print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(), "devices": len(jax.devices()),
                  "local": len(jax.local_devices()), "beta": sw.beta.tolist(), "loglik": sw.loglik_.tolist(),
                  "status": sw.status_.tolist()}))
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one():
    """Two processes (two CPU devices each) joined by jax.distributed: 5 outcomes over 4 devices on two
    "hosts"; both processes receive all results, equal to one process alone."""
    port = _free_port()
    procs = []
    for pid in (0, 1):
        env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2",
                   JAXMIX_DISTRIBUTED="1", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                   JAX_PROCESS_ID=str(pid))
        procs.append(subprocess.Popen([sys.executable, "-c", MULTIHOST_SCRIPT], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    for p in procs:
        try:
            so, se = p.communicate(timeout=300)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode == 0, se[-3000:]
        outs.append(json.loads(so.strip().splitlines()[-1]))
    env = {k: v for k, v in os.environ.items() if k != "JAXMIX_DISTRIBUTED"}
    single = subprocess.run([sys.executable, "-c", MULTIHOST_SCRIPT.replace("assert maybe_init_from_env()", "")],
                            cwd=REPO, env=dict(env, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    one = json.loads(single.stdout.strip().splitlines()[-1])
    assert [o["process"] for o in outs] == [0, 1]
    assert all(o["processes"] == 2 and o["devices"] == 4 and o["local"] == 2 for o in outs)
    assert one["devices"] == 1
    for o in outs:
        assert o["status"] == one["status"] == [0] * 5
        np.testing.assert_allclose(o["beta"], one["beta"], rtol=1e-8)
        np.testing.assert_allclose(o["loglik"], one["loglik"], rtol=1e-10)
