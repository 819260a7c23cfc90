"""One compiled program for many outcomes: the whole fit vmapped over outcomes, sharded over devices.

A per-outcome program takes two dicts of arrays, ``b`` (this outcome's slice of the batched arrays:
response, row weights, start values, ...) and ``s`` (arrays shared by all outcomes: Z, X, the index
arrays of the blocked structure).  :func:`run_batched` vmaps it over the leading axis of the batched
arrays (or, with ``width``, maps over groups of outcomes inside the same program), splits that axis
over the devices of a 1-D mesh (``shard_map``, no communication between
devices), pads the batch to a multiple of the device count (and of the chunk size), runs it in
chunks of one compiled shape, and returns numpy arrays with the padding removed.

Inside ``vmap`` every ``lax.while_loop`` (optimiser, inner penalised IRLS) runs until the slowest outcome
of its batch has finished; finished outcomes are carried through unchanged (a select), so one
outcome can never change another's numbers.
"""
from __future__ import annotations

import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from . import devices as _dev
from ._cache import compiled_program
from .crossprod import RowData, append_response, cross_products
from .progress import progress_bar

__all__ = ["lmm_one", "glmm_one", "run_batched", "default_width"]


def lmm_one(b: dict, s: dict, *, layout, tl, p: int, reml: bool, max_iter: int, gtol: float):
    """One LMM: cross-products of [Z X y] with this outcome's row weights, then the whole fit.

    When all outcomes share the row weights (no outcome-specific missing rows), the blocks of [Z X]
    do not depend on the outcome: they are formed once for the batch and only the response's
    blocks per outcome (:func:`jaxmix.crossprod.append_response`).
    """
    from .lmm import fit_program

    a = {**s, **b}
    if "w" in s:  # shared weights: [Z X] blocks computed outside the vmapped part
        rows = RowData(a["Z1"], a["ZR"], a["X"])
        xp = append_response(cross_products(rows, a["w"], a["idx"], layout_x(layout)), rows, a["y"], a["w"],
                             a["idx"], layout)
    else:
        T = jnp.concatenate([a["X"], a["y"][:, None]], axis=1)
        xp = cross_products(RowData(a["Z1"], a["ZR"], T), a["w"], a["idx"], layout)
    return fit_program(xp, a["idx"], a["n"], a["ldW"], a["start"], layout, tl, p, reml, max_iter, gtol)


def glmm_one(b: dict, s: dict, *, fam, layout, tl, p: int, nagq: int, max_iter: int, gtol: float):
    """One GLMM: the whole Laplace/AGQ fit with this outcome's response, prior weights and start."""
    from .glmm import fit_program, glmm_data

    a = {**s, **b}
    return fit_program(a["start"], fam, glmm_data(a), a["idx"], layout, tl, p, nagq, max_iter, gtol)


def layout_x(layout):
    """The layout without the response column (tail = X only)."""
    import dataclasses

    return dataclasses.replace(layout, t=layout.t - 1)


_PROGRAMS: dict = {}


