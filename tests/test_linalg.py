"""jaxmix.core.linalg: unrolled small blocks, and the CPU-safe (sequential under vmap) Cholesky / triangular solve
with their own reverse-mode derivatives, equal to jnp's in value, gradient and Hessian."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.linalg import solve_triangular

from jaxmix.core import linalg as la
REPO = Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(0)
M = 12
A0 = jnp.asarray(RNG.normal(size=(M, M)))
B0 = jnp.asarray(RNG.normal(size=(M, 3)))


def _f(s, chol, solve, a=A0):
    """A scalar through a Cholesky factor and both triangular solves, as in the profiled deviance."""
    A = a @ a.T + s * jnp.eye(M)
    L = chol(A)
    X = solve(L, B0, False)
    Y = solve(L, X, True)
    return jnp.sum(jnp.log(jnp.diag(L))) + jnp.sum(Y * B0) + jnp.sum(jnp.sin(L))


def _ref(s, a=A0):
    return _f(s, jnp.linalg.cholesky,
              lambda L, B, t: solve_triangular(L, B, lower=True, trans="T" if t else "N"), a)


def _new(s, a=A0):
    return _f(s, la.chol, la.trsm, a)


def _two(f):
    return lambda x: f(x[0]) * x[1] + f(x[2])


X0 = jnp.array([1.0, 2.0, 3.0])


@pytest.mark.parametrize("what", ["value", "grad", "jacrev_grad", "vmap_jacrev_grad"])
def test_sequential_forms_equal_jnp(what):
    ops = {"value": lambda f: _two(f)(X0),
           "grad": lambda f: jax.grad(_two(f))(X0),
           "jacrev_grad": lambda f: jax.jacrev(jax.grad(_two(f)))(X0),
           "vmap_jacrev_grad": lambda f: jax.jit(jax.vmap(jax.jacrev(jax.grad(_two(f)))))(jnp.stack([X0, X0 + 1]))}
    ref = ops[what](_ref)
    with la.sequential_lapack():
        new = ops[what](_new)
    np.testing.assert_allclose(np.asarray(new), np.asarray(ref), rtol=1e-10, atol=1e-12)


def test_gradient_in_the_matrix_is_symmetric_part():
    ref = jax.grad(lambda a: _ref(1.0, a))(A0)
    with la.sequential_lapack():
        new = jax.grad(lambda a: _new(1.0, a))(A0)
    np.testing.assert_allclose(np.asarray(new), np.asarray(ref), rtol=1e-10, atol=1e-12)


def test_batched_calls_become_loops_on_cpu():
    """Under vmap inside the block the LAPACK calls are unbatched (a loop), outside they are batched."""
    if jax.default_backend() != "cpu":
        pytest.skip("the sequential form is used on the CPU only")
    def fn():  # a new function each time: jit caches traces by function
        return jax.jit(jax.vmap(jax.jacrev(jax.grad(_two(lambda s: _new(s))))))

    with la.sequential_lapack():
        inside = fn().lower(jnp.stack([X0, X0 + 1])).as_text()
    outside = fn().lower(jnp.stack([X0, X0 + 1])).as_text()
    assert "while" in inside and "while" not in outside
    # outside the block forward mode works (jax.hessian), as inference.py needs
    h = jax.hessian(_two(_new))(X0)
    np.testing.assert_allclose(np.asarray(h), np.asarray(jax.hessian(_two(_ref))(X0)), rtol=1e-10, atol=1e-12)


def test_small_blocks_and_eigen():
    A = jnp.asarray(RNG.normal(size=(5, 3, 3)))
    S = A @ jnp.swapaxes(A, 1, 2) + jnp.eye(3)
    L = la.chol_small(S)
    np.testing.assert_allclose(np.asarray(L), np.linalg.cholesky(np.asarray(S)), rtol=1e-12)
    B = jnp.asarray(RNG.normal(size=(5, 3, 2)))
    np.testing.assert_allclose(np.asarray(L @ la.solve_lower(L, B)), np.asarray(B), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(jnp.swapaxes(L, 1, 2) @ la.solve_lower_t(L, B)), np.asarray(B),
                               rtol=1e-10, atol=1e-12)
    big = jnp.asarray(RNG.normal(size=(10, 10)))
    S10 = big @ big.T + jnp.eye(10)
    with la.sequential_lapack():
        w = jax.vmap(la.eigvalsh_sym)(jnp.stack([S10, 2 * S10]))
        np.testing.assert_allclose(np.asarray(la.chol_small(S10)), np.linalg.cholesky(np.asarray(S10)), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(w[1]), 2 * np.linalg.eigvalsh(np.asarray(S10)), rtol=1e-10)


VMAP_SCRIPT = r"""
import numpy as np, warnings, jaxmix
warnings.simplefilter("ignore")
from jaxmix.datasets import simulate_evaluations
d = simulate_evaluations(n_students=60, n_lecturers=25, n_departments=4, n_ratings=900, seed=2)
Y = d["y"].to_numpy()[:, None] + np.random.default_rng(3).normal(0, 0.5, (len(d), 8))
Y[0, 0] = np.nan  # per-outcome rows
sw = jaxmix.fit_many("~ service + (1 | s) + (1 | d) + (1 | dept)", d, Y=Y)
print("STATUS", sw.status_.tolist())
"""


def test_vmapped_crossed_sweep_finishes():
    """Eight crossed-design LMMs vmapped on the CPU: jaxlib's batched LAPACK used to hang here."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", VMAP_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "STATUS [0, 0, 0, 0, 0, 0, 0, 0]" in proc.stdout


