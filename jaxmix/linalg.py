"""Batched Cholesky factors and triangular solves of many small (q x q) blocks in plain jnp.

Written out element by element (q is the number of columns of a random-effect term, rarely above 4),
so XLA fuses them into a few vectorised loops.  This is faster than batched LAPACK calls for tiny
blocks and avoids jaxlib's batched-LAPACK thread-pool path, which deadlocked on a 2-core machine
when tens of thousands of 1 x 1 solves were batched inside the jitted fit.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

__all__ = ["chol_small", "solve_lower", "solve_lower_t"]

_UNROLL_MAX = 8  # above this q, fall back to LAPACK


def chol_small(A):
    """Lower Cholesky factor of each (q, q) block of A (..., q, q)."""
    q = A.shape[-1]
    if q > _UNROLL_MAX:
        return jnp.linalg.cholesky(A)
    L = [[None] * q for _ in range(q)]
    for j in range(q):
        s = A[..., j, j]
        for k in range(j):
            s = s - L[j][k] ** 2
        L[j][j] = jnp.sqrt(s)
        for i in range(j + 1, q):
            s = A[..., i, j]
            for k in range(j):
                s = s - L[i][k] * L[j][k]
            L[i][j] = s / L[j][j]
    zero = jnp.zeros_like(A[..., 0, 0])
    rows = [jnp.stack([L[i][j] if j <= i else zero for j in range(q)], axis=-1) for i in range(q)]
    return jnp.stack(rows, axis=-2)


def solve_lower(L, B):
    """L⁻¹B for lower-triangular blocks L (..., q, q) and right-hand sides B (..., q, r)."""
    q = L.shape[-1]
    if q > _UNROLL_MAX:
        return solve_triangular(L, B, lower=True)
    x = []
    for i in range(q):
        s = B[..., i, :]
        for k in range(i):
            s = s - L[..., i, k, None] * x[k]
        x.append(s / L[..., i, i, None])
    return jnp.stack(x, axis=-2)


def solve_lower_t(L, B):
    """L⁻ᵀB for lower-triangular blocks L (..., q, q) and right-hand sides B (..., q, r)."""
    q = L.shape[-1]
    if q > _UNROLL_MAX:
        return solve_triangular(L, B, lower=True, trans="T")
    x = [None] * q
    for i in reversed(range(q)):
        s = B[..., i, :]
        for k in range(i + 1, q):
            s = s - L[..., k, i, None] * x[k]
        x[i] = s / L[..., i, i, None]
    return jnp.stack(x, axis=-2)
