"""Kenward-Roger timing: the Woodbury computation (jaxmix.inference.kr_structured) on mlmRev's Exam model
(4,059 rows, 65 schools, random intercept and slope) and, on a 2,000-row subset, against the dense
n x n computation it replaces (inference.kr_pieces_dense).  pbkrtest's time comes from
tests/data/kr_exam.json (tests/data/export_kr_exam.R).

Usage: python benchmarks/bench_kr.py
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pandas as pd

import jaxmix
from jaxmix.inference import wald as inference
DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
FORMULA = "normexam ~ standLRT + sex + schgend + (standLRT | school)"


def timed(fn, reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    exam = pd.read_csv(DATA / "Exam.csv")
    res = jaxmix.fit(FORMULA, exam)
    fresh = lambda r: dataclasses.replace(r, extra={})  # noqa: E731  (no cached KR pieces)
    t_full = timed(lambda: fresh(res).coef_table(ddf="kenward-roger"))
    sub = jaxmix.fit(FORMULA, exam.iloc[:2000])
    from jaxmix.inference.kr_structured import kr_pieces

    t_sub = timed(lambda: kr_pieces(sub))
    t_dense = timed(lambda: inference.kr_pieces_dense(sub), reps=1)
    pbk = json.loads((DATA / "kr_exam.json").read_text())["pbkrtest_seconds"]
    print(f"Exam (4,059 rows): coef_table(ddf='kenward-roger') {t_full:.2f} s (pbkrtest vcovAdj here: {pbk:.2f} s)")
    print(f"2,000-row subset: KR pieces Woodbury {t_sub:.3f} s, dense n x n {t_dense:.2f} s")


if __name__ == "__main__":
    main()