def _program(one, statics: tuple, mesh, width: int | None):
    """The jitted batched program for ``one`` with ``statics`` bound (cached per process).

    ``width=None`` vmaps the whole batch; an integer runs ``lax.map`` over groups of ``width``
    outcomes, each group vmapped (``width=1``: one outcome after another, inside the same program).
    """
    key = (one, statics, mesh, width)
    if key not in _PROGRAMS:
        per = partial(one, **dict(statics))
        if width is None:
            batched = jax.vmap(per, in_axes=(0, None))
        elif width == 1:
            def batched(b, s, per=per):
                return jax.lax.map(lambda bb: per(bb, s), b)
        else:  # groups of ``width`` (the caller pads the batch to a multiple of it)
            def batched(b, s, per=per, width=width):
                k = jax.tree_util.tree_leaves(b)[0].shape[0]
                groups = jax.tree_util.tree_map(lambda x: x.reshape(k // width, width, *x.shape[1:]), b)
                ys = jax.lax.map(lambda bb: jax.vmap(per, in_axes=(0, None))(bb, s), groups)
                # explicit shapes: outputs may have a zero-sized axis (a model with one term)
                return jax.tree_util.tree_map(lambda y: y.reshape(k, *y.shape[2:]), ys)
        if mesh.size > 1:
            batched = jax.shard_map(batched, mesh=mesh, in_specs=(PartitionSpec(_dev.AXIS), PartitionSpec()),
                                    out_specs=PartitionSpec(_dev.AXIS), check_vma=False)
        _PROGRAMS[key] = jax.jit(batched)
    return _PROGRAMS[key]


#: outcomes vmapped together in an LMM sweep on the CPU: small groups keep the arrays of one step in
#: the cache and let an outcome that needs more iterations hold back only its group (1,000 outcomes,
#: 50 groups x 20 rows, one CPU device: 0.55 s vmapped together, 0.25 s in groups of 16;
#: ``python benchmarks/bench_sweep.py widths``)
CPU_LMM_WIDTH = 16


def default_width(kind: str, devices=None) -> int | None:
    """How many outcomes to vmap together: all of them on accelerators; on the CPU backend groups of
    :data:`CPU_LMM_WIDTH` for LMMs and one at a time for GLMMs.

    On the CPU a GLMM batch runs one outcome after another inside the one program (``lax.map``): the
    outcomes' optimiser and inner mode loops would otherwise run in lockstep until the slowest has
    finished, and the dense factorisations loop over the batch anyway (:mod:`jaxmix.linalg`); measured
    on nine endpoints × 20,000 patients, 2.8 s one at a time against 15 s vmapped.
    """
    devs = list(jax.devices() if devices is None else devices)
    if all(d.platform == "cpu" for d in devs):
        return 1 if kind == "glmm" else CPU_LMM_WIDTH
    return None


def run_batched(one, statics: tuple, batched: dict, shared: dict, devices=None, batch_size: int | None = None,
                progress: bool | None = None, desc: str = "fitting", width: int | None = None):
    """Run ``one`` over the leading axis of the arrays in ``batched``; returns (outputs, compile s, run s).

    Args:
      one: a per-outcome program ``one(b, s, **statics)``.
      statics: ``((name, value), ...)``, hashable.
      batched: name -> array with the outcomes on axis 0 (all the same length k).
      shared: name -> array or pytree of arrays used by every outcome.
      devices: the devices to shard over (default ``jax.devices()``).
      batch_size: outcomes per chunk (rounded up to a multiple of the device count); default all.
      progress: show a progress bar (default: when there is more than one chunk).
      width: outcomes vmapped together (None: all; see :func:`_program` and :func:`default_width`).
    """
    k = int(next(iter(batched.values())).shape[0])
    mesh = _dev.outcome_mesh(devices)
    ndev = mesh.size
    chunk = k if batch_size is None else max(1, min(int(batch_size), k))
    per_dev = -(-chunk // ndev)
    if width is not None and width > 1:  # each device's share: whole groups of ``width``
        width = min(int(width), per_dev)
        per_dev = -(-per_dev // width) * width
    chunk = per_dev * ndev
    nchunks = -(-k // chunk)
    prog = _program(one, statics, mesh, width)
    shared_dev = jax.tree_util.tree_map(lambda x: _dev.put(x, mesh, False), shared)
    show = (nchunks > 1) if progress is None else bool(progress)
    bar = progress_bar(k, desc, quiet=not show, unit="outcome")
    outs, compile_s, run_s = [], 0.0, 0.0
    try:
        for c in range(nchunks):
            lo, hi = c * chunk, min((c + 1) * chunk, k)
            take = np.concatenate([np.arange(lo, hi), np.zeros(chunk - (hi - lo), dtype=np.int64) + lo])
            b = {name: _dev.put(np.asarray(v)[take], mesh, True) for name, v in batched.items()}
            exe, cs = compiled_program(prog, (b, shared_dev))  # prog is per mesh
            compile_s += cs
            tr = time.perf_counter()
            out = _dev.to_host(exe(b, shared_dev))
            run_s += time.perf_counter() - tr
            outs.append(jax.tree_util.tree_map(lambda x, n=hi - lo: x[:n], out))
            bar.update(hi - lo)
    finally:
        bar.close()
    result = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0), *outs)
    return result, compile_s, run_s
