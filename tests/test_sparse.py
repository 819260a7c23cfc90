"""jaxmix.core.sparse: Z and Λ in lme4's layout against a term-by-term construction."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from jaxmix.core.sparse import sparse_lambda, sparse_z
from jaxmix.spec.covariance import lambdas_np, theta_layout


def test_z_and_lambda_match_their_blocks():
    rng = np.random.default_rng(4)
    n, nlev = 40, [5, 3]
    codes = [rng.integers(0, lk, n) for lk in nlev]
    Zs = [np.column_stack([np.ones(n), rng.normal(size=n)]), np.ones((n, 1))]
    Z, offs = sparse_z(codes, nlev, Zs, n)
    assert offs == [0, 10] and Z.shape == (n, 13)
    dense = np.zeros((n, 13))
    for i in range(n):
        dense[i, codes[0][i] * 2 : codes[0][i] * 2 + 2] = Zs[0][i]
        dense[i, 10 + codes[1][i]] = 1.0
    np.testing.assert_array_equal(Z.toarray(), dense)
    tl = theta_layout((2, 1))
    theta = np.array([1.2, -0.4, 0.0, 0.7])
    Lam = sparse_lambda(theta, tl, nlev)
    ref = sp.block_diag([sp.kron(sp.identity(lk), lam) for lam, lk in zip(lambdas_np(theta, tl), nlev)]).toarray()
    np.testing.assert_array_equal(Lam.toarray(), ref)
    assert Lam.nnz == 5 * 3 + 3  # every θ position stored, the 0 too
    assert sparse_z([], [], [], n)[0].shape == (n, 0)
