"""Shared fixtures: the golden lme4 numbers in tests/data/ and a per-session cache of reference fits.

Every test reads its data from ``tests/data`` (copied from the shared reference folder together with
the R scripts that generated the numbers); nothing here reads outside the repository.

The persistent compilation cache is off in the tests (unless JAXMIX_CACHE_DIR is set): a test run
starts from a clean state, and executables are reused within the process by jaxmix's in-memory
cache.  (In long test processes XLA's executable serialisation, which the persistent cache calls
after each compile, crashed intermittently in jaxlib 0.10.2.)  jaxmix's own store of executables
(:mod:`jaxmix.fitting.cache`) is off here too; tests/test_cache.py checks it in separate processes.
"""
from __future__ import annotations

import os

os.environ.setdefault("JAXMIX_CACHE_DIR", "off")  # before jaxmix is imported
# with a cache folder (CI sets one), no executables are read back from it either: tests that patch a
# module's function trace its program again, which a stored executable of the same key would skip
os.environ.setdefault("JAXMIX_STORE_EXECUTABLES", "off")

import json  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import jaxmix  # noqa: E402

jaxmix.runtime.start()  # float64 before the tests build JAX arrays of their own


def fast_jit(fun=None, **kw):
    """``jax.jit`` with the XLA options the fits use for small model classes
    (:data:`jaxmix.fitting.lmm.FAST_COMPILE`): the tests' own reference programs (reverse mode through
    a factor, jvp checks) compile in about a third of the time."""
    import functools

    import jax

    from jaxmix.fitting.lmm import FAST_COMPILE

    if fun is None:
        return functools.partial(fast_jit, **kw)
    return jax.jit(fun, compiler_options=FAST_COMPILE, **kw)

DATA_DIR = Path(__file__).parent / "data"
REFERENCE_FILE = DATA_DIR / "lme4_reference.json"


def load_reference() -> dict:
    """The ``cases`` of lme4_reference.json (keyed by case id)."""
    with open(REFERENCE_FILE) as fh:
        return json.load(fh)["cases"]


REFERENCE = load_reference()
GAUSSIAN_CASES = sorted(k for k, v in REFERENCE.items() if v["family"] == "gaussian")


def load_csv(name: str) -> pd.DataFrame:
    """A dataset from tests/data by file name (``"sleepstudy.csv"``) or reference path (``"data/x.csv"``)."""
    return pd.read_csv(DATA_DIR / Path(name).name)


def case_data(case_id: str) -> pd.DataFrame:
    return load_csv(REFERENCE[case_id]["data"])


_FIT_CACHE: dict[tuple[str, str], jaxmix.MixedResults] = {}


def reference_fit(case_id: str, method: str) -> jaxmix.MixedResults:
    """jaxmix's fit of a reference case, computed once per test session."""
    key = (case_id, method)
    if key not in _FIT_CACHE:
        case = REFERENCE[case_id]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=jaxmix.JaxmixWarning)
            _FIT_CACHE[key] = jaxmix.fit(case["formula_python"], case_data(case_id), method=method)
    return _FIT_CACHE[key]


@pytest.fixture(scope="session")
def sleepstudy() -> pd.DataFrame:
    return load_csv("sleepstudy.csv")


@pytest.fixture(scope="session")
def sleep_reml() -> jaxmix.MixedResults:
    """The shared REML fit of ``Reaction ~ Days + (Days | Subject)``."""
    return reference_fit("sleepstudy_slope", "REML")


