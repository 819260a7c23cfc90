"""jaxmix.core.newton: the bounded host optimiser on functions with known minima."""
from __future__ import annotations

import numpy as np

from jaxmix.core.newton import fd_hessian, minimize_bounded


def _quadratic(A, b):
    def vg(x):
        return 0.5 * x @ A @ x - b @ x, A @ x - b
    return vg


def test_interior_minimum_of_a_badly_scaled_quadratic():
    A = np.diag([1e4, 1.0, 1e-4])
    b = np.array([1e4, 2.0, 3e-4])  # minimum at (1, 2, 3)
    r = minimize_bounded(_quadratic(A, b), np.zeros(3), np.full(3, -np.inf))
    assert r.status == 0
    np.testing.assert_allclose(r.x, [1.0, 2.0, 3.0], rtol=1e-6)


def test_minimum_on_the_bound_is_held_there():
    A = np.eye(2)
    b = np.array([-1.0, 1.0])  # unconstrained minimum (-1, 1); with x0 >= 0: (0, 1)
    r = minimize_bounded(_quadratic(A, b), np.ones(2), np.array([0.0, -np.inf]))
    assert r.status == 0
    assert r.x[0] == 0.0 and r.on_boundary[0] and not r.on_boundary[1]
    np.testing.assert_allclose(r.x[1], 1.0, rtol=1e-8)


def test_leaves_a_maximum_on_the_bound():
    """f(x) = x⁴/4 − x²/2, even in x: at the bound x = 0 the gradient is 0 but the curvature is
    negative; the minimum is x = 1 (f = −1/4)."""
    vg = lambda x: (x[0] ** 4 / 4 - x[0] ** 2 / 2, np.array([x[0] ** 3 - x[0]]))  # noqa: E731
    r = minimize_bounded(vg, np.array([0.0]), np.array([0.0]))
    assert r.status == 0
    np.testing.assert_allclose(r.x, [1.0], rtol=1e-8)
    np.testing.assert_allclose(r.fun, -0.25, rtol=1e-12)


def test_fd_hessian_of_an_exact_gradient():
    vg = lambda x: (np.exp(x[0]) * x[1] ** 2, np.array([np.exp(x[0]) * x[1] ** 2, 2 * np.exp(x[0]) * x[1]]))  # noqa: E731
    x = np.array([0.3, -1.7])
    e = np.exp(0.3)
    H = np.array([[e * 1.7**2, 2 * e * -1.7], [2 * e * -1.7, 2 * e]])
    np.testing.assert_allclose(fd_hessian(vg, x), H, rtol=1e-7)


def test_non_finite_objective_is_a_status():
    vg = lambda x: (np.nan, np.full_like(x, np.nan))  # noqa: E731
    r = minimize_bounded(vg, np.ones(2), np.full(2, -np.inf))
    assert r.status == 2


def test_negative_curvature_near_the_bound_takes_long_steps():
    """f(x) = c (x⁴/(4s²) − x²/2), s = 0.3, c = 3·10⁵: from x = 10⁻⁴ the Newton step −g/|f″| is x
    itself (it would only double x, a dozen iterations with a fresh Hessian each); along negative
    curvature the step is at least a tenth of max(1, |x|), so the minimum x = s is reached in a few."""
    c, s = 3e5, 0.3
    vg = lambda x: (c * (x[0] ** 4 / (4 * s * s) - x[0] ** 2 / 2), np.array([c * (x[0] ** 3 / (s * s) - x[0])]))  # noqa: E731
    r = minimize_bounded(vg, np.array([1e-4]), np.array([0.0]))
    assert r.status == 0
    np.testing.assert_allclose(r.x, [s], rtol=1e-8)
    assert r.n_eval <= 20, r.n_eval  # 35 with steps of −g/|f″|


def _rosen_vg(X, which):
    """Rosenbrock-type functions f(x) = (a − x₁)² + 100(x₂ − x₁²)² + x₃² + x₃⁴, batched; a = 1 + which."""
    a = 1.0 + np.asarray(which, dtype=float)
    x1, x2, x3 = X[:, 0], X[:, 1], X[:, 2]
    f = (a - x1) ** 2 + 100 * (x2 - x1**2) ** 2 + x3**2 + x3**4
    g = np.stack([-2 * (a - x1) - 400 * x1 * (x2 - x1**2), 200 * (x2 - x1**2), 2 * x3 + 4 * x3**3], axis=1)
    return f, g


def _rosen_hess(x):
    x1, x2, x3 = x
    return np.array([[2 - 400 * (x2 - x1**2) + 800 * x1**2, -400 * x1, 0.0], [-400 * x1, 200.0, 0.0],
                     [0.0, 0.0, 2 + 12 * x3**2]])