def test_logdiag_adjoint_is_the_derivative_of_the_log_diagonal():
    """Ā = ½ L⁻ᵀ diag(v) L⁻¹ equals JAX's derivative of Σ vᵢ log Lᵢᵢ through the whole factor, for a
    cotangent v of mixed signs, and central differences along a symmetric direction."""
    rng = np.random.default_rng(3)
    B = rng.standard_normal((9, 9))
    A = jnp.asarray(B @ B.T + 9 * np.eye(9))
    v = jnp.asarray(rng.standard_normal(9))
    ref = lambda M: jnp.dot(v, jnp.log(jnp.diagonal(jnp.linalg.cholesky(M))))  # noqa: E731
    Abar = la._logdiag_adjoint(jnp.linalg.cholesky(A), v)
    np.testing.assert_allclose(Abar, jax.grad(ref)(A), rtol=1e-10, atol=1e-13)
    E = rng.standard_normal((9, 9))
    E = jnp.asarray(E + E.T)
    fd = (ref(A + 1e-6 * E) - ref(A - 1e-6 * E)) / 2e-6
    np.testing.assert_allclose(jnp.sum(Abar * E), fd, rtol=1e-7)


@pytest.mark.parametrize("potri_min", [1, None], ids=["host inverse", "triangular solves"])
def test_logdiag_adjoint_with_a_tail(monkeypatch, potri_min):
    """Ā = ½L⁻ᵀdiag(a·1_m, v)L⁻¹ (its upper triangle) — A⁻¹ by potri plus the tail's rank-(N − m) term,
    or two triangular solves below POTRI_MIN — gives ⟨Ā, E⟩ equal to JAX's derivative of
    a·Σ_{i<m} log Lᵢᵢ + Σ vᵢ log Lᵢᵢ through the whole factor and to central differences for symmetric
    directions E; under vmap too (the host inverse loops over the batch)."""
    rng = np.random.default_rng(5)
    N, m = 11, 8
    B = rng.standard_normal((3, N, N))
    if potri_min is not None:
        monkeypatch.setattr(la, "POTRI_MIN", potri_min)  # the host inverse at this size too
    A = jnp.asarray(B @ np.swapaxes(B, 1, 2) + N * np.eye(N))
    a, v = 2.0, jnp.asarray([2.0, -0.7, 35.0])  # the criterion's weights: 2 on Z and X rows, (n − p)·2 on y

    def ref(M):
        d = jnp.log(jnp.diagonal(jnp.linalg.cholesky(M)))
        return a * jnp.sum(d[:m]) + jnp.dot(v, d[m:])

    def adjoint(M):
        Ab = la.logdiag_adjoint(jnp.linalg.cholesky(M), m, jnp.asarray(a), v)
        return jnp.triu(Ab) + jnp.triu(Ab, 1).T  # its upper triangle is the one set

    E = rng.standard_normal((N, N))
    E = jnp.asarray(E + E.T)
    ref, adjoint = jax.jit(ref), jax.jit(adjoint)
    grad_ref = jax.jit(jax.grad(ref))
    for M in A:
        g = adjoint(M)
        np.testing.assert_allclose(jnp.sum(g * E), jnp.sum(grad_ref(M) * E), rtol=1e-11)
        fd = (ref(M + 1e-6 * E) - ref(M - 1e-6 * E)) / 2e-6
        np.testing.assert_allclose(jnp.sum(g * E), fd, rtol=1e-7)
    gv = jax.jit(jax.vmap(adjoint))(A)
    for i in range(3):
        np.testing.assert_allclose(jnp.sum(gv[i] * E), jnp.sum(grad_ref(A[i]) * E), rtol=1e-11)


def test_chol_diag_head_is_the_cholesky_factor_and_its_derivative():
    """A (m, m) with a diagonal leading (k, k) block: chol_diag_head(A, k) equals LAPACK's factor, and
    its directional derivatives along symmetric perturbations that keep the block diagonal equal
    those of the dense factor (jvp and ⟨grad, E⟩)."""
    from jaxmix.core.linalg import chol, chol_diag_head

    rng = np.random.default_rng(0)
    k, t = 40, 4
    A = np.zeros((k + t, k + t))
    A[:k, :k] = np.diag(rng.uniform(1, 3, k))
    B = 0.1 * rng.normal(size=(t, k))
    A[k:, :k], A[:k, k:] = B, B.T
    C = rng.normal(size=(t, t))
    A[k:, k:] = C @ C.T + 5 * np.eye(t)
    np.testing.assert_allclose(np.asarray(chol_diag_head(jnp.asarray(A), k)), np.linalg.cholesky(A), rtol=1e-13,
                               atol=1e-14)

    def f(M, fn):
        L = fn(M)
        return jnp.sum(jnp.log(jnp.diagonal(L))) + jnp.sum(L[k:, :k] ** 2) + jnp.sum(L[k:, k:] ** 3)

    head = lambda M: f(M, lambda x: chol_diag_head(x, k))  # noqa: E731
    g = jax.jit(jax.grad(head))(jnp.asarray(A))
    jvp_head = jax.jit(lambda M, E: jax.jvp(head, (M,), (E,))[1])
    jvp_dense = jax.jit(lambda M, E: jax.jvp(lambda x: f(x, chol), (M,), (E,))[1])
    for _ in range(3):
        E = rng.normal(size=A.shape)
        E = E + E.T
        E[:k, :k] = np.diag(np.diag(E[:k, :k]))
        d1 = jvp_head(jnp.asarray(A), jnp.asarray(E))
        d2 = jvp_dense(jnp.asarray(A), jnp.asarray(E))
        np.testing.assert_allclose(float(d1), float(d2), rtol=1e-11)
        np.testing.assert_allclose(float(jnp.sum(g * E)), float(d2), rtol=1e-11)