def quiet(fn, *a, **kw):
    """fn(*a, **kw) with jaxmix's warnings silenced (fits whose warnings a test does not check)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxmix.JaxmixWarning)
        return fn(*a, **kw)


def rel_close(actual, expected, rtol=1e-3, atol_zero=1e-6):
    """Element-wise relative closeness, absolute ``atol_zero`` where the reference is exactly 0."""
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    tol = np.where(expected == 0.0, atol_zero, rtol * np.abs(expected))
    err = np.abs(actual - expected)
    bad = ~(err <= tol)
    assert not bad.any(), (
        f"mismatch at {np.flatnonzero(bad).tolist()}: actual {actual[bad].tolist()} "
        f"expected {expected[bad].tolist()} (rtol {rtol}, atol at 0 {atol_zero})"
    )


# ---- long checks: marked slow, outside the README's test command ------------------------------------
# ``python -m pytest -q`` skips them (pyproject's addopts); ``python -m pytest -q -m slow`` runs them alone
# and ``python -m pytest -q -m ""`` runs everything.  Each is a batch / device / precision / tight-tolerance
# variant of a check that the quick run makes on a smaller case.
SLOW = (
    "test_bayes.py::test_sbc_quick_random_intercept",  # ~11 s; the 100-replicate version is slow too
    # ~15 s compiling an exact Laplace Hessian; the quick run checks the model at Λ = 0 exactly
    "test_glmm.py::test_gauss_newton_start_is_near_the_exact_laplace_hessian",
    "test_glmm_profile.py::test_grouseticks_poisson_two_terms",  # ~10 s: six profiles of a two-term Poisson GLMM
    "test_families_nb_gamma.py::test_covparm_se_matches_glmmtmb",
    "test_families_nb_gamma.py::test_config_run_writes_the_shape",
    "test_families_sweep.py::test_negative_binomial_sweep_equals_fit_and_glmmtmb",
    "test_families_sweep.py::test_gamma_sweep_equals_fit",
    "test_families_nb_gamma.py::test_nb_glm_bootstrap_refits_theta",
    "test_structures_sweep.py::test_aliased_outcome_is_refitted_with_its_structure",
    "test_structures_sweep.py::test_gls_ar1_sweep_equals_fit_and_a_failing_outcome_gets_a_status",
    "test_structures_sweep.py::test_cs_term_sweep_equals_fit_and_errors",
    "test_sweep.py::test_complete_outcomes_share_the_design_blocks",
    "test_sweep.py::test_sharded_equals_single_device",
    "test_sweep.py::test_glmm_batch_equals_fit_one_by_one",
    "test_sweep.py::test_separated_outcome_gets_a_status_the_others_their_own_fit",
    "test_sweep.py::test_chunks_with_progress_bar",
    "test_sweep.py::test_tiny_residual_sd_reaches_the_optimum_or_is_not_converged",
    "test_bootstrap.py::test_glmm_and_glm_bootstrap",
    "test_bootstrap.py::test_structured_bootstrap_refits_the_structures",
    "test_bootstrap.py::test_gamma_glmm_bootstrap_refits_the_shape",
    "test_structures_df.py::test_satterthwaite_df_near_emmeans",
    "test_configs_all.py::test_sweep_config",
    "test_configs_all.py::test_single_model_configs[centres]",
    "test_configs_all.py::test_single_model_configs[crossed_evaluations]",
    "test_glmm.py::test_matches_lme4_tight[",
    "test_glmm.py::test_agq_converges_to_brute_force_integral_and_laplace_does_not",
    "test_glmm.py::test_rescaled_covariate_slope_reaches_the_same_optimum",
    "test_glmm.py::test_group_with_all_zero_responses_converges",
    "test_glmm.py::test_binary_rows_equal_aggregated_counts",
    "test_glmm.py::test_poisson_non_integer_counts_warn",
    "test_glmm.py::test_gtol_reaches_the_glmm_optimiser",
    "test_configs_all.py::test_named_model_configs[seed_centres]",
    "test_devices.py::test_cpu_devices_from_the_environment",
    "test_devices.py::test_two_processes_equal_one",
    "test_precision.py::test_float32_sweep_stops_at_the_objectives_precision",
    "test_optimize.py::test_random_intercept_fits_reach_the_global_minimum",
    "test_linalg.py::test_vmapped_crossed_sweep_finishes",
    "test_linalg.py::test_batched_calls_become_loops_on_cpu",
    "test_linalg.py::test_sequential_forms_equal_jnp[jacrev_grad]",
    "test_examples.py::test_ami_nine_endpoints",  # the main job: tests/test_ami.py runs it quickly
    "test_inference.py::test_monte_carlo_coverage_fixed_effects_and_residual",
    # NUTS runs of 15-25 s each on the loaded 2-core machine (mostly compilation); quick ones stay
    "test_bayes.py::test_sbc_ranks_uniform",
    "test_bayes.py::test_sbc_quick_logistic",
    "test_bayes.py::test_logistic_glmm_agrees_with_laplace",
    "test_bayes.py::test_binomial_trials",
    "test_bayes.py::test_data_dominate_posterior_means_within_a_fraction_of_an_se",
    "test_bayes.py::test_strong_priors_override_the_data",
    "test_bayes_config.py::test_bayes_config_run_writes_the_posterior_of_jaxmix_sample",
    # the README command within ~4 minutes on 2 cores: the heaviest of the checks that have a quicker
    # sibling in the quick run (worker seconds measured with --durations on the loaded 2-core VM)
    "test_bayes.py::test_summary_rows_named_as_the_fit",  # a 2-chain NUTS run of sleepstudy (~50 s)
    "test_bayes.py::test_sleepstudy_posterior_means_near_reml",
    "test_bayes.py::test_posterior_predictive_and_arviz",
    "test_blocked.py::test_objective_matches_dense[nested-seed0-unw]",
    "test_blocked.py::test_objective_matches_dense[vector_second-seed0-unw]",
    "test_inference.py::test_profile_intervals_match_lme4[sleepstudy_slope]",
    "test_inference.py::test_satterthwaite_matches_lmertest[pastes_nested-REML]",
    "test_inference.py::test_satterthwaite_matches_lmertest[machines_nested-REML]",
    "test_inference.py::test_satterthwaite_matches_lmertest[sleepstudy_uncorr-REML]",
    "test_inference.py::test_glmm_asymptotic_and_covparm",
    "test_progress.py::test_profile_intervals_show_a_bar",
    "test_anova.py::test_lrt_reml_same_fixed_and_refit",
    "test_configs_all.py::test_named_model_configs[batting_day_night]",
    "test_examples.py::test_seed_centres_sequence",
    "test_examples.py::test_crossed_evaluations",
    "test_structures.py::test_simulate_structured_fit_has_the_fitted_covariance",
    "test_structures.py::test_dense_reml_loglik_of_a_fit_without_r_reference",
    "test_families_nb_gamma.py::test_simulate_has_the_fitted_mean_and_variance[",
    "test_families_nb_gamma.py::test_nb_without_overdispersion_warns_at_the_poisson_limit",
    "test_linalg.py::test_sequential_forms_equal_jnp[vmap_jacrev_grad]",
    "test_cache.py::test_first_fit_freezes_the_garbage_collector_unless_disabled",
    "test_cache.py::test_release_executables_when_mappings_pile_up",
    "test_bootstrap.py::test_simulated_responses_follow_the_model",
    # one method of each reference case stays in the quick run (REML; ML where REML is slow above)
    "test_inference.py::test_satterthwaite_matches_lmertest[dyestuff-ML]",
    "test_inference.py::test_satterthwaite_matches_lmertest[dyestuff2_singular-ML]",
    "test_inference.py::test_satterthwaite_matches_lmertest[penicillin_crossed-ML]",
    "test_inference.py::test_satterthwaite_matches_lmertest[sleepstudy_intercept-ML]",
    "test_inference.py::test_satterthwaite_matches_lmertest[sleepstudy_slope-ML]",
    "test_inference.py::test_covparm_se_matches_glmmtmb[dyestuff_ML]",
    "test_inference.py::test_covparm_se_matches_glmmtmb[pastes_nested_ML]",
    "test_inference.py::test_covparm_se_matches_glmmtmb[penicillin_crossed_ML]",
    "test_inference.py::test_covparm_se_matches_glmmtmb[sleepstudy_intercept_ML]",
    "test_inference.py::test_profile_intervals_match_lme4[sleepstudy_intercept_90]",
    "test_blocked.py::test_objective_matches_dense[nested-seed0-w]",
    "test_blocked.py::test_objective_matches_dense[vector_second-seed0-w]",
    # prior weights: checked on the scalar and nested structures in the quick run, the rest here
    "test_blocked.py::test_objective_matches_dense[vector-seed0-w]",
    "test_blocked.py::test_objective_matches_dense[crossed-seed0-w]",
    "test_blocked.py::test_objective_matches_dense[uncorrelated-seed0-w]",
    "test_blocked.py::test_objective_matches_dense[two_vectors_crossed-seed0-w]",
    "test_blocked.py::test_objective_matches_dense[three_terms-seed0-w]",
    "test_blocked.py::test_solution_matches_dense[vector-seed0-w]",
    "test_blocked.py::test_solution_matches_dense[crossed-seed0-w]",
    "test_blocked.py::test_solution_matches_dense[uncorrelated-seed0-w]",
    "test_blocked.py::test_solution_matches_dense[vector_second-seed0-w]",
    "test_blocked.py::test_solution_matches_dense[two_vectors_crossed-seed0-w]",
    "test_blocked.py::test_solution_matches_dense[three_terms-seed0-w]",
    "test_ami.py::test_main_job_numbers_are_fit_many_numbers",  # the main job itself stays (test_ami)
    "test_inference.py::test_profile_intervals_match_lme4[sleepstudy_intercept]",
    # 2026-12-01: 495 worker seconds over two workers was 4.4 minutes; these have quicker siblings
    "test_blocked.py::test_objective_matches_dense[two_vectors_crossed-seed0-unw]",  # solution_matches_dense stays
    "test_blocked.py::test_objective_matches_dense[three_terms-seed0-unw]",
    "test_blocked.py::test_objective_matches_dense[uncorrelated-seed0-unw]",
    "test_structures.py::test_varident_within_ar1_groups_orthodont",  # the varIdent and AR(1) checks stay
    "test_structures.py::test_gls_ar1_integer_time_with_gaps",
    "test_linalg.py::test_sequential_forms_equal_jnp[value]",  # [grad] stays
    # 2026-12-02: 527 worker seconds (284 s on two workers, ~7 minutes with the install); each has a
    # quicker sibling in the quick run, named after it
    "test_cache.py::test_an_executable_read_from_jax_cache_is_not_stored_again",  # a second process loads
    "test_lmm_host.py::test_fit_by_the_host_solution_equals_the_compiled_solution",  # host pieces stay
    "test_bayes.py::test_conditional_draws_have_the_dense_conditional_mean_and_covariance",  # marginal stays
    "test_lmm_blocks.py::test_value_and_gradient_equal_reverse_mode[two_vectors_crossed]",  # [vector] stays
    "test_lmm_blocks.py::test_fit_with_the_closed_form_equals_the_fit_with_reverse_mode[y ~ x + (1 + x | a) + (1 + z | b)-True]",
    "test_glmm_blocks.py::test_value_and_gradient_equal_reverse_mode[two_slopes-poisson]",  # [slope-binomial]
    "test_glmm_blocks.py::test_batched_points_equal_single_points",
    "test_glmm_scalar.py::test_value_and_gradient_equal_reverse_mode[nested-poisson]",  # crossed, single stay
    "test_glmm_scalar.py::test_value_and_gradient_equal_reverse_mode[observation-poisson]",
    "test_glmm_scalar.py::test_agq_value_and_gradient_equal_reverse_mode[poisson]",  # [binomial] stays
    "test_glmm_scalar.py::test_fit_with_the_closed_form_equals_the_fit_with_reverse_mode",  # values stay
    "test_glmm_scalar.py::test_agq_fit_with_the_closed_form_equals_the_fit_with_reverse_mode",
    "test_families_nb_gamma.py::test_data_constant_is_the_eta_free_part_summed_once_and_kept_out_of_the_program",
    "test_families_nb_gamma.py::test_glm_programs_serve_every_data_set_of_a_rows_bucket",
    "test_families_nb_gamma.py::test_prior_weights_are_repeated_rows",
    "test_structures.py::test_ar1_term_orthodont_glmmtmb",  # test_lme_ar1_ovary stays
    "test_structures.py::test_cs_term_machines_nlme",  # test_diag_over_factor_machines_nlme stays
    "test_structures.py::test_varident_lme_orthodont[REML]",  # [ML] stays
    "test_lmm_scalar.py::test_a_dense_block_above_potri_min_takes_lapacks_inverse",  # test_linalg's potri stays
    "test_lmm_scalar.py::test_value_and_gradient_equal_reverse_mode_through_the_factor[nested-0]",  # crossed
    "test_inference.py::test_covparm_vector_term_equals_direct_hessian",  # scalar covparm checks stay
    "test_structure.py::test_a_term_nested_in_the_next_gets_a_diagonal_schur_block_and_the_same_factor",
    "test_lmm_classes.py::test_closed_form_gradient_equals_automatic_differentiation[True]",  # [False] stays
    "test_blocked.py::test_solution_matches_dense[uncorrelated-seed0-unw]",  # scalar, nested, crossed,
    "test_blocked.py::test_solution_matches_dense[vector_second-seed0-unw]",  # vector, two_vectors_crossed
    "test_blocked.py::test_solution_matches_dense[three_terms-seed0-unw]",  # stay
    "test_fitting_lmm.py::test_dense_scalar_class_in_a_sweep_equals_the_fits_one_by_one",  # its programs stay
    "test_plots.py::test_save_all",  # test_save_all_kinds stays
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        nodeid = item.nodeid.split("/")[-1]
        if any(nodeid == s or (nodeid.startswith(s) and s.endswith("[")) or nodeid.startswith(s + "[")
               for s in SLOW):
            item.add_marker(pytest.mark.slow)


def assert_matches_differences(value, grad, x, h: float = 1e-4, tol: float = 1e-7) -> None:
    """Each entry of ``grad`` (at x) equals the five-point central difference of ``value`` with step h
    (error O(h⁴)), to ``tol``·(1 + |difference|)."""
    import jax.numpy as jnp
    import numpy as np
    import pytest

    g = np.asarray(grad)
    for i in range(x.shape[0]):
        e = jnp.zeros_like(x).at[i].set(h)
        fd = (8.0 * (value(x + e) - value(x - e)) - (value(x + 2 * e) - value(x - 2 * e))) / (12.0 * h)
        assert g[i] == pytest.approx(fd, abs=tol * (1.0 + abs(fd)))