def test_central_hessian_from_a_known_forward_half():
    """A central Hessian whose points x + hⱼeⱼ are known (from a forward one at the same x) evaluates
    only the d points x − hⱼeⱼ and equals the analytic Hessian to O(h²)."""
    from jaxmix.core.newton import fd_hessian_batch

    X = np.array([[0.7, 0.2, 0.5], [-1.1, 1.3, 2.0]])
    which = np.array([0, 1])
    calls = []

    def vg(P, w):
        calls.append(len(P))
        return _rosen_vg(P, w)

    _, G = vg(X, which)
    Hf, plus = fd_hessian_batch(vg, X, which, 1e-4, G, return_plus=True)
    Hc = fd_hessian_batch(vg, X, which, 1e-4, G, plus, forward=np.zeros(2, dtype=bool))
    assert calls == [2, 6, 6]  # the central Hessian: 3 new points per problem, not 6
    for i in range(2):
        H = _rosen_hess(X[i])
        np.testing.assert_allclose(Hc[i], H, rtol=1e-6, atol=1e-6)
        assert np.max(np.abs(Hf[i] - H)) > 10 * np.max(np.abs(Hc[i] - H))  # forward: O(h) only
    np.testing.assert_allclose(Hc, fd_hessian_batch(_rosen_vg, X, which, 1e-4), rtol=1e-12, atol=1e-10)


def test_central_hessian_at_the_optimum_reuses_points():
    """minimize_batch(central=True): the returned Hessian is the central one at the optimum (analytic
    values), and it costs d gradients beyond the forward Hessian that certified the optimum."""
    from jaxmix.core.newton import minimize_batch

    X0 = np.array([[-1.2, 1.0, 0.8], [0.5, 0.5, -0.6]])
    r = minimize_batch(_rosen_vg, X0, np.full(3, -np.inf), central=True)
    np.testing.assert_array_equal(r.status, [0, 0])
    np.testing.assert_allclose(r.x[:, :2], [[1.0, 1.0], [2.0, 4.0]], rtol=1e-6)
    for i in range(2):
        np.testing.assert_allclose(r.hess[i], _rosen_hess(r.x[i]), rtol=1e-6, atol=1e-6)
    rf = minimize_batch(_rosen_vg, X0, np.full(3, -np.inf), central=False)
    np.testing.assert_array_equal(r.n_eval - rf.n_eval, [3, 3])  # only the points x − hⱼeⱼ are new


def test_record_step_certifies_and_returns_a_finer_forward_hessian_at_no_extra_cost():
    """minimize_batch(record_step=h): the Hessian that certifies the optimum and is returned is the
    forward one with step h (error O(h): 100x smaller than the steering step's), with as many
    gradients as the default forward record and d fewer than a central one."""
    from jaxmix.core.newton import minimize_batch

    X0 = np.array([[-1.2, 1.0, 0.8], [0.5, 0.5, -0.6]])
    r = minimize_batch(_rosen_vg, X0, np.full(3, -np.inf), record_step=1e-6)
    rf = minimize_batch(_rosen_vg, X0, np.full(3, -np.inf))
    rc = minimize_batch(_rosen_vg, X0, np.full(3, -np.inf), central=True)
    np.testing.assert_array_equal(r.status, [0, 0])
    np.testing.assert_allclose(r.x, rf.x, rtol=1e-7, atol=1e-9)
    for i in range(2):
        H = _rosen_hess(r.x[i])
        err, err_f = np.max(np.abs(r.hess[i] - H)), np.max(np.abs(rf.hess[i] - _rosen_hess(rf.x[i])))
        assert err < 1e-5 * np.max(np.abs(H)) and err < err_f / 50, (err, err_f)
    np.testing.assert_array_equal(r.n_eval, rf.n_eval)
    np.testing.assert_array_equal(rc.n_eval - r.n_eval, [3, 3])


def test_start_hess_model_with_columns_by_differences():
    """minimize_batch(start_hess=...): the start's Hessian is the caller's model with the requested
    columns (and rows) by forward differences — one gradient per such column, not d — and a model
    wrong elsewhere steers only: the same optimum, certified on a difference Hessian."""
    from jaxmix.core.newton import minimize_batch

    X0 = np.array([[-1.2, 1.0, 0.8], [0.5, 0.5, -0.6]])
    calls, seen = [], {}

    def vg(P, w):
        calls.append(len(P))
        return _rosen_vg(P, w)

    def model(X, which):
        H = np.stack([_rosen_hess(x) for x in X]) * 1.3  # 30 % off everywhere
        H[:, 0, :] = H[:, :, 0] = 7.0  # and column 0 wrong: replaced by differences
        seen["X"] = X.copy()
        return H, np.array([True, False, False])

    r = minimize_batch(vg, X0, np.full(3, -np.inf), start_hess=model)
    rf = minimize_batch(_rosen_vg, X0, np.full(3, -np.inf))
    np.testing.assert_array_equal(seen["X"], X0)
    assert calls[:2] == [2, 2]  # the starts, then one difference point per start (column 0 only)
    np.testing.assert_array_equal(r.status, [0, 0])
    np.testing.assert_allclose(r.x, rf.x, rtol=1e-7, atol=1e-9)
    for i in range(2):  # the record is a difference Hessian at the optimum, not the model
        np.testing.assert_allclose(r.hess[i], _rosen_hess(r.x[i]), rtol=1e-3, atol=1e-3)


