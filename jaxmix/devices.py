"""Devices for sweeps: a one-dimensional mesh over the outcome axis, and multi-host start-up.

One host
    :func:`jaxmix.fit_many` shards the outcome axis over ``jax.devices()`` (all local GPUs, or the CPU;
    ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` splits a CPU into N devices).  The batch is
    padded to a multiple of the device count; each device runs the vmapped fit on its own outcomes
    with no communication (``shard_map``), and the padding is dropped afterwards.

Several CPU cores
    A fit of a small model is too small for XLA to spread over cores, so a sweep of many small
    LMMs runs on one core.  :func:`use_cpu_devices` (or ``JAXMIX_CPU_DEVICES=auto`` / a number in
    the environment, or ``[devices] cpu_devices`` in a config) splits the host CPU into that many JAX
    devices before JAX starts, and ``fit_many`` then shards the outcomes over them (1,000 outcomes
    of a random-slope model: 0.10 s on two cores against 0.25 s on one device, benchmarks/RESULTS.md).  Large fits (a GLMM on
    100,000 rows) already use several cores inside each operation and gain nothing.

Several hosts
    Start the same program on every host and call :func:`init_distributed` first (or set
    ``JAXMIX_DISTRIBUTED=1`` in the environment, or ``[devices] distributed = true`` in a config for
    ``jaxmix run``).  It calls ``jax.distributed.initialize()``, which finds the coordinator, the
    number of processes and this process's id in the cluster environment (SLURM, Open MPI, Cloud TPU,
    Kubernetes), or takes them from ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0),
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``.
    Afterwards ``jax.devices()`` lists the devices of all hosts, ``fit_many`` spreads the outcomes over
    all of them, and every host receives the complete results.  Each host must read the same data.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .errors import JaxmixError

__all__ = ["AXIS", "outcome_mesh", "init_distributed", "use_cpu_devices", "put", "to_host"]

AXIS = "outcomes"
_INITIALISED = False


def init_distributed(**kwargs) -> bool:
    """``jax.distributed.initialize(**kwargs)`` once per process; returns whether it ran now.

    Call it before anything else uses JAX.  Keyword arguments (``coordinator_address``,
    ``num_processes``, ``process_id``, ...) go to JAX; without them JAX reads the cluster environment.
    """
    global _INITIALISED
    if _INITIALISED:
        return False
    for key, env in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
        if key not in kwargs and os.environ.get(env, "").strip():  # JAX itself reads only the address
            try:
                kwargs[key] = int(os.environ[env])
            except ValueError:
                raise JaxmixError(f"{env} must be an integer, not {os.environ[env]!r}") from None
    jax.distributed.initialize(**kwargs)
    _INITIALISED = True
    return True


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def use_cpu_devices(n: int | str | None = None) -> int:
    """Split the host CPU into ``n`` JAX devices (default or ``"auto"``: the usable cores); returns n.

    Call it before the first JAX computation of the process (``jax.config`` ``jax_num_cpu_devices``);
    afterwards it raises :class:`jaxmix.JaxmixError` unless the count is already ``n``.
    """
    if n is None or (isinstance(n, str) and n.strip().lower() == "auto"):
        n = usable_cores()
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise JaxmixError(f"the number of CPU devices must be a positive integer or 'auto', not {n!r}") from None
    if n < 1:
        raise JaxmixError(f"the number of CPU devices must be a positive integer or 'auto', not {n}")
    if jax.config.jax_num_cpu_devices == n:
        return n
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        have = len(jax.devices("cpu"))
        if have == n:
            return n
        raise JaxmixError(f"cannot split the CPU into {n} devices: JAX has already started with {have} "
                          "(call jaxmix.use_cpu_devices() before the first computation, or set "
                          "JAXMIX_CPU_DEVICES before starting Python)") from None
    return n


def start(cpu_devices: int | str | None = None, distributed: bool = False) -> None:
    """What a config's ``[devices]`` asks for, before the first computation: split the CPU
    (:func:`use_cpu_devices`), then join the other hosts (:func:`init_distributed`, or as
    ``JAXMIX_DISTRIBUTED`` says)."""
    if cpu_devices is not None:
        use_cpu_devices(cpu_devices)
    if distributed:
        init_distributed()
    else:
        maybe_init_from_env()


def maybe_init_from_env() -> bool:
    """:func:`init_distributed` when ``JAXMIX_DISTRIBUTED`` is 1/true/yes."""
    if os.environ.get("JAXMIX_DISTRIBUTED", "").strip().lower() in ("1", "true", "yes", "on"):
        return init_distributed()
    return False


def outcome_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``"outcomes"`` over ``devices`` (default: ``jax.devices()``)."""
    devs = list(jax.devices() if devices is None else devices)
    if not devs:
        raise ValueError("no devices")
    return Mesh(np.asarray(devs, dtype=object), (AXIS,))


def put(x: np.ndarray, mesh: Mesh, batched: bool):
    """A global array on ``mesh``: split along axis 0 when ``batched``, else replicated.

    Built shard by shard from the host copy, so it also works when the mesh spans several hosts
    (each host supplies the shards of its own devices).
    """
    x = np.asarray(x)
    sharding = NamedSharding(mesh, PartitionSpec(AXIS) if batched else PartitionSpec())
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def to_host(tree):
    """Numpy copies of a pytree of (possibly multi-host) arrays."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return jax.tree_util.tree_map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.tree_util.tree_map(np.asarray, tree)
