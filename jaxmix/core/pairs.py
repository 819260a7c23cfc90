"""Blocked cross-products of symmetric sums over pairs of rows, in :func:`jaxmix.core.structure.padded_system`'s
layout.

For rows r = [Z₁ Z_R T] and pairs (aₚ, bₚ) with weights cₚ this forms the blocks (A11, BR, BT, CRR, CRT,
CTT) of

    P = Σₚ cₚ · ½ (r_{aₚ} r_{bₚ}′ + r_{bₚ} r_{aₚ}′)

(aₚ = bₚ gives the usual weighted cross-products Σ cᵢ rᵢrᵢ′).  Both rows of a pair must share their level
of term 1, so that Z₁′PZ₁ stays block diagonal and every entry of Z_R′PZ₁ is one the structure already
holds; :func:`pair_maps` recomputes the per-row positions padded_system used from its Layout.  numpy,
O(pairs · s²), formed once per fit.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .crossprod import CrossProducts, Layout
from ..errors import JaxmixError

__all__ = ["RowMaps", "pair_maps", "pair_cross_products", "sum_cross_products"]


class RowMaps(NamedTuple):
    code1: np.ndarray  # (n,) level of term 1
    rpos: np.ndarray  # (n, s_R) R row of each Z_R column
    ent: np.ndarray  # (n, s_R) entry of Z_R'Z_1 of each Z_R column
    ZR: np.ndarray  # (n, s_R) values
    Z1: np.ndarray  # (n, q1)


def pair_maps(codes: list[np.ndarray], l1: int, Zs: list[np.ndarray], layout: Layout) -> RowMaps:
    """Per-row positions in the padded blocks (the same as padded_system's: R rows at
    offset_k + level·q_k + a, entries at entry_start_k + pair·q_k + a, pairs numbered as np.unique of
    level_k·ℓ₁ + level₁)."""
    code1 = np.asarray(codes[0], dtype=np.int64)
    l1 = int(l1)  # the real levels of term 1 (padded_system's nlev[0]), not the padded ones
    rpos, ent, zr = [], [], []
    for k in range(1, len(Zs)):
        ck = np.asarray(codes[k], dtype=np.int64)
        qk = Zs[k].shape[1]
        _, pid = np.unique(ck * l1 + code1, return_inverse=True)
        for a in range(qk):
            rpos.append(layout.offsets[k - 1] + ck * qk + a)
            ent.append(layout.entry_starts[k - 1] + pid * qk + a)
            zr.append(np.asarray(Zs[k][:, a], dtype=float))
    n = code1.shape[0]
    stack = lambda cols, dt: np.stack(cols, axis=1) if cols else np.zeros((n, 0), dt)  # noqa: E731
    return RowMaps(code1, stack(rpos, np.int64), stack(ent, np.int64), stack(zr, float),
                   np.asarray(Zs[0], dtype=float))


def _acc(idx, vals, size):
    return np.bincount(idx.reshape(-1), weights=vals.reshape(-1), minlength=size)[:size]


def pair_cross_products(maps: RowMaps, T: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray,
                        layout: Layout) -> CrossProducts:
    """The blocks of Σₚ cₚ ½(r_a r_b′ + r_b r_a′) (module docstring)."""
    if np.any(maps.code1[a] != maps.code1[b]):
        raise JaxmixError("correlated residuals must lie within one level of the random term with the most "
                          "levels (group the correlation by that factor or by one nested in it)")
    L1, q1, t, m_R, E = layout.nlev[0], layout.q1, layout.t, layout.m_R, layout.n_entries
    h = 0.5 * c
    Z1a, Z1b, Ta, Tb = maps.Z1[a], maps.Z1[b], T[a], T[b]
    g = maps.code1[a]
    A11 = np.zeros((L1, q1, q1))
    for i in range(q1):
        for j in range(q1):
            A11[:, i, j] = _acc(g, h * (Z1a[:, i] * Z1b[:, j] + Z1b[:, i] * Z1a[:, j]), L1)
    BT = np.zeros((L1, t, q1))
    for s in range(t):
        for j in range(q1):
            BT[:, s, j] = _acc(g, h * (Ta[:, s] * Z1b[:, j] + Tb[:, s] * Z1a[:, j]), L1)
    CTT = (Ta * h[:, None]).T @ Tb
    CTT = CTT + CTT.T
    BR = np.zeros((E, q1))
    CRR = np.zeros(m_R * m_R)
    CRT = np.zeros((m_R, t))
    sR = maps.rpos.shape[1]
    for i in range(sR):
        ra, rb = maps.rpos[a, i], maps.rpos[b, i]
        za, zb = maps.ZR[a, i], maps.ZR[b, i]
        for j in range(q1):
            BR[:, j] += _acc(maps.ent[a, i], h * za * Z1b[:, j], E) + _acc(maps.ent[b, i], h * zb * Z1a[:, j], E)
        for j in range(sR):
            ra2, rb2 = maps.rpos[a, j], maps.rpos[b, j]
            za2, zb2 = maps.ZR[a, j], maps.ZR[b, j]
            CRR += _acc(ra * m_R + rb2, h * za * zb2, m_R * m_R) + _acc(rb * m_R + ra2, h * zb * za2, m_R * m_R)
        for s in range(t):
            CRT[:, s] += _acc(ra, h * za * Tb[:, s], m_R) + _acc(rb, h * zb * Ta[:, s], m_R)
    return CrossProducts(A11, BR, BT, CRR.reshape(m_R, m_R), CRT, CTT)


def _r_entries(maps: RowMaps, rows: np.ndarray, sid: np.ndarray, v: np.ndarray, n_super: int):
    """Per super row, its Z_R entries summed by R row: (sid, rpos, ent, value) with one entry per
    (super row, R row)."""
    sR = maps.rpos.shape[1]
    if sR == 0 or rows.size == 0:
        z = np.zeros(0, np.int64)
        return z, z, z, np.zeros(0)
    s = np.repeat(sid, sR)
    rp = maps.rpos[rows].reshape(-1)
    en = maps.ent[rows].reshape(-1)
    val = (maps.ZR[rows] * v[:, None]).reshape(-1)
    m = int(maps.rpos.max()) + 1
    key, inv = np.unique(s * m + rp, return_inverse=True)
    tot = np.bincount(inv, weights=val, minlength=key.shape[0])
    first = np.zeros(key.shape[0], np.int64)
    first[inv[::-1]] = np.arange(inv.shape[0])[::-1]
    return key // m, key % m, en[first], tot


def _join(sa: np.ndarray, sb: np.ndarray):
    """All index pairs (i, j) with sa[i] == sb[j]."""
    if sa.size == 0 or sb.size == 0:
        z = np.zeros(0, np.int64)
        return z, z
    ob = np.argsort(sb, kind="stable")
    sbs = sb[ob]
    lo = np.searchsorted(sbs, sa, "left")
    hi = np.searchsorted(sbs, sa, "right")
    cnt = hi - lo
    i = np.repeat(np.arange(sa.shape[0]), cnt)
    start = np.repeat(lo - (np.cumsum(cnt) - cnt), cnt)
    j = ob[start + np.arange(i.shape[0])]
    return i, j


def sum_cross_products(maps: RowMaps, T: np.ndarray, rows_a, sid_a, v_a, rows_b, sid_b, v_b, n_super: int,
                       layout: Layout) -> CrossProducts:
    """The blocks of Σₚ ½(Sᵃₚ Sᵇₚ′ + Sᵇₚ Sᵃₚ′) for "super rows" Sᵃₚ = Σ_{i: sid_a[i] = p} v_a[i] r_{rows_a[i]}
    (and Sᵇ likewise): the within-group sums of compound symmetry, formed without the O(m²) pairs of a
    group's rows.  All rows of one super row, and of its partner, must share their level of term 1."""
    L1, q1, t, m_R, E = layout.nlev[0], layout.q1, layout.t, layout.m_R, layout.n_entries
    code = np.full(n_super, -1, np.int64)
    for rows, sid in ((rows_a, sid_a), (rows_b, sid_b)):
        c1 = maps.code1[rows]
        if np.any((code[sid] >= 0) & (code[sid] != c1)):
            raise JaxmixError("correlated residuals must lie within one level of the random term with the most "
                              "levels (group the correlation by that factor or by one nested in it)")
        code[sid] = c1
        # rows of one super row must agree among themselves too
        chk = np.full(n_super, -1, np.int64)
        chk[sid] = c1
        if np.any(chk[sid] != c1):
            raise JaxmixError("correlated residuals must lie within one level of the random term with the most "
                              "levels (group the correlation by that factor or by one nested in it)")
    code = np.maximum(code, 0)

    def sums(rows, sid, v, M):
        return np.stack([np.bincount(sid, weights=v * M[rows, k], minlength=n_super) for k in range(M.shape[1])],
                        axis=1) if M.shape[1] else np.zeros((n_super, 0))

    Z1a, Z1b = sums(rows_a, sid_a, v_a, maps.Z1), sums(rows_b, sid_b, v_b, maps.Z1)
    Ta, Tb = sums(rows_a, sid_a, v_a, T), sums(rows_b, sid_b, v_b, T)
    half = lambda x, y: 0.5 * (x + y)  # noqa: E731
    A11 = np.zeros((L1, q1, q1))
    for i in range(q1):
        for j in range(q1):
            A11[:, i, j] = _acc(code, half(Z1a[:, i] * Z1b[:, j], Z1b[:, i] * Z1a[:, j]), L1)
    BT = np.zeros((L1, t, q1))
    for s in range(t):
        for j in range(q1):
            BT[:, s, j] = _acc(code, half(Ta[:, s] * Z1b[:, j], Tb[:, s] * Z1a[:, j]), L1)
    CTT = 0.5 * (Ta.T @ Tb + Tb.T @ Ta)
    BR = np.zeros((E, q1))
    CRR = np.zeros(m_R * m_R)
    CRT = np.zeros((m_R, t))
    ea = _r_entries(maps, rows_a, sid_a, v_a, n_super)
    eb = _r_entries(maps, rows_b, sid_b, v_b, n_super)
    for (s1, r1, e1, v1), Zo, To in ((ea, Z1b, Tb), (eb, Z1a, Ta)):
        for j in range(q1):
            BR[:, j] += _acc(e1, 0.5 * v1 * Zo[s1, j], E)
        for s in range(t):
            CRT[:, s] += _acc(r1, 0.5 * v1 * To[s1, s], m_R)
    i, j = _join(ea[0], eb[0])
    if i.size:
        prod = 0.5 * ea[3][i] * eb[3][j]
        CRR += _acc(ea[1][i] * m_R + eb[1][j], prod, m_R * m_R) + _acc(eb[1][j] * m_R + ea[1][i], prod, m_R * m_R)
    return CrossProducts(A11, BR, BT, CRR.reshape(m_R, m_R), CRT, CTT)