def _cov_fit_vg(X, which):
    """f(θ) = ‖ΛΛ′ − T‖²_F for Λ = [[θ₁, 0], [θ₂, θ₃]] (batched), T positive definite: the minimum is
    0 at Λ = chol(T), and f is unchanged by negating column 1 of Λ where θ₁ = 0."""
    T = np.array([[0.25, 0.1], [0.1, 0.3]])
    a, b, c = X[:, 0], X[:, 1], X[:, 2]
    S = np.stack([np.stack([a * a, a * b], 1), np.stack([a * b, b * b + c * c], 1)], 1)
    E = S - T
    f = np.sum(E**2, axis=(1, 2))
    # ∂f/∂Σ = 2E; dΣ/dθ by hand
    g = np.stack([2 * (2 * E[:, 0, 0] * 2 * a + 2 * 2 * E[:, 0, 1] * b),
                  2 * (2 * E[:, 0, 1] * a + E[:, 1, 1] * 2 * b),
                  2 * E[:, 1, 1] * 2 * c], axis=1)
    return f, g


def test_a_zero_column_of_lambda_is_tried_with_its_sign_flipped():
    """From θ = (0, −0.5, 0) the bound θ₁ = 0 satisfies its first-order condition (∂f/∂θ₁ > 0) but
    the same Σ with column 1 negated, θ = (0, 0.5, 0), does not: with ``flips`` the optimiser finds
    Λ = chol(T) (f = 0); without, it stops at θ₁ = 0 with f > 0."""
    from jaxmix.core.newton import minimize_batch

    lower = np.array([0.0, -np.inf, 0.0])
    X0 = np.array([[0.0, -0.5, 0.0]])
    r = minimize_batch(_cov_fit_vg, X0, lower, flips=[(0, (1,))])
    assert r.status[0] == 0
    np.testing.assert_allclose(r.x[0], np.linalg.cholesky([[0.25, 0.1], [0.1, 0.3]])[[0, 1, 1], [0, 0, 1]],
                               atol=1e-5)
    assert r.fun[0] < 1e-10
    r0 = minimize_batch(_cov_fit_vg, X0, lower)
    assert r0.fun[0] > 1e-3 and r0.x[0, 0] == 0.0


def test_negative_curvature_frees_a_bound_with_a_tiny_outward_gradient():
    """f(x) = 10⁻⁹x − x² + x⁴, x ≥ 0, from x = 0: the gradient (10⁻⁹) points out of the feasible
    side but the curvature (−2) outweighs it over any real step: the minimum x ≈ 1/√2 is found, not
    x = 0 (a criterion that is even in θ has a gradient of rounding size at θ = 0)."""
    vg = lambda x: (1e-9 * x[0] - x[0] ** 2 + x[0] ** 4, np.array([1e-9 - 2 * x[0] + 4 * x[0] ** 3]))  # noqa: E731
    r = minimize_bounded(vg, np.array([0.0]), np.array([0.0]))
    assert r.status == 0
    np.testing.assert_allclose(r.x, [np.sqrt(0.5)], rtol=1e-6)


def test_a_step_across_a_mirrored_bound_is_tried_reflected():
    """f(θ) = ‖ΛΛ′ − T‖²_F is even in the sign of each column of Λ.  From θ = (0.227, −0.758, 2.083)
    the Newton steps take θ₁ below 0: projected onto θ₁ = 0 they stall there (a saddle of the even
    criterion, left only along its negative curvature, hundreds of evaluations); tried reflected as
    well (``mirror``: negate column 1, θ₁ and θ₂), the same minimum ΛΛ′ = T is reached in a few dozen."""
    from jaxmix.core.newton import minimize_batch

    lower = np.array([0.0, -np.inf, 0.0])
    X0 = np.array([[0.227, -0.758, 2.083]])
    seen = []

    def vg(X, which):
        seen.append(np.asarray(X).copy())
        return _cov_fit_vg(X, which)

    r = minimize_batch(vg, X0, lower, flips=[(0, (1,))], mirror=[(0, (1,)), (2, ())])
    r0 = minimize_batch(_cov_fit_vg, X0, lower, flips=[(0, (1,))])
    T = np.array([[0.25, 0.1], [0.1, 0.3]])
    for res in (r, r0):
        assert res.status[0] == 0 and res.fun[0] < 1e-12
        a, b, c = res.x[0]
        L = np.array([[a, 0.0], [b, c]])
        np.testing.assert_allclose(L @ L.T, T, atol=1e-7)
    assert r.n_eval[0] < r0.n_eval[0] / 3
    # a call held a reflected point and its projection (θ₁ = 0) side by side, both feasible
    pairs = [P for P in seen if P.shape[0] == 2 and P[1, 0] == 0.0 and P[0, 0] > 0.0
             and P[0, 1] == -P[1, 1] and P[0, 2] == P[1, 2]]
    assert pairs and all(np.all(P[:, [0, 2]] >= 0.0) for P in seen)
