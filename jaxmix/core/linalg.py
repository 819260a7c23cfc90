"""Cholesky factors and triangular solves: small blocks in plain jnp, larger ones without batched LAPACK.

* Small (q x q, q ≤ 8) blocks — one per level of a random-effect term — are written out element by
  element, so XLA fuses them into a few vectorised loops (faster than batched LAPACK calls for tiny
  blocks).
* Larger matrices (the dense Schur-complement block) use LAPACK, but on the CPU never as a *batched*
  call: jaxlib 0.10's CPU LAPACK kernels split a batch into tasks on XLA's intra-op thread pool and
  block until they finish, and when a program runs two such calls at once every pool thread waits
  (a deadlock seen on 2 cores with vmapped fits).  :func:`chol` and :func:`trsm` are
  ``jax.custom_batching.sequential_vmap`` wrappers there — under ``vmap`` (many outcomes, or the
  directions of a Hessian) they loop over the batch, one unbatched LAPACK call each — with
  reverse-mode derivatives of their own (``custom_vjp``, built from the same wrappers, so they can be
  differentiated twice).  On accelerators they are the plain batched calls.
"""
from __future__ import annotations

import contextlib
import threading

import jax
import jax.numpy as jnp
from jax.custom_batching import sequential_vmap
from jax.scipy.linalg import solve_triangular

__all__ = ["chol_small", "solve_lower", "solve_lower_t", "chol", "chol_diag_head",
           "chol_upper", "logdiag_adjoint", "host_inverse",
           "spd_inverse_host", "POTRI_MIN", "trsm", "eigh_sym", "eigvalsh_sym",
           "sequential_lapack"]

_UNROLL_MAX = 8  # above this q, LAPACK (through chol / trsm)


_SEQUENTIAL = threading.local()  # per thread: fits traced on two threads at once do not share it


@contextlib.contextmanager
def sequential_lapack():
    """While tracing inside this block (on this thread), :func:`chol`, :func:`trsm` and the
    eigen-solvers use the CPU-safe sequential forms (reverse-mode derivatives only).  The fit programs
    are traced inside it; code that needs forward-mode derivatives (``jax.hessian``, ``jacfwd``) is
    traced outside."""
    old = getattr(_SEQUENTIAL, "on", False)
    _SEQUENTIAL.on = True
    try:
        yield
    finally:
        _SEQUENTIAL.on = old


def _on_cpu() -> bool:
    return getattr(_SEQUENTIAL, "on", False) and jax.default_backend() == "cpu"


# ---- larger matrices: LAPACK, sequential under vmap on the CPU ---------------------------------
def _phi(X):
    """Lower triangle with the diagonal halved (the Cholesky derivative's projection)."""
    return jnp.tril(X) - 0.5 * jnp.diag(jnp.diagonal(X))


@sequential_vmap
def _potrf(A):
    return jax.lax.linalg.cholesky(A, symmetrize_input=False)


def _trsm_raw(L, B, trans: bool):
    return jax.lax.linalg.triangular_solve(L, B, left_side=True, lower=True, transpose_a=trans)


@sequential_vmap
def _trsm_seq_n(L, B):
    return _trsm_raw(L, B, False)


@sequential_vmap
def _trsm_seq_t(L, B):
    return _trsm_raw(L, B, True)


def _sym_t(A):
    """The symmetric part of A, transposed (the same matrix): LAPACK reads a column-major array, and
    handing it the transpose of a row-major result makes that a free relabelling instead of a
    transposing copy, which XLA's CPU backend otherwise fuses into the matrix's producers (the Schur
    complement's assembly ran 2x slower so, 1,144 x 1,144)."""
    S = 0.5 * (A + A.T)
    return S.T


@jax.custom_vjp
def _chol_cpu(A):
    return _potrf(_sym_t(A))


def _chol_fwd(A):
    L = _chol_cpu(A)
    return L, L


def _chol_bwd(L, Lbar):
    # Ā = sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹)  (Murray 2016; the input is symmetrised)
    P = _phi(L.T @ Lbar)
    X = _trsm_cpu(L, P, True)  # L⁻ᵀ P
    Abar = _trsm_cpu(L, X.T, True).T  # (L⁻ᵀ Xᵀ)ᵀ = X L⁻¹
    return (0.5 * (Abar + Abar.T),)


_chol_cpu.defvjp(_chol_fwd, _chol_bwd)


@jax.custom_vjp
def _trsm_n(L, B):
    return _trsm_seq_n(L, B)


@jax.custom_vjp
def _trsm_t(L, B):
    return _trsm_seq_t(L, B)


def _trsm_cpu(L, B, trans: bool):
    return _trsm_t(L, B) if trans else _trsm_n(L, B)


