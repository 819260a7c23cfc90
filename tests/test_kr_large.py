"""Kenward-Roger beyond 3,000 rows through the Woodbury identity (jaxmix.inference.kr_structured), pinned to
pbkrtest on mlmRev's Exam data, 4,059 rows (tests/data/export_kr_exam.R -> kr_exam.json, Exam.csv)."""
import json

import numpy as np
import pytest

import jaxmix
from jaxmix.inference import wald as inference
from jaxmix.inference.kr_structured import kr_pieces
from conftest import DATA_DIR, load_csv

REF = json.load(open(DATA_DIR / "kr_exam.json"))


@pytest.fixture(scope="module")
def exam():
    return jaxmix.fit("normexam ~ standLRT + sex + schgend + (standLRT | school)", load_csv("Exam.csv"))


def test_exam_matches_pbkrtest(exam):
    assert exam.nobs == 4059 > inference.KR_MAX_ROWS
    np.testing.assert_allclose(exam.theta, REF["theta"], rtol=1e-4)
    ct = exam.coef_table(ddf="kenward-roger")
    np.testing.assert_allclose(ct["se"], REF["se_kr"], rtol=1e-4)  # pbkrtest's adjusted SEs (vcovAdj)
    np.testing.assert_allclose(ct["df"], REF["df_kr"], rtol=1e-4)  # Lb_ddf
    PhiA = inference.kenward_roger_parts(exam)[0]
    np.testing.assert_allclose(PhiA, np.asarray(REF["vcov_kr"]), rtol=2e-4, atol=1e-9)
    wt = exam.wald_test("schgend[T.girls] = 0, schgend[T.mixed] = 0", ddf="kenward-roger")
    assert wt.statistic == pytest.approx(REF["F_schgend"], rel=1e-4)
    assert wt.den_df == pytest.approx(REF["ddf_schgend"], rel=1e-4)
    assert wt.p == pytest.approx(REF["p_schgend"], rel=1e-3)


@pytest.mark.parametrize("formula,data", [("Reaction ~ Days + (Days | Subject)", "sleepstudy.csv"),
                                          ("score ~ Machine + (1 | Worker/Machine)", "Machines.csv")])
def test_woodbury_pieces_equal_the_dense_computation(formula, data):
    """Two independent computations of pbkrtest's P, Q, I and Φ (dense n x n Σ⁻¹ vs Woodbury)."""
    m = jaxmix.fit(formula, load_csv(data))
    P, Q, IE, Phi = kr_pieces(m)
    P2, Q2, IE2, Phi2 = inference.kr_pieces_dense(m)
    np.testing.assert_allclose(IE, IE2, rtol=1e-9, atol=1e-12 * np.abs(IE2).max())
    np.testing.assert_allclose(Phi, Phi2, rtol=1e-9)
    for a, b in zip(P, P2):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12 * np.abs(b).max())
    for r in range(len(P)):
        for s in range(len(P)):
            np.testing.assert_allclose(Q[r][s], Q2[r][s], rtol=1e-8, atol=1e-12 * max(np.abs(Q2[r][s]).max(), 1e-300))


def test_refused_only_when_both_limits_are_exceeded(monkeypatch):
    m = jaxmix.fit("Reaction ~ Days + (Days | Subject)", load_csv("sleepstudy.csv"))  # 180 rows, m = 36
    monkeypatch.setattr(inference, "KR_MAX_ROWS", 100)
    inference.check_ddf_size("kenward-roger", m.design)  # structured: fine
    monkeypatch.setattr(inference, "KR_MAX_RE_COLUMNS", 10)
    with pytest.raises(jaxmix.JaxmixError, match="36 x 36 .* limited to 10 random-effect columns .*satterthwaite"):
        inference.check_ddf_size("kenward-roger", m.design)


def test_dense_fallback_beyond_the_column_limit_gives_the_same_table(monkeypatch):
    """More random-effect columns than KR_MAX_RE_COLUMNS but few rows: the dense n x n path, same numbers."""
    import dataclasses

    m = jaxmix.fit("Reaction ~ Days + (Days | Subject)", load_csv("sleepstudy.csv"))
    woodbury = m.coef_table(ddf="kenward-roger")
    monkeypatch.setattr(inference, "KR_MAX_RE_COLUMNS", 10)
    dense = dataclasses.replace(m, extra={}).coef_table(ddf="kenward-roger")
    np.testing.assert_allclose(dense[["se", "df"]].to_numpy(), woodbury[["se", "df"]].to_numpy(), rtol=1e-9)
