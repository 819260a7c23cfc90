"""jaxmix.spec.covariance: where Λ's entries sit in θ, and the sign symmetries of Σ = ΛΛ′."""
from __future__ import annotations

import numpy as np

from jaxmix.spec.covariance import lambdas_np, theta_layout


def test_mirrors_are_the_columns_of_each_lambda_and_leave_sigma_unchanged():
    """For q = (1, 3): θ = (λ₁ | λ₁₁ λ₂₁ λ₃₁ λ₂₂ λ₃₂ λ₃₃); each column j of each Λ is (θⱼⱼ, the entries
    below it), and negating them leaves every ΛΛ′ unchanged whatever θ is (flips: only columns with
    entries below the diagonal)."""
    tl = theta_layout((1, 3))
    assert tl.mirrors() == [(0, ()), (1, (2, 3)), (4, (5,)), (6, ())]
    assert tl.flips() == [(1, (2, 3)), (4, (5,))]
    rng = np.random.default_rng(3)
    th = rng.normal(size=tl.size)
    sig = [L @ L.T for L in lambdas_np(th, tl)]
    for j, idx in tl.mirrors():
        t2 = th.copy()
        t2[[j, *idx]] *= -1.0
        lam2 = lambdas_np(t2, tl)
        assert any(not np.allclose(a, b) for a, b in zip(lam2, lambdas_np(th, tl)))
        for S, L in zip(sig, lam2):
            np.testing.assert_allclose(L @ L.T, S, rtol=1e-14, atol=1e-14)
