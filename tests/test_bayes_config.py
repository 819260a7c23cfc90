"""``[model] estimator = "bayes"`` with a ``[sampler]`` section: jaxmix run writes posterior.csv, trace.png
and fit.json with the numbers of jaxmix.sample on the same settings; bad keys are one-line errors."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxmix
from jaxmix.cli import main as cli
from jaxmix.cli.config import ConfigError, load_config, parse_config

pytest.importorskip("numpyro")

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "sleepstudy_bayes.toml"
SMALL = ["sampler.chains=2", "sampler.draws=150", "sampler.warmup=150", "sampler.progress=false",
         "sampler.save_draws=true"]


def test_bayes_config_run_writes_the_posterior_of_jaxmix_sample(tmp_path):
    sets = [a for s in SMALL for a in ("--set", s)]
    assert cli.main(["run", str(CONFIG), "--out", str(tmp_path), "--quiet", *sets]) == 0
    post = pd.read_csv(tmp_path / "posterior.csv")
    assert list(post.columns) == ["parameter", "mean", "sd", "2.5%", "97.5%", "r_hat", "ess_bulk", "ess_tail"]
    cfg = load_config(CONFIG, overrides=SMALL)
    s = cfg.sampler
    api = jaxmix.sample("Reaction ~ Days + (Days | Subject)", jaxmix.datasets.load("sleepstudy"), chains=s.chains,
                        draws=s.draws, warmup=s.warmup, seed=s.seed, priors=dict(s.priors), progress=False)
    ref = api.summary()
    assert list(post["parameter"]) == list(ref.index)
    np.testing.assert_allclose(post["mean"], ref["mean"], rtol=1e-9)
    draws = pd.read_csv(tmp_path / "draws.csv")
    assert draws.shape == (s.chains * s.draws, 2 + len(ref))
    rec = json.loads((tmp_path / "fit.json").read_text())
    assert rec["estimator"] == "bayes" and rec["random_effects"] == "integrated out"
    assert rec["priors"]["fixef"] == "{'normal': [0, 50]}"
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "trace.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _raw(**sampler):
    raw = {"data": {"builtin": "sleepstudy"},
           "model": {"formula": "Reaction ~ Days + (1 | Subject)", "estimator": "bayes"}}
    if sampler:
        raw["sampler"] = sampler
    return raw


@pytest.mark.parametrize("raw, match", [
    (_raw(chains=0), r"\[sampler\] chains must be a whole number >= 1"),
    (_raw(target_accept=1.5), r"\[sampler\] target_accept must be between 0 and 1"),
    (_raw(priors={"fixed": {"normal": [0, 1]}}), r"\[sampler\] priors: unknown class 'fixed'.*did you mean 'fixef'"),
    (_raw(chians=2), r"unknown key 'chians' in \[sampler\]; did you mean 'chains'"),
    ({"data": {"builtin": "sleepstudy"}, "model": {"formula": "Reaction ~ Days + (1 | Subject)"},
      "sampler": {"chains": 2}}, r'\[sampler\] is for models with estimator = "bayes"'),
    ({"data": {"builtin": "sleepstudy"}, "model": {"formula": "Reaction ~ Days + (1 | Subject)",
                                                   "estimator": "mcmc"}}, r"estimator"),
])
def test_bad_sampler_keys_are_config_errors(raw, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(raw)


def test_bad_prior_spec_in_a_config_names_the_sampler_section(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[data]\nbuiltin = "sleepstudy"\n[model]\nformula = "Reaction ~ Days + (1 | Subject)"\n'
                    'estimator = "bayes"\n[sampler]\npriors = { sigma = { normal = [0, 1] } }\nprogress = false\n')
    with pytest.raises(ConfigError, match=r"\[sampler\] \[model\] prior for 'sigma' must be on positive values"):
        from jaxmix.cli.job import run_config

        run_config(load_config(path).with_output(tmp_path / "out"))


def test_validate_describes_the_bayesian_fit(capsys):
    assert cli.main(["validate", str(CONFIG)]) == 0
    assert "Bayesian fit (NUTS) of 'Reaction ~ Days + (Days | Subject)' on 180 rows" in capsys.readouterr().out