def _trsm_fwd(trans):
    def fwd(L, B):
        X = _trsm_cpu(L, B, trans)
        return X, (L, X)
    return fwd


def _trsm_bwd(trans):
    def bwd(res, Xbar):
        # X = op(L)⁻¹B:  B̄ = op(L)⁻ᵀ X̄,  L̄ = −tril(B̄Xᵀ) (op = I) or −tril(XB̄ᵀ) (op = ᵀ)
        L, X = res
        Bbar = _trsm_cpu(L, Xbar, not trans)
        Lbar = -jnp.tril(X @ Bbar.T if trans else Bbar @ X.T)
        return Lbar, Bbar
    return bwd


_trsm_n.defvjp(_trsm_fwd(False), _trsm_bwd(False))
_trsm_t.defvjp(_trsm_fwd(True), _trsm_bwd(True))


def chol(A):
    """Lower Cholesky factor of a symmetric positive-definite matrix (m, m) (of its symmetric part)."""
    if _on_cpu():
        return _chol_cpu(A)
    return jax.lax.linalg.cholesky(_sym_t(A), symmetrize_input=False)


def _diag_head_parts(d, A21, A22):
    """(D, L21, L22) of the factor of [[diag(d), A21′], [A21, A22]] (A22 symmetric)."""
    D = jnp.sqrt(d)
    L21 = A21 / D[None, :]
    return D, L21, chol(A22 - L21 @ L21.T)


def chol_diag_head(A, k: int):
    """Lower Cholesky factor of a symmetric positive-definite A (m, m) whose leading (k, k) block is
    diagonal (the Schur complement of a term nested in the one after it): with D = diag(A₁₁)^½,

        L = [[D, 0], [A₂₁D⁻¹, chol(A₂₂ − A₂₁D⁻²A₁₂)]],

    O(k·(m − k)²) instead of O(m³), and its derivative elementwise but for the small trailing
    block (reverse mode through a dense factor of m = 1,700 costs four triangular solves of a second
    each).  Reads A's lower-left block and diagonal; A₁₁'s off-diagonal entries are taken to be 0."""
    D, L21, L22 = _diag_head_parts(jnp.diagonal(A)[:k], A[k:, :k], A[k:, k:])
    top = jnp.concatenate([jnp.diag(D), jnp.zeros((k, A.shape[0] - k), A.dtype)], axis=1)
    return jnp.concatenate([top, jnp.concatenate([L21, L22], axis=1)], axis=0)


def _logdiag_adjoint(L, v):
    """Ā = ½ L⁻ᵀ diag(v) L⁻¹ (symmetric), the derivative of Σ vᵢ log Lᵢᵢ with respect to A = LL′ (for v = 1
    that is ½A⁻¹, the derivative of ½ log|A|): two triangular solves with m right-hand sides (L⁻¹, then
    L⁻ᵀ(diag(v)L⁻¹)), half the work of the derivative through the whole factor (:func:`chol`)."""
    Linv = trsm(L, jnp.eye(L.shape[0], dtype=L.dtype))
    Abar = 0.5 * trsm(L, v[:, None] * Linv, True)  # two triangular solves, no general product
    return 0.5 * (Abar + Abar.T)


#: below this size the two triangular solves cost less than the call out to the host (~0.3 ms)
POTRI_MIN = 256


def _potri_host(Lt):
    """(LL′)⁻¹ for each lower Cholesky factor L, given as Lt = L′ (..., m, m) in C order (that is L in
    Fortran order, LAPACK's own, so nothing is transposed on the way): LAPACK's potri (through
    scipy), whose 2m³/3 multiply-adds are a third of two triangular solves with m right-hand sides.
    Only the upper triangle of each result is set (the strict lower one is unspecified)."""
    import numpy as np
    from scipy.linalg import lapack

    Lt = np.asarray(Lt)
    potri = lapack.dpotri if Lt.dtype == np.float64 else lapack.spotri
    if Lt.ndim == 2:
        return potri(Lt.T, lower=1)[0].T
    out = np.empty_like(Lt)
    for i in np.ndindex(Lt.shape[:-2]):
        out[i] = potri(Lt[i].T, lower=1)[0].T
    return out


def _spd_inverse_upper(L):
    """The upper triangle of (LL′)⁻¹ (strict lower unspecified), by potri on the host."""
    Lt = jnp.swapaxes(L, -1, -2)
    return jax.pure_callback(_potri_host, jax.ShapeDtypeStruct(L.shape, L.dtype), Lt, vmap_method="broadcast_all")


