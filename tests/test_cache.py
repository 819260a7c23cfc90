"""jaxmix._cache: the in-process executables are dropped before the process runs out of memory mappings."""
from __future__ import annotations

import sys
import warnings

import pytest

import jaxmix
from jaxmix import _cache


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/maps")
def test_release_executables_when_mappings_pile_up():
    d = jaxmix.datasets.sleepstudy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = jaxmix.fit("Reaction ~ Days + (Days | Subject)", d)
        again = jaxmix.fit("Reaction ~ Days + (Days | Subject)", d)
    assert again.optim.compile_seconds == 0.0  # reused in memory
    assert len(_cache._COMPILED) >= 1
    before = _cache._mappings()
    assert not _cache.release_executables_if_needed(limit=10**9)
    assert _cache.release_executables_if_needed(limit=0)
    assert len(_cache._COMPILED) == 0 and _cache._mappings() < before
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        third = jaxmix.fit("Reaction ~ Days + (Days | Subject)", d)  # compiled again, same numbers
    assert third.optim.compile_seconds > 0.0
    assert third.loglik == first.loglik and (third.fixef == first.fixef).all()
