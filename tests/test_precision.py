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
