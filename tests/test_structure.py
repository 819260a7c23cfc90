"""jaxmix.core.structure: the padded blocks give the same criterion as the unpadded ones."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from conftest import load_csv
from jaxmix.core.structure import bucket, padded_system
from jaxmix.spec.covariance import theta_layout
from jaxmix.core.crossprod import CrossProducts, Index
from jaxmix.spec.design import build_design
from jaxmix.spec.formula import parse_formula
from jaxmix.core.lmm import objective
from jaxmix.fitting.lmm import lmm_arrays


def _crossed3(seed=0):
    rng = np.random.default_rng(seed)
    n = 400
    d = pd.DataFrame({"a": rng.integers(0, 37, n), "b": rng.integers(0, 11, n), "c": rng.integers(0, 5, n),
                      "x": rng.normal(size=n)})
    d["y"] = d.x + rng.normal(size=37)[d.a] + rng.normal(size=11)[d.b] + rng.normal(size=n)
    return d


CASES = [
    ("Reaction ~ Days + (Days | Subject)", load_csv("sleepstudy.csv")),
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", load_csv("Penicillin.csv")),
    ("score ~ Machine + (1 | Worker/Machine)", load_csv("Machines.csv")),
    ("y ~ x + (1 | a) + (x | b) + (1 | c)", _crossed3()),
    ("y ~ x + (x || a) + (1 | b:c)", _crossed3(1)),
]


@pytest.mark.parametrize("formula,data", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("reml", [True, False])
def test_padded_criterion_equals_unpadded(formula, data, reml):
    design = build_design(parse_formula(formula), data)
    layout, idx, xp = lmm_arrays(design, jnp.float64)
    T = np.column_stack([design.X, design.y])
    lay2, idx2, xp2 = padded_system([t.codes for t in design.terms], [t.nlevels for t in design.terms],
                                    [t.Z for t in design.terms], T, design.weights)
    assert lay2.nlev[0] >= layout.nlev[0] and lay2.m_R >= layout.m_R and lay2.n_entries >= layout.n_entries
    tl = theta_layout(layout.q)
    p, n = design.X.shape[1], design.nobs
    xp2 = CrossProducts(*(jnp.asarray(a) for a in xp2))
    idx2 = Index(*(jnp.asarray(a) for a in idx2))
    crit = jax.jit(lambda th: objective(th, xp, idx, layout, tl, n, p, 0.0, reml))
    crit_padded = jax.jit(lambda th: objective(th, xp2, idx2, lay2, tl, n, p, 0.0, reml))
    rng = np.random.default_rng(3)
    for _ in range(3):
        th = jnp.asarray(tl.init() + rng.normal(0, 0.4, tl.size))
        a, b = float(crit(th)), float(crit_padded(th))
        assert np.isfinite(a) and abs(a - b) < 1e-9 * abs(a)


def test_buckets_round_up_geometrically():
    assert bucket(5, 64) == 64 and bucket(64, 64) == 64
    assert bucket(65, 64) == 96 and bucket(97, 64) == 128 and bucket(129, 64) == 192
    assert bucket(1000, 16, (1.0, 1.25, 1.5, 1.75)) == 1024
    assert bucket(1100, 16, (1.0, 1.25, 1.5, 1.75)) == 1280
    for x in [1, 7, 63, 65, 100, 1000, 12345]:
        b = bucket(x, 1)
        assert x <= b <= 1.5 * x + 1


def test_subsets_of_one_model_share_a_class():
    """Other rows and level counts within a bucket give the same padded sizes (one compiled program)."""
    d = load_csv("sleepstudy.csv")
    sizes = set()
    for keep in (18, 14, 9):
        sub = d[d.Subject.isin(sorted(d.Subject.unique())[:keep])]
        design = build_design(parse_formula("Reaction ~ Days + (Days | Subject)"), sub)
        lay, idx, xp = padded_system([t.codes for t in design.terms], [t.nlevels for t in design.terms],
                                     [t.Z for t in design.terms], np.column_stack([design.X, design.y]),
                                     design.weights)
        sizes.add((lay, tuple(a.shape for a in idx), tuple(a.shape for a in xp)))
    assert len(sizes) == 1