def chol_upper(U):
    """Lower Cholesky factor of the symmetric positive-definite matrix whose upper triangle U holds (the
    strict lower triangle is not read); LAPACK gets U′, a free relabelling of a row-major U."""
    X = U.T
    return _potrf(X) if _on_cpu() else jax.lax.linalg.cholesky(X, symmetrize_input=False)


def host_inverse(N: int) -> bool:
    """Whether :func:`logdiag_adjoint` of an N x N factor takes A⁻¹ from LAPACK's potri on the host
    (on the CPU, from N = :data:`POTRI_MIN` on)."""
    return jax.default_backend() == "cpu" and N >= POTRI_MIN


def logdiag_adjoint(L, m: int, a, v):
    """Ā = ½ L⁻ᵀ diag(a·1_m, v) L⁻¹, the derivative of a·Σ_{i<m} log Lᵢᵢ + Σ_{i≥m} vᵢ₋ₘ log Lᵢᵢ with
    respect to the symmetric A = LL′; only Ā's upper triangle is set (the strict lower one is
    unspecified).  With W′ = L⁻ᵀ[e_m … e_N], Ā = ½ a·A⁻¹ + ½ W′ diag(v − a) W: A⁻¹ by LAPACK's
    potri on the CPU from N = :data:`POTRI_MIN` on (:func:`host_inverse`; a host callback, or
    :func:`spd_inverse_host` between two programs), W by one triangular solve with N − m right-hand
    sides; below that size, and off the CPU, two triangular solves with N right-hand sides."""
    N = L.shape[0]
    if not host_inverse(N):
        return _logdiag_adjoint(L, jnp.concatenate([jnp.broadcast_to(a, (m,)), v]))
    E = jnp.eye(N, N - m, -m, dtype=L.dtype)
    Wt = trsm(L, E, True)  # (N, N − m)
    return 0.5 * a * _spd_inverse_upper(L) + 0.5 * (Wt * (v - a)) @ Wt.T


def spd_inverse_host(L):
    """(LL′)⁻¹ with its LOWER triangle set (the strict upper one unspecified), C order, on the host by
    LAPACK's potri, for a lower factor L (m, m) as a program returns it (C order: L′ is LAPACK's upper
    factor in Fortran order, and the result's upper triangle in Fortran order is this lower one in C
    order: no transposing copy on the host)."""
    import numpy as np
    from scipy.linalg import lapack

    U = np.asarray(L).T
    potri = lapack.dpotri if U.dtype == np.float64 else lapack.spotri
    return potri(U, lower=0)[0].T


def trsm(L, B, trans: bool = False):
    """op(L)⁻¹B for a lower-triangular L (m, m) and B (m,) or (m, r); op(L) = L or Lᵀ."""
    vec = B.ndim == 1
    B2 = B[:, None] if vec else B
    if _on_cpu():
        X = _trsm_cpu(L, B2, bool(trans))
    else:
        X = solve_triangular(L, B2, lower=True, trans="T" if trans else "N")
    return X[:, 0] if vec else X


@sequential_vmap
def _eigh_seq(H):
    return jnp.linalg.eigh(H)


@sequential_vmap
def _eigvalsh_seq(H):
    return jnp.linalg.eigvalsh(H)


def eigh_sym(H):
    """Eigenvalues and vectors of a symmetric matrix (not differentiated; sequential under vmap on CPU)."""
    return _eigh_seq(H) if _on_cpu() else jnp.linalg.eigh(H)


def eigvalsh_sym(H):
    return _eigvalsh_seq(H) if _on_cpu() else jnp.linalg.eigvalsh(H)


# ---- small blocks: unrolled jnp -----------------------------------------------------------------
def chol_small(A):
    """Lower Cholesky factor of each (q, q) block of A (..., q, q)."""
    q = A.shape[-1]
    if q > _UNROLL_MAX:
        return _batched(chol, A)
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


def _batched(fn, *args):
    """Apply ``fn`` (written for single matrices) over the leading axes of its (..., m, k) arguments."""
    for _ in range(args[0].ndim - 2):
        fn = jax.vmap(fn)
    return fn(*args)


def solve_lower(L, B):
    """L⁻¹B for lower-triangular blocks L (..., q, q) and right-hand sides B (..., q, r)."""
    q = L.shape[-1]
    if q > _UNROLL_MAX:
        return _batched(lambda l, b: trsm(l, b, False), L, B)
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
        return _batched(lambda l, b: trsm(l, b, True), L, B)
    x = [None] * q
    for i in reversed(range(q)):
        s = B[..., i, :]
        for k in range(i + 1, q):
            s = s - L[..., k, i, None] * x[k]
        x[i] = s / L[..., i, i, None]
    return jnp.stack(x, axis=-2)
