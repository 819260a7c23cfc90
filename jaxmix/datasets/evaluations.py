"""Simulated course evaluations with crossed students and lecturers (like lme4's InstEval)."""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["simulate_evaluations", "EVALUATIONS_TRUTH"]

#: Latent-score parameters: mean, service effect, and the SDs of students, lecturers, departments and
#: the residual (close to lme4's REML fit of InstEval: 0.32, 0.51, 0.11, 1.18).
EVALUATIONS_TRUTH: dict[str, float] = {"mean": 3.25, "service": -0.07, "sd_student": 0.32,
                                       "sd_lecturer": 0.51, "sd_dept": 0.11, "sd_residual": 1.18}


def _counts(n_items: int, total: int, rng, spread: float) -> np.ndarray:
    """How many rows each item gets: at least one, the rest by gamma-distributed activity, summing to total."""
    act = rng.gamma(1.0 / spread**2, spread**2, size=n_items)
    extra = rng.multinomial(total - n_items, act / act.sum())
    return 1 + extra


def simulate_evaluations(n_students: int = 3000, n_lecturers: int = 1100, n_departments: int = 14,
                         n_ratings: int = 73000, seed: int = 0) -> pd.DataFrame:
    """Students rating lecturers (1-5), lecturers nested in departments: a large crossed design.

    Like lme4's InstEval (73,421 ratings by 2,972 students of 1,128 lecturers in 14 departments).  Each
    lecturer belongs to one department (``dept``); each student has a home department and rates its
    lecturers three times in four, other departments' otherwise, so students and lecturers are
    partially crossed.  ``service`` (0/1) marks a lecture held for another department's students (more
    common for some lecturers).  The rating is the latent score
    ``3.25 - 0.07 service + u_s + v_d + w_dept + e`` (SDs 0.32, 0.51, 0.11, 1.18; see
    :data:`EVALUATIONS_TRUTH`) rounded and clipped to 1..5, as in ``y ~ service + (1|s) + (1|d) +
    (1|dept)``.  Every student and lecturer has at least one rating.

    Columns: ``s`` (student, ``"S0001"`` ...), ``d`` (lecturer, ``"L0001"`` ...), ``dept``
    (``"D01"`` ...), ``service``, ``y``.  The same arguments always give the same table.
    """
    from ..errors import JaxmixError

    ns, nl, nd, n = int(n_students), int(n_lecturers), int(n_departments), int(n_ratings)
    if nd < 1 or nl < nd or ns < 1:
        raise JaxmixError(f"need 1 <= n_departments <= n_lecturers and n_students >= 1; got {n_departments!r}, "
                          f"{n_lecturers!r}, {n_students!r}")
    if n < max(ns, nl):
        raise JaxmixError(f"n_ratings ({n_ratings!r}) must be at least the number of students and of lecturers")
    t = EVALUATIONS_TRUTH
    rng = np.random.default_rng(seed)
    # lecturers in departments: every department has one, the rest by uneven department sizes
    lect_dept = np.concatenate([np.arange(nd), rng.choice(nd, size=nl - nd, p=rng.dirichlet(np.full(nd, 3.0)))])
    lect_dept = rng.permutation(lect_dept)
    home = rng.integers(0, nd, size=ns)
    # rows per student and per lecturer, then each student's rows go to lecturers
    s_idx = np.repeat(np.arange(ns), _counts(ns, n, rng, 0.6))
    rng.shuffle(s_idx)
    l_weight = _counts(nl, n, rng, 0.8).astype(float)
    by_dept = [np.flatnonzero(lect_dept == k) for k in range(nd)]
    own = rng.random(n) < 0.75
    d_idx = rng.choice(nl, size=n, p=l_weight / l_weight.sum())
    for k in range(nd):
        rows = np.flatnonzero(own & (home[s_idx] == k))
        lk = by_dept[k]
        d_idx[rows] = rng.choice(lk, size=rows.size, p=l_weight[lk] / l_weight[lk].sum())
    # every lecturer rated at least once: give the unrated ones a row of a random student
    counts = np.bincount(d_idx, minlength=nl)
    for lec in np.flatnonzero(counts == 0):
        row = rng.choice(np.flatnonzero(counts[d_idx] > 1))
        counts[d_idx[row]] -= 1
        d_idx[row], counts[lec] = lec, 1
    service_rate = rng.beta(0.6, 1.2, size=nl)
    service = (rng.random(n) < service_rate[d_idx]).astype(int)
    u = rng.normal(0.0, t["sd_student"], size=ns)
    v = rng.normal(0.0, t["sd_lecturer"], size=nl)
    w = rng.normal(0.0, t["sd_dept"], size=nd)
    latent = (t["mean"] + t["service"] * service + u[s_idx] + v[d_idx] + w[lect_dept[d_idx]]
              + rng.normal(0.0, t["sd_residual"], size=n))
    y = np.clip(np.rint(latent), 1, 5).astype(int)
    order = np.lexsort((d_idx, s_idx))
    s_names = np.array([f"S{i + 1:0{max(4, len(str(ns)))}d}" for i in range(ns)])
    l_names = np.array([f"L{i + 1:0{max(4, len(str(nl)))}d}" for i in range(nl)])
    d_names = np.array([f"D{i + 1:0{max(2, len(str(nd)))}d}" for i in range(nd)])
    return pd.DataFrame({"s": s_names[s_idx[order]], "d": l_names[d_idx[order]],
                         "dept": d_names[lect_dept[d_idx[order]]], "service": service[order],
                         "y": y[order]})
