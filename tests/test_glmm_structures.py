"""Random-term structures in GLMMs: ``diag(x | g)`` over numeric columns is lme4's ``(x || g)`` (one
scalar term per column), fitted by the Laplace GLMM path and matched to glmmTMB's ``diag(x | g)``
(tests/data/glmm_diag.json, generator tests/data/export_glmm_diag.R, which also simulates
tests/data/poisson_diag.csv).  Structures that are not a set of scalar terms (cs, ar1, diag over a
factor's columns) are refused in GLMMs with an error naming the term."""
import json

import numpy as np
import pandas as pd
import pytest

import jaxmix
from conftest import DATA_DIR

REF = json.loads((DATA_DIR / "glmm_diag.json").read_text())


def _data():
    return pd.read_csv(DATA_DIR / "poisson_diag.csv")


def test_poisson_diag_term_matches_glmmtmb():
    res = jaxmix.fit("y ~ x + diag(x | g)", _data(), family="poisson")
    ref = REF["glmmTMB"]
    assert res.converged and res.n_params == ref["df"]
    assert res.loglik == pytest.approx(ref["loglik"], abs=1e-4)
    np.testing.assert_allclose(res.beta, list(ref["fixef"].values()), rtol=1e-3)
    np.testing.assert_allclose(res.se, list(ref["se"].values()), rtol=1e-3)
    np.testing.assert_allclose(res.varcorr["sdcor"], ref["re_sd"], rtol=1e-3)
    assert res.loglik >= REF["lme4"]["loglik"] - 1e-6  # lme4's (x || g): the same model
    sw = jaxmix.fit_many("~ x + diag(x | g)", _data(), outcomes=["y"], family="poisson")
    assert sw.loglik["y"] == pytest.approx(res.loglik, abs=1e-6)


@pytest.mark.parametrize("term,kind", [("diag(0 + f | g)", "diag"), ("cs(0 + f | g)", "cs"),
                                       ("ar1(0 + f | g)", "ar1")])
def test_other_structures_are_refused_in_glmms_naming_the_term(term, kind):
    d = _data().assign(f=lambda t: np.where(t["x"] > 0, "a", "b"))
    with pytest.raises(jaxmix.JaxmixError, match=rf"random term {kind}\(0 \+ f \| g\).*Gaussian models only"):
        jaxmix.fit(f"y ~ x + {term}", d, family="poisson")
    with pytest.raises(jaxmix.JaxmixError, match=rf"random term {kind}\(0 \+ f \| g\).*Gaussian models only"):
        jaxmix.fit_many(f"~ x + {term}", d, outcomes=["y"], family="poisson")
