"""Built-in data: sleepstudy and the treatment-centres simulator."""
import numpy as np
import pandas as pd
import pytest

import jaxmix
from jaxmix import datasets
from jaxmix.datasets import CENTRE_LINES, simulate_centres

SD = 2.0


def test_registry():
    assert {"sleepstudy", "centres"} <= set(datasets.list_datasets())
    assert datasets.list_datasets() == sorted(datasets.list_datasets())
    for name in datasets.list_datasets():
        assert datasets.describe(name)
    with pytest.raises(jaxmix.JaxmixError, match="unknown built-in dataset 'nope'"):
        datasets.load("nope")


def test_sleepstudy():
    d = datasets.sleepstudy()
    assert d.shape == (180, 3)
    assert list(d.columns) == ["Reaction", "Days", "Subject"]
    assert d["Subject"].nunique() == 18
    pd.testing.assert_frame_equal(d, datasets.load("sleepstudy"))


def test_centres_shape_and_columns():
    d = simulate_centres()
    assert list(d.columns) == ["subject", "centre", "use", "return"]
    assert len(d) == 40
    assert d["subject"].tolist() == list(range(1, 41))
    assert d.groupby("centre").size().to_dict() == {"C1": 10, "C2": 10, "C3": 10, "C4": 10}
    assert d["use"].between(0, 15).all()
    assert np.isfinite(d["return"]).all()
    assert len(simulate_centres(n_per_centre=3)) == 12
    with pytest.raises(jaxmix.JaxmixError, match="n_per_centre"):
        simulate_centres(n_per_centre=0)


def test_centres_deterministic_by_seed():
    a, b = simulate_centres(seed=3), simulate_centres(seed=3)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, datasets.load("centres", seed=3))
    pd.testing.assert_frame_equal(simulate_centres(), datasets.load("centres"))
    assert not np.allclose(simulate_centres(seed=0)["return"], simulate_centres(seed=1)["return"])


def _ols(d):
    X = np.column_stack([np.ones(len(d)), d["use"].to_numpy()])
    y = d["return"].to_numpy()
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    se = SD * np.sqrt(np.diag(np.linalg.inv(X.T @ X)))  # exact SEs for the known residual SD 2
    return beta, se, y - X @ beta


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_centre_lines_recovered(seed):
    """Per-centre OLS recovers each line within 4 standard errors (SEs from SD 2 and the design)."""
    d = simulate_centres(n_per_centre=10, seed=seed)
    for centre, (a, b) in CENTRE_LINES.items():
        beta, se, _ = _ols(d[d["centre"] == centre])
        assert abs(beta[0] - a) < 4 * se[0], (centre, beta, se)
        assert abs(beta[1] - b) < 4 * se[1], (centre, beta, se)


def test_centre_lines_and_sd_large_sample():
    d = simulate_centres(n_per_centre=2000, seed=7)
    resid = []
    for centre, (a, b) in CENTRE_LINES.items():
        beta, se, r = _ols(d[d["centre"] == centre])
        assert se[0] < 0.2 and se[1] < 0.02
        np.testing.assert_allclose(beta, [a, b], atol=4 * se.max())
        resid.append(r)
    resid = np.concatenate(resid)
    s = np.sqrt(resid @ resid / (len(resid) - 8))
    assert abs(s - SD) < 0.05  # SD of s is about 2 / sqrt(2 * 7992) = 0.016
