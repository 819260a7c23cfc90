"""The AMI simulator and the main job ``jaxmix run configs/ami.toml`` (at a small simulated size).

The CLI run fits the same nine-endpoint sweep as tests/test_sweep.py's GLMM test (same size and
seed), so within one pytest session the batched program compiles once.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxmix
from jaxmix.cli import main as cli
from jaxmix.compare import COMPARISON_COLUMNS, MARGINAL_COLUMNS, plot_comparison
from jaxmix.cli.config import ConfigError, load_config, parse_config
from jaxmix.datasets import AMI_ENDPOINTS, AMI_FORMULA, simulate_ami

REPO = Path(__file__).resolve().parents[1]
AMI = REPO / "configs" / "ami.toml"
SMALL = 3000  # = tests/test_sweep.py's AMI_N


def test_simulator_is_deterministic_and_nested():
    a, b = simulate_ami(2000, seed=5), simulate_ami(2000, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert not simulate_ami(2000, seed=6)[list(AMI_ENDPOINTS)].equals(a[list(AMI_ENDPOINTS)])
    assert a.groupby("physician")["hospital"].nunique().max() == 1  # physicians nested in hospitals
    for col in ["teaching", "rural"]:
        assert a.groupby("hospital")[col].nunique().max() == 1
    for col in ["cardiologist", "volume"]:
        assert a.groupby("physician")[col].nunique().max() == 1
    assert set(AMI_ENDPOINTS) <= set(a.columns)
    assert {"age", "age10", "female", "diabetes", "shock"} <= set(a.columns)


def test_simulator_default_size_and_missingness():
    d = simulate_ami(seed=0)
    assert len(d) == 100_000 and d["physician"].nunique() == 2000 and 150 <= d["hospital"].nunique() <= 190
    miss = d[list(AMI_ENDPOINTS)].isna().mean()
    assert miss["death30"] == 0 and miss["death1y"] == 0
    others = miss.drop(["death30", "death1y"])
    assert ((others > 0.01) & (others < 0.08)).all()
    prev = d[list(AMI_ENDPOINTS)].mean()
    assert 0.05 < prev["death30"] < 0.25 and prev["aspirin"] > 0.7
    vals = d[list(AMI_ENDPOINTS)].to_numpy()
    assert np.isin(vals[~np.isnan(vals)], [0.0, 1.0]).all()
    with pytest.raises(jaxmix.JaxmixError, match="n_patients >= n_physicians"):
        simulate_ami(10, n_physicians=20)


@pytest.fixture(scope="module")
def ami_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ami")
    text = AMI.read_text()
    assert "n_patients = " in text
    start = text.index("n_patients = ") + len("n_patients = ")
    end = text.index(",", start)
    small = tmp / "ami_small.toml"
    small.write_text(text[:start] + str(SMALL) + text[end:])
    out = tmp / "out"
    rc = cli.main(["run", str(small), "--out", str(out), "--quiet"])
    return rc, out


def test_main_job_writes_the_comparison(ami_run):
    rc, out = ami_run
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["summary.txt", "fixed.csv", "varcorr.csv", "fit.json", "fixed_single_level.csv",
                            "comparison.csv", "report.txt", "comparison.png", ".jaxmix-run.json"])
    comp = pd.read_csv(out / "comparison.csv")
    assert list(comp.columns) == COMPARISON_COLUMNS + MARGINAL_COLUMNS  # [sweep] gee = true by default
    assert sorted(set(comp["term"])) == ["cardiologist", "rural", "teaching", "volume"]  # auto-detected levels
    assert set(comp["level"]) == {"physician", "hospital"} and len(comp) == 9 * 4
    assert (comp["differs"] == (comp["p_multilevel"] < 0.05) ^ (comp["p_single"] < 0.05)).all()
    rec = json.loads((out / "fit.json").read_text())
    assert rec["kind"] == "sweep" and len(rec["multilevel"]["outcomes"]) == 9
    assert rec["comparison"]["share_differ"] == pytest.approx(comp["differs"].mean())
    report = (out / "report.txt").read_text()
    assert "Conclusions at the 0.05 level that differ" in report and "hospital-level covariates" in report
    assert "exchangeable working correlation within hospital" in report and "marginal/multilevel" in report
    assert (comp["differs_marginal"] == (comp["p_multilevel"] < 0.05) ^ (comp["p_marginal"] < 0.05)).all()
    assert rec["marginal"]["groups"] == "hospital" and len(rec["marginal"]["outcomes"]) == 9
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_main_job_numbers_are_fit_many_numbers(ami_run):
    _, out = ami_run
    d = simulate_ami(SMALL, seed=1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sw = jaxmix.fit_many(AMI_FORMULA, d, outcomes=list(AMI_ENDPOINTS), family="binomial")
        single = jaxmix.fit_many(AMI_FORMULA.split(" + (")[0], d, outcomes=list(AMI_ENDPOINTS), family="binomial")
    fixed = pd.read_csv(out / "fixed.csv")
    np.testing.assert_allclose(fixed["estimate"], sw.to_frame()["estimate"], rtol=1e-9)
    comp = pd.read_csv(out / "comparison.csv").set_index(["outcome", "term"])
    tidy = single.to_frame().set_index(["outcome", "term"]).loc[comp.index]
    np.testing.assert_allclose(comp["se_single"], tidy["se"], rtol=1e-9)
    one = jaxmix.fit("death30 " + AMI_FORMULA.split(" + (")[0], d, family="binomial")  # GLM
    np.testing.assert_allclose(single.se.loc["death30"], one.se, rtol=1e-9)


def test_main_job_marginal_column_is_statsmodels_gee(ami_run):
    """The marginal column: statsmodels' GEE (exchangeable within hospitals) on each outcome's rows."""
    sm = pytest.importorskip("statsmodels.api")
    import warnings

    _, out = ami_run
    d = simulate_ami(SMALL, seed=1)
    comp = pd.read_csv(out / "comparison.csv").set_index(["outcome", "term"])
    rhs = AMI_FORMULA.split(" + (")[0].lstrip("~ ")
    for y in ("death30", "reinfarction"):  # reinfarction has missing rows
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = sm.GEE.from_formula(f"{y} ~ {rhs}", groups="hospital", data=d.dropna(subset=[y]),
                                      family=sm.families.Binomial(), cov_struct=sm.cov_struct.Exchangeable()).fit()
        sub = comp.loc[y]
        np.testing.assert_allclose(sub["estimate_marginal"], ref.params[sub.index], rtol=1e-6)
        np.testing.assert_allclose(sub["se_marginal"], ref.bse[sub.index], rtol=1e-6)
        np.testing.assert_allclose(sub["p_marginal"], ref.pvalues[sub.index], rtol=1e-6)


def test_validate_and_plot_without_matplotlib(capsys, tmp_path, monkeypatch):
    assert cli.main(["validate", str(AMI)]) == 0
    line = capsys.readouterr().out
    assert line.startswith("ok:") and "over 9 outcomes" in line
    table = pd.DataFrame({"outcome": ["a", "b"], "term": ["t", "t"], "level": ["hospital"] * 2,
                          "estimate_multilevel": [0.1, 0.2], "se_multilevel": [0.1, 0.1], "p_multilevel": [0.3, 0.04],
                          "estimate_single": [0.1, 0.2], "se_single": [0.05, 0.05], "p_single": [0.04, 0.0001],
                          "significant_multilevel": [False, True], "significant_single": [True, True],
                          "differs": [True, False], "se_ratio": [0.5, 0.5]})
    assert plot_comparison(table, tmp_path / "x.png") is True
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if not installed
    assert plot_comparison(table, tmp_path / "y.png") is False and not (tmp_path / "y.png").exists()


SWEEP = {"formula": "~ x + (1 | g)", "outcomes": ["a", "b"]}


@pytest.mark.parametrize("sweep, pattern", [
    ({**SWEEP, "formula": "y ~ x"}, r"\[sweep\] formula must not name a response"),
    ({**SWEEP, "outcomes": []}, r"\[sweep\] outcomes is empty"),
    ({**SWEEP, "outcomes": ["a", "a"]}, r"lists 'a' twice"),
    ({**SWEEP, "outcome": ["a"]}, r"unknown key 'outcome' in \[sweep\]; did you mean 'outcomes'"),
    ({**SWEEP, "family": "binomal"}, r"did you mean 'binomial'"),
    ({**SWEEP, "alpha": 1.5}, r"alpha must be between 0 and 1"),
    ({**SWEEP, "gee_corstr": "exchangable"}, r"did you mean 'exchangeable'"),
    ({"formula": "~ x"}, r"\[sweep\] is missing the required key 'outcomes'"),
])
def test_sweep_config_errors(sweep, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_config({"data": {"builtin": "ami"}, "sweep": sweep})


def test_sweep_config_parses():
    c = load_config(AMI)
    assert c.model is None and c.sweep.family == "binomial" and len(c.sweep.outcomes) == 9
    assert c.sweep.compare_single_level and c.data.builtin == "ami" and not c.devices.distributed
    assert c.sweep.gee and c.sweep.gee_corstr == "exchangeable" and c.sweep.gee_groups is None
    with pytest.raises(ConfigError, match="either a \\[model\\] or a \\[sweep\\]"):
        parse_config({"data": {"builtin": "ami"}, "sweep": SWEEP, "model": {"formula": "y ~ x"}})
    assert c.to_dict()["sweep"]["outcomes"][0] == "death30"


def test_background_import_loads_what_exists_and_leaves_a_missing_module_to_its_user(monkeypatch):
    """The main job imports the picture's matplotlib on a thread during the GEE: a module that exists is
    imported, and one that fails raises nothing on the thread (plot_comparison reports it)."""
    import threading

    from jaxmix.cli.sweep_job import _import_in_background

    raised = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))
    monkeypatch.delitem(sys.modules, "json.tool", raising=False)
    _import_in_background("json.tool", "jaxmix_no_such_module", "csv").join(timeout=60)
    assert "json.tool" in sys.modules and raised == []
