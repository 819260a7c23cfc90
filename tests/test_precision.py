"""float32 is an explicit opt-in: it runs, converges and agrees with float64 to single precision."""
import numpy as np
import pytest

import jaxmix


def test_float32_opt_in_close_to_float64():
    d = jaxmix.datasets.sleepstudy()
    r64 = jaxmix.fit("Reaction ~ Days + (Days | Subject)", d)
    r32 = jaxmix.fit("Reaction ~ Days + (Days | Subject)", d, dtype="float32")
    assert r32.converged
    np.testing.assert_allclose(r32.beta, r64.beta, rtol=1e-4)
    np.testing.assert_allclose(r32.se, r64.se, rtol=5e-3)
    assert r32.objective == pytest.approx(r64.objective, rel=5e-5)  # single-precision sums over 180 rows


def test_unknown_dtype_is_an_error():
    with pytest.raises(jaxmix.JaxmixError, match="dtype"):
        jaxmix.fit("Reaction ~ Days + (1 | Subject)", jaxmix.datasets.sleepstudy(), dtype="float16")


def test_float32_sweep_stops_at_the_objectives_precision():
    """In float32 the line search can only shorten steps inside the rounding noise near the optimum:
    the optimiser stops there instead of spending its whole budget (it once took up to 2,000
    evaluations per outcome); each outcome agrees with its float64 fit to single precision."""
    import warnings

    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(50), 20)
    x = np.tile(np.arange(20) % 10, 50).astype(float)
    b = rng.multivariate_normal([0, 0], [[600, 10], [10, 35]], size=(12, 50))
    Y = 250 + 10 * x[:, None] + b[:, g, 0].T + b[:, g, 1].T * x[:, None] + rng.normal(0, 25, (1000, 12))
    import pandas as pd

    d = pd.DataFrame({"g": [f"g{i}" for i in g], "x": x})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s32 = jaxmix.fit_many("~ x + (x | g)", d, Y=Y, dtype="float32")
        s64 = jaxmix.fit_many("~ x + (x | g)", d, Y=Y)
    evals = np.array([s32[n].optim.evaluations for n in s32.names])
    assert evals.max() < 200, evals
    np.testing.assert_allclose(s32.beta, s64.beta, rtol=1e-3)
    np.testing.assert_allclose(s32.loglik_, s64.loglik_, rtol=5e-5)  # single-precision sums over 1,000 rows
