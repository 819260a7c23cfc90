"""Sparsity structure and blocked cross-products of [Z₁ Z_R T]′ W [Z₁ Z_R T].

Z₁ is the random term with the most levels; its block of Z′WZ is block diagonal (one q₁ x q₁ block per
level).  Z_R holds the other terms; T the "tail" columns (X, then the response).  The blocks kept are

========  ======================  ===========================================================
A11       (ℓ₁, q₁, q₁)            Z₁′WZ₁, one block per level of term 1
BR        (E, q₁)                 Z_R′WZ₁, one entry per (R row, level of term 1) that occurs
BT        (ℓ₁, t, q₁)             T′WZ₁ per level of term 1
CRR       (m_R, m_R)              Z_R′WZ_R (dense; m_R = Σ_{k≥2} ℓ_k q_k)
CRT, CTT  (m_R, t), (t, t)        Z_R′WT and T′WT
========  ======================  ===========================================================

Z_R′WZ₁ between crossed factors has one entry per observed pair of levels, so it is stored as a list
of entries (COO), never densified.  Forming the blocks costs O(n·s²) (s = non-zeros of a Z row); after
that nothing in a likelihood evaluation depends on n.  All index arrays are built once in numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Layout", "Index", "CrossProducts", "build_structure", "terms_structure", "cross_products", "RowData",
           "append_response", "same_level_pairs", "sorted_pairs", "pair_sums"]


@dataclass(frozen=True)
class Layout:
    """Static sizes of the blocked system (hashable, so it can be a static jit argument)."""

    q: tuple[int, ...]  # columns per term, lme4 order
    nlev: tuple[int, ...]  # levels per term
    offsets: tuple[int, ...]  # first R row of terms 2..K
    m_R: int  # rows of Z_R'Z_R
    t: int  # tail columns (X and response)
    n_entries: int  # E, entries of Z_R'Z_1
    entry_starts: tuple[int, ...]  # first entry of terms 2..K
    n_pairs: tuple[int, ...]  # pairs of levels (term k, term 1) per term k >= 2
    #: the Schur complement's R block is diagonal: one scalar term after term 1, which is nested in it
    #: (each level of term 1 meets one level of term 2, so every same-level pair is on the diagonal)
    r_diagonal: bool = False

    @property
    def q1(self) -> int:
        return self.q[0]

    @property
    def l1(self) -> int:
        return self.nlev[0]


class Index(NamedTuple):
    """Integer index arrays of the structure (a pytree, passed as traced arguments)."""

    code1: jnp.ndarray  # (n,) level of term 1 per row
    rpos: jnp.ndarray  # (n, s_R) R-row position of each R column of each row
    ent: jnp.ndarray  # (n, s_R) entry of Z_R'Z_1 each R column of each row adds to
    e_row: jnp.ndarray  # (E,) R row of each entry
    e_blk: jnp.ndarray  # (E,) level of term 1 of each entry
    pa: jnp.ndarray  # (P,) first entry of each same-level pair (row[pa] >= row[pb])
    pb: jnp.ndarray  # (P,) second entry
    ptgt: jnp.ndarray  # (P,) flat index row[pb]*m_R + row[pa] of the pair's product (upper triangle)

    def as_jax(self) -> "Index":
        return Index(*(jnp.asarray(a) for a in self))


class RowData(NamedTuple):
    """Per-row values: Z₁ (n, q₁), Z_R (n, s_R), the tail T (n, t)."""

    Z1: jnp.ndarray
    ZR: jnp.ndarray
    T: jnp.ndarray


class CrossProducts(NamedTuple):
    A11: jnp.ndarray
    BR: jnp.ndarray
    BT: jnp.ndarray
    CRR: jnp.ndarray
    CRT: jnp.ndarray
    CTT: jnp.ndarray


def same_level_pairs(e_row: np.ndarray, e_blk: np.ndarray, l1: int):
    """All pairs of entries that share a level of term 1, lower triangle (row[a] >= row[b]).

    The entries are ordered by (level, row); an entry at position i of its level pairs with those at
    positions 0..i, so only the lower triangle is ever formed (Σ c(c+1)/2 pairs for levels of c
    entries, not Σ c²).  Rows are distinct within a level."""
    E = e_row.shape[0]
    if E == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z
    order = np.lexsort((e_row, e_blk))
    counts = np.bincount(e_blk, minlength=l1)
    starts = np.cumsum(counts) - counts
    first_of_level = starts[e_blk[order]]
    reps = np.arange(E) - first_of_level + 1  # partners of the entry at each sorted position
    ends = np.cumsum(reps)
    # int32 where the pairs' count allows (half the memory of the InstEval-like 1.9M pairs)
    it = np.int32 if int(ends[-1]) < 2**31 - 1 else np.int64
    order = order.astype(it)
    a = np.repeat(order, reps)
    # the partner's sorted position: first_of_level + (0..i within the level)
    off = np.arange(a.shape[0], dtype=it)
    off -= np.repeat((ends - reps - first_of_level).astype(it), reps)
    b = order[off]
    return a, b


def sorted_pairs(e_row: np.ndarray, e_blk: np.ndarray, l1: int, m_R: int):
    """(pa, pb, ptgt): the same-level pairs of entries (row[pa] ≥ row[pb]) and the flat index
    row[pb]·m_R + row[pa] of each pair's product in the upper triangle of the Schur complement, sorted by
    that index (a faster segment sum)."""
    pa, pb = same_level_pairs(e_row, e_blk, l1)
    # int32 where the values allow (InstEval-like: 1.9M pairs; the sorted copies made one at a time)
    small = np.int32 if max(m_R * m_R, e_row.shape[0]) < 2**31 - 1 else np.int64
    rows = e_row.astype(small)
    ptgt = rows[pb]
    ptgt *= m_R
    ptgt += rows[pa]
    order = np.argsort(ptgt, kind="stable")
    ptgt = ptgt[order].astype(small)
    pa = pa[order].astype(small)
    pb = pb[order].astype(small)
    return pa, pb, ptgt


def pair_sums(l, s, pa, pb):
    """Σ_{e′} s_{e,e′} l_{e′} for every entry e over the same-level pairs (pa ≥ pb, :func:`sorted_pairs`)
    of a symmetric s given on the pairs: pair p adds s_p·l[pa_p] to entry pb_p and, off the diagonal,
    s_p·l[pb_p] to entry pa_p.  ``l`` (E,) or (E, q), ``s`` (pairs,)."""
    E = l.shape[0]
    sp = s.reshape(s.shape + (1,) * (l.ndim - 1))
    off = (pa != pb).astype(s.dtype).reshape(sp.shape)
    return (jax.ops.segment_sum(l[pa] * sp, pb, num_segments=E)
            + jax.ops.segment_sum(l[pb] * (sp * off), pa, num_segments=E))


def build_structure(codes: list[np.ndarray], nlev: list[int], q: list[int], t: int):
    """Index arrays and sizes for terms with level codes ``codes`` (lme4 order), q columns each.

    Returns:
      (Layout, Index) where Index holds numpy arrays.
    """
    n = codes[0].shape[0]
    code1 = np.asarray(codes[0], dtype=np.int64)
    l1 = int(nlev[0])
    offsets, entry_starts, n_pairs = [], [], []
    rpos_cols, ent_cols, e_rows, e_blks = [], [], [], []
    off, ebase = 0, 0
    for ck, lk, qk in zip(codes[1:], nlev[1:], q[1:]):
        ck = np.asarray(ck, dtype=np.int64)
        offsets.append(off)
        entry_starts.append(ebase)
        key = ck * l1 + code1
        uniq, pid = np.unique(key, return_inverse=True)
        npair = uniq.shape[0]
        n_pairs.append(npair)
        lev_k, lev_1 = uniq // l1, uniq % l1
        for a in range(qk):
            rpos_cols.append(off + ck * qk + a)
            ent_cols.append(ebase + pid * qk + a)
        # entry e = ebase + pair*qk + a
        e_rows.append((off + lev_k[:, None] * qk + np.arange(qk)[None, :]).reshape(-1))
        e_blks.append(np.repeat(lev_1, qk))
        off += lk * qk
        ebase += npair * qk
    m_R = off
    e_row = np.concatenate(e_rows) if e_rows else np.zeros(0, dtype=np.int64)
    e_blk = np.concatenate(e_blks) if e_blks else np.zeros(0, dtype=np.int64)
    rpos = np.stack(rpos_cols, axis=1) if rpos_cols else np.zeros((n, 0), dtype=np.int64)
    ent = np.stack(ent_cols, axis=1) if ent_cols else np.zeros((n, 0), dtype=np.int64)
    pa, pb, ptgt = sorted_pairs(e_row, e_blk, l1, m_R)
    layout = Layout(
        q=tuple(int(x) for x in q), nlev=tuple(int(x) for x in nlev), offsets=tuple(offsets), m_R=int(m_R),
        t=int(t), n_entries=int(e_row.shape[0]), entry_starts=tuple(entry_starts), n_pairs=tuple(n_pairs),
    )
    idx = Index(code1=code1, rpos=rpos, ent=ent, e_row=e_row, e_blk=e_blk, pa=pa, pb=pb, ptgt=ptgt)
    return layout, idx


def terms_structure(terms, nobs: int, t: int):
    """(Layout, Index, Z_R) for a design's random terms (lme4 order) and t tail columns.

    Z_R (nobs, s_R) holds the per-row columns of terms 2..K side by side.
    """
    layout, idx = build_structure([x.codes for x in terms], [x.nlevels for x in terms], [x.q for x in terms], t)
    ZR = np.column_stack([x.Z for x in terms[1:]]) if len(terms) > 1 else np.zeros((nobs, 0))
    return layout, idx, ZR


def cross_products(rows: RowData, w: jnp.ndarray, idx: Index, layout: Layout) -> CrossProducts:
    """Blocks of [Z₁ Z_R T]′ diag(w) [Z₁ Z_R T] by segment sums over rows: O(n·s²), jit/vmap-able."""
    Z1, ZR, T = rows
    l1, m_R = layout.l1, layout.m_R
    n, q1, t = Z1.shape[0], Z1.shape[1], T.shape[1]
    wZ1 = w[:, None] * Z1
    # one pass over the rows for the blocks indexed by term 1's level (a scatter's cost is per row)
    S1 = jax.ops.segment_sum(jnp.concatenate([(wZ1[:, :, None] * Z1[:, None, :]).reshape(n, q1 * q1),
                                              (T[:, :, None] * wZ1[:, None, :]).reshape(n, t * q1)], axis=1),
                             idx.code1, num_segments=l1)
    A11, BT = S1[:, : q1 * q1].reshape(l1, q1, q1), S1[:, q1 * q1 :].reshape(l1, t, q1)
    wT = w[:, None] * T
    CTT = T.T @ wT
    if m_R == 0:
        dt = Z1.dtype
        return _barrier(CrossProducts(A11, jnp.zeros((0, q1), dt), BT, jnp.zeros((0, 0), dt),
                                      jnp.zeros((0, t), dt), CTT))
    BR = jnp.zeros((layout.n_entries, q1), Z1.dtype).at[idx.ent].add(ZR[:, :, None] * wZ1[:, None, :])
    wZR = w[:, None] * ZR
    if ZR.shape[1] == 1:  # one scalar R column per row: C_RR is diagonal, and C_RR, C_RT share one pass
        SR = jax.ops.segment_sum(jnp.concatenate([wZR * ZR, wZR * T], axis=1), idx.rpos[:, 0], num_segments=m_R)
        return _barrier(CrossProducts(A11, BR, BT, jnp.diag(SR[:, 0]), SR[:, 1:], CTT))
    CRR = jnp.zeros((m_R, m_R), Z1.dtype).at[idx.rpos[:, :, None], idx.rpos[:, None, :]].add(
        wZR[:, :, None] * ZR[:, None, :]
    )
    CRT = jnp.zeros((m_R, t), Z1.dtype).at[idx.rpos].add(wZR[:, :, None] * T[:, None, :])
    return _barrier(CrossProducts(A11, BR, BT, CRR, CRT, CTT))


def append_response(xp: CrossProducts, rows: RowData, y: jnp.ndarray, w: jnp.ndarray, idx: Index,
                    layout: Layout) -> CrossProducts:
    """The cross-products with one more tail column y, from those of [Z₁ Z_R T] (same weights w).

    Only the y-dependent blocks are formed (T′Wy, Z₁′Wy per level, Z_R′Wy, y′Wy): O(n·s).  Many outcomes
    with the same rows and weights share ``xp``; under ``vmap`` over y, ``xp`` is computed once.
    """
    Z1, ZR, T = rows
    wy = w * y
    BTy = jax.ops.segment_sum(wy[:, None] * Z1, idx.code1, num_segments=layout.l1)
    BT = jnp.concatenate([xp.BT, BTy[:, None, :]], axis=1)
    Tty = T.T @ wy
    CTT = jnp.block([[xp.CTT, Tty[:, None]], [Tty[None, :], jnp.vdot(y, wy)[None, None]]])
    if layout.m_R == 0:
        CRT = jnp.zeros((0, xp.CRT.shape[1] + 1), Z1.dtype)
    else:
        CRTy = jnp.zeros((layout.m_R,), Z1.dtype).at[idx.rpos].add(ZR * wy[:, None])
        CRT = jnp.concatenate([xp.CRT, CRTy[:, None]], axis=1)
    return _barrier(CrossProducts(xp.A11, xp.BR, BT, xp.CRR, CRT, CTT))


def _barrier(xp: CrossProducts) -> CrossProducts:
    """Stop XLA fusing the row scatters into their consumers (fused, the CPU backend recomputes them:
    10x slower at 10⁵ rows)."""
    return CrossProducts(*jax.lax.optimization_barrier(tuple(xp)))
