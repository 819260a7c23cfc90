"""Deterministic simulator of an InstEval-like crossed design (lme4's ``InstEval``).

InstEval has 73,421 ratings by 2,972 students (``s``) of 1,128 lecturers (``d``) in 14 departments
(``dept``); every lecturer belongs to one department, a student rates about 25 lecturers, mostly in a
few departments, and lecturers differ a lot in how often they are rated.  ``service`` (0/1) says whether
the lecture was a service course.  The response is simulated from lme4's REML estimates for

    y ~ service + (1 | s) + (1 | d) + (1 | dept)

    y = 3.2 + 0.1·service + b_s + b_d + b_dept + e,   SD(b_s, b_d, b_dept, e) = 0.32, 0.52, 0.08, 1.18

The design is unbalanced in the ways InstEval is: department sizes (Dirichlet), lecturer popularity
(log-normal), ratings per student (negative binomial, ≥ 1), a home department per student that takes
most of their ratings, and a per-lecturer service probability.  A student rates a lecturer at most once.

Same arguments, same data (numpy's PCG64 seeded with ``seed``), on any machine.

    python benchmarks/data.py                        # full size -> benchmarks/_work/crossed.csv
    python benchmarks/data.py --students 300 --lecturers 110 --out /tmp/small.csv
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

WORK = Path(__file__).resolve().parent / "_work"

FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
SLEEP_FORMULA = "Reaction ~ Days + (Days | Subject)"
TRUE = dict(intercept=3.2, service=0.1, sd_s=0.32, sd_d=0.52, sd_dept=0.08, sd_e=1.18)


def simulate(n_students: int = 2972, n_lecturers: int = 1128, n_dept: int = 14,
             mean_ratings: float = 24.7, seed: int = 20240611, home_share: float = 0.7) -> pd.DataFrame:
    """InstEval-like data frame with columns y, service, s, d, dept (s, d, dept as string labels).

    Args:
      n_students, n_lecturers, n_dept: numbers of levels of the three crossed factors.
      mean_ratings: mean ratings per student (rows ≈ n_students · mean_ratings).
      seed: the random seed; the output is a pure function of the arguments.
      home_share: expected share of a student's ratings in their home department.
    """
    rng = np.random.default_rng(seed)
    n_dept = min(n_dept, n_lecturers)
    # lecturers -> departments, unequal department sizes, every department non-empty
    dept_p = rng.dirichlet(np.full(n_dept, 2.0))
    lec_dept = np.concatenate([np.arange(n_dept), rng.choice(n_dept, n_lecturers - n_dept, p=dept_p)])
    lec_dept = rng.permutation(lec_dept)
    popularity = rng.lognormal(0.0, 1.0, n_lecturers)
    # students: home department (by department size), number of ratings
    dept_size = np.bincount(lec_dept, minlength=n_dept).astype(float)
    home = rng.choice(n_dept, n_students, p=dept_size / dept_size.sum())
    k = 4.0  # negative binomial shape: CV about 0.5, as InstEval's ratings per student
    n_rat = 1 + rng.negative_binomial(k, k / (k + mean_ratings - 1.0), n_students)
    n_rat = np.minimum(n_rat, n_lecturers)
    # weighted sampling without replacement (Gumbel top-k), student by student in chunks
    logw = np.log(popularity)
    # boost B per home department so that B·f / (B·f + 1 − f) = home_share, f = its popularity share
    f_dept = np.bincount(lec_dept, weights=popularity, minlength=n_dept) / popularity.sum()
    log_boost = np.log(home_share * (1 - f_dept) / ((1 - home_share) * f_dept))
    s_idx, d_idx = [], []
    chunk = 512
    for a in range(0, n_students, chunk):
        b = min(a + chunk, n_students)
        boost = np.where(lec_dept[None, :] == home[a:b, None], log_boost[home[a:b], None], 0.0)
        keys = logw[None, :] + boost + rng.gumbel(size=(b - a, n_lecturers))
        order = np.argsort(-keys, axis=1, kind="stable")
        for i in range(b - a):
            m = n_rat[a + i]
            s_idx.append(np.full(m, a + i))
            d_idx.append(np.sort(order[i, :m]))
    s_idx = np.concatenate(s_idx)
    d_idx = np.concatenate(d_idx)
    n = s_idx.shape[0]
    dept_idx = lec_dept[d_idx]
    p_service = rng.beta(0.8, 1.0, n_lecturers)  # InstEval: about 43% service ratings
    service = (rng.random(n) < p_service[d_idx]).astype(np.int64)
    b_s = rng.normal(0, TRUE["sd_s"], n_students)
    b_d = rng.normal(0, TRUE["sd_d"], n_lecturers)
    b_dept = rng.normal(0, TRUE["sd_dept"], n_dept)
    y = (TRUE["intercept"] + TRUE["service"] * service + b_s[s_idx] + b_d[d_idx] + b_dept[dept_idx]
         + rng.normal(0, TRUE["sd_e"], n))
    width_s, width_d = len(str(n_students)), len(str(n_lecturers))
    return pd.DataFrame({
        "y": np.round(y, 6),
        "service": service,
        "s": np.char.add("s", np.char.zfill(s_idx.astype(str), width_s)),
        "d": np.char.add("d", np.char.zfill(d_idx.astype(str), width_d)),
        "dept": np.char.add("dept", np.char.zfill(dept_idx.astype(str), 2)),
    })


def describe(df: pd.DataFrame) -> dict:
    per_s = df.groupby("s").size()
    per_d = df.groupby("d").size()
    return dict(rows=len(df), s=df.s.nunique(), d=df.d.nunique(), dept=df.dept.nunique(),
                ratings_per_student_mean=float(per_s.mean()), ratings_per_student_max=int(per_s.max()),
                ratings_per_lecturer_median=float(per_d.median()), ratings_per_lecturer_max=int(per_d.max()),
                service_share=float(df.service.mean()),
                lecturers_in_one_dept=bool((df.groupby("d").dept.nunique() == 1).all()))


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)  # rounded y: R and Python read the same decimal numbers
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=2972)
    ap.add_argument("--lecturers", type=int, default=1128)
    ap.add_argument("--depts", type=int, default=14)
    ap.add_argument("--mean-ratings", type=float, default=24.7)
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--out", default=str(WORK / "crossed.csv"))
    a = ap.parse_args(argv)
    df = simulate(a.students, a.lecturers, a.depts, a.mean_ratings, a.seed)
    path = write_csv(df, a.out)
    print(path, describe(df))


if __name__ == "__main__":
    main()
