"""Blocked cross-products of [Z₁ Z_R X y]′W[Z₁ Z_R X y] in numpy, padded to size buckets.

The blocks are those of :mod:`jaxmix.core.crossprod` (A11, BR, BT, CRR, CRT, CTT), formed once in numpy
with ``np.bincount`` (O(n·s²), no compiled program per number of rows).  Every size that varies
between data sets of one model class — levels of each term, observed pairs of levels between term k
and term 1, same-level pairs of those entries — is rounded up to a bucket, so one compiled objective
serves many data sets.  Padding is exact:

* a padded level of term 1 has A11 = 0 and BT = 0, so its block Λ′0Λ + I = I factors to I (log 1 = 0)
  and it couples to nothing;
* a padded level of term k ≥ 2 has zero rows and columns in CRR and CRT, so its rows of the Schur
  complement are those of I;
* a padded entry of Z_R′Z₁ is 0, so its column of LD1 is 0; padded same-level pairs point at a padded
  entry and add 0·0 to the last element of the Schur complement.

The number of rows n and log|W| enter the criterion as traced scalars, not shapes.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse

from .crossprod import CrossProducts, Index, Layout, sorted_pairs

__all__ = ["bucket", "padded_system"]

#: smallest bucket per size: models up to 64 levels of term 1, 32 levels of each other term and 256
#: observed pairs of levels share one program per model class (padding costs next to nothing there)
MIN_LEVELS1 = 64
MIN_ROWS_R = 32
MIN_ENTRIES = 256
MIN_PAIRS = 1024
FINE = (1.0, 1.25, 1.5, 1.75)
#: above this many rows a term's block of the dense Schur complement is padded in eighths (at most
#: 12.5 % more rows, ~40 % more of its cubic cost, instead of FINE's 25 %, ~95 %): there an evaluation
#: costs tens of ms, and a program compiled for a few more sizes pays for itself within one fit
DENSE_ROWS = 512
EIGHTHS = tuple(1.0 + i / 8 for i in range(8))


def bucket(x: int, minimum: int, steps: tuple[float, ...] = (1.0, 1.5)) -> int:
    """The smallest size ≥ x of the form 2ᵏ·s (s in ``steps``), at least ``minimum``.

    Steps (1, 1.5) waste at most half of a linear-cost block; the dense Schur complement (cubic
    cost) uses (1, 1.25, 1.5, 1.75)."""
    if x <= minimum:
        return int(minimum)
    k = int(np.floor(np.log2(x)))
    for base in (2**k, 2 ** (k + 1)):
        for s in steps:
            if int(np.ceil(base * s)) >= x:
                return int(np.ceil(base * s))
    return int(2 ** (k + 1))


def _wsum(idx: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(idx, weights=values, minlength=size)[:size]


def padded_system(codes: list[np.ndarray], nlev: list[int], Zs: list[np.ndarray], T: np.ndarray,
                  w: np.ndarray, tail_cross: bool = True, row_index: bool = False,
                  min_levels1: int = MIN_LEVELS1, min_rows_r: int = MIN_ROWS_R):
    """(Layout, Index, CrossProducts) of the blocked system, every varying size padded to a bucket.

    Args:
      codes: per term (lme4 order, term 1 first), the level code of each row (n,).
      nlev: levels per term.
      Zs: per term, the term's per-row columns (n, q_k).
      T: the tail columns (n, t): X then the response.
      w: prior weights (n,).

      tail_cross: form CTT = T′WT (False: CTT is None, for callers that need only parts of it).
      min_levels1, min_rows_r: the smallest buckets of term 1's levels and of each other term's rows
        of the Schur complement (larger for GLMMs, whose cost is in the rows, not the factor).
      row_index: also return the per-row index arrays (code1, rpos, ent; unpadded rows), which the
        GLMM's per-row computations read.

    Returns numpy arrays; the Index holds only the arrays the factorization reads (the per-row index
    arrays, which depend on n, are empty).
    """
    q = [int(Z.shape[1]) for Z in Zs]
    t = int(T.shape[1])
    q1 = q[0]
    code1 = np.asarray(codes[0], dtype=np.int64)
    l1 = int(nlev[0])
    L1 = bucket(l1, min_levels1)
    Z1 = np.asarray(Zs[0], dtype=float)
    wZ1 = w[:, None] * Z1
    A11 = np.zeros((L1, q1, q1))
    for a in range(q1):
        for b in range(a, q1):
            A11[:l1, a, b] = A11[:l1, b, a] = _wsum(code1, wZ1[:, a] * Z1[:, b], l1)
    n = code1.shape[0]
    BT = np.zeros((L1, t, q1))
    for c in range(q1):  # the level sums of wZ1[:, c] * T, the weights in the sparse matrix (no n x t product)
        BT[:l1, :, c] = sparse.csr_matrix((wZ1[:, c], (code1, np.arange(n))), shape=(l1, n)) @ T
    CTT = T.T @ (w[:, None] * T) if tail_cross else None

    # terms 2..K: R rows (levels padded per term) and the entries of Z_R'Z_1 (pairs padded per term)
    nlev_pad, offsets, entry_starts, n_pairs = [L1], [], [], []
    e_rows, e_blks, rpos_cols, ent_cols, zr_cols = [], [], [], [], []
    off = ebase = 0
    real_pairs = []
    for k in range(1, len(Zs)):
        ck = np.asarray(codes[k], dtype=np.int64)
        qk, lk = q[k], int(nlev[k])
        # the dense Schur complement costs m³: fine buckets for the levels of terms 2..K
        Lk = bucket(lk, max(1, min_rows_r // qk), EIGHTHS if lk * qk >= DENSE_ROWS else FINE)
        key = ck * l1 + code1
        uniq, pid = np.unique(key, return_inverse=True)
        npair = int(uniq.shape[0])
        real_pairs.append(npair)
        # one spare pair at least in the last term, so that padded same-level pairs have a zero entry
        npad = bucket(npair + (k == len(Zs) - 1), max(1, MIN_ENTRIES // qk))
        offsets.append(off)
        entry_starts.append(ebase)
        nlev_pad.append(Lk)
        n_pairs.append(npad)
        lev_k, lev_1 = uniq // l1, uniq % l1
        er = np.zeros((npad, qk), dtype=np.int64)
        er[:npair] = off + lev_k[:, None] * qk + np.arange(qk)[None, :]
        er[npair:] = off  # padded entries: any valid row; their value is 0
        eb = np.zeros((npad, qk), dtype=np.int64)
        eb[:npair] = lev_1[:, None]
        e_rows.append(er.reshape(-1))
        e_blks.append(eb.reshape(-1))
        Zk = np.asarray(Zs[k], dtype=float)
        for a in range(qk):
            rpos_cols.append(off + ck * qk + a)
            ent_cols.append(ebase + pid * qk + a)
            zr_cols.append(Zk[:, a])
        off += Lk * qk
        ebase += npad * qk
    m_R = off
    E = ebase
    e_row = np.concatenate(e_rows) if e_rows else np.zeros(0, dtype=np.int64)
    e_blk = np.concatenate(e_blks) if e_blks else np.zeros(0, dtype=np.int64)
    BR = np.zeros((E, q1))
    CRR = np.zeros((m_R, m_R))
    CRT = np.zeros((m_R, t))
    for rp, en, za in zip(rpos_cols, ent_cols, zr_cols):
        wza = w * za
        for c in range(q1):
            BR[:, c] += _wsum(en, wza * Z1[:, c], E)
        for rp2, zb in zip(rpos_cols, zr_cols):
            CRR.reshape(-1)[:] += _wsum(rp * m_R + rp2, wza * zb, m_R * m_R)
        CRT += sparse.csr_matrix((np.ones(n), (rp, np.arange(n))), shape=(m_R, n)) @ (wza[:, None] * T)
    if E:
        real = np.zeros(E, dtype=bool)
        for es, npair, qk in zip(entry_starts, real_pairs, q[1:]):
            real[es : es + npair * qk] = True
        sel = np.flatnonzero(real)
        pa, pb, ptgt = sorted_pairs(e_row[sel], e_blk[sel], L1, m_R)
        sel = sel.astype(pa.dtype) if E < 2**31 - 1 else sel
        pa, pb = sel[pa], sel[pb]
        # nested in the one scalar term after it (physicians in hospitals): every real same-level pair
        # is on the diagonal and M_RR is diagonal (see :func:`jaxmix.core.linalg.chol_diag_head`)
        r_diag = bool(len(q) == 2 and q[1] == 1 and np.all(e_row[pa] == e_row[pb]))
        P = bucket(pa.shape[0], MIN_PAIRS)
        spare = E - 1  # a padded entry of the last term (value 0)
        pa = np.concatenate([pa, np.full(P - pa.shape[0], spare, pa.dtype)])
        pb = np.concatenate([pb, np.full(P - pb.shape[0], spare, pb.dtype)])
        ptgt = np.concatenate([ptgt, np.full(P - ptgt.shape[0], m_R * m_R - 1, ptgt.dtype)])
    else:
        pa = pb = ptgt = np.zeros(0, dtype=np.int64)
        r_diag = False
    layout = Layout(q=tuple(q), nlev=tuple(int(x) for x in nlev_pad), offsets=tuple(offsets), m_R=int(m_R),
                    t=t, n_entries=int(E), entry_starts=tuple(entry_starts), n_pairs=tuple(n_pairs),
                    r_diagonal=r_diag)
    if row_index:
        rpos = np.column_stack(rpos_cols) if rpos_cols else np.zeros((n, 0), dtype=np.int64)
        ent = np.column_stack(ent_cols) if ent_cols else np.zeros((n, 0), dtype=np.int64)
        idx = Index(code1=code1, rpos=rpos, ent=ent, e_row=e_row, e_blk=e_blk, pa=pa, pb=pb, ptgt=ptgt)
    else:
        empty = np.zeros(0, dtype=np.int64)
        idx = Index(code1=empty, rpos=empty.reshape(0, 0), ent=empty.reshape(0, 0), e_row=e_row, e_blk=e_blk,
                    pa=pa, pb=pb, ptgt=ptgt)
    return layout, idx, CrossProducts(A11, BR, BT, CRR, CRT, CTT)
