"""Pure validation of run configurations (dict -> RunConfig), no fitting."""
from pathlib import Path

import pytest

import jaxmix
from jaxmix.cli.config import SCHEMA, ConfigError, RunConfig, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]


def cfg(data=None, model=None, output=None, **extra):
    raw = {"data": {"builtin": "sleepstudy"} if data is None else data,
           "model": {"formula": "Reaction ~ Days + (Days | Subject)"} if model is None else model}
    if output is not None:
        raw["output"] = output
    raw.update(extra)
    return raw


def test_minimal_defaults():
    c = parse_config(cfg())
    assert isinstance(c, RunConfig)
    assert c.data.builtin == "sleepstudy" and c.data.path is None and c.data.args == {}
    assert c.model.formula == "Reaction ~ Days + (Days | Subject)"
    assert c.model.method == "REML" and c.model.weights is None and c.model.dtype == "float64"
    assert c.output.dir == Path("out/jaxmix")
    assert c.model.fit_kwargs() == {"method": "REML", "weights": None, "dtype": "float64"}


def test_full_and_normalised():
    c = parse_config(cfg(data={"path": "d/x.csv"},
                         model={"formula": "y ~ x + (1|g)", "method": "ml", "weights": "w", "dtype": "float32"},
                         output={"dir": "res"}), base_dir="/cfgs", source="/cfgs/exp1.toml")
    assert c.data.path == Path("/cfgs/d/x.csv")  # relative to the config file's folder
    assert c.model.method == "ML" and c.model.weights == "w" and c.model.dtype == "float32"
    assert c.output.dir == Path("res")  # relative to the working directory
    assert c.source == Path("/cfgs/exp1.toml")
    assert parse_config(cfg(), source="a/b/exp2.toml").output.dir == Path("out/exp2")
    assert parse_config(cfg(data={"path": "/abs/x.csv"}), base_dir="/cfgs").data.path == Path("/abs/x.csv")
    assert c.with_output("elsewhere").output.dir == Path("elsewhere")
    d = c.to_dict()
    assert d["model"]["method"] == "ML" and d["data"]["path"] == "/cfgs/d/x.csv"


def test_builtin_args():
    c = parse_config(cfg(data={"builtin": "centres", "args": {"seed": 3, "n_per_centre": 5}},
                         model={"formula": "return ~ use + (use | centre)"}))
    assert c.data.args == {"seed": 3, "n_per_centre": 5}
    with pytest.raises(ConfigError, match=r"unknown key 'seeed' in \[data.args\].*did you mean 'seed'"):
        parse_config(cfg(data={"builtin": "centres", "args": {"seeed": 3}}))
    with pytest.raises(ConfigError, match="only for a builtin"):
        parse_config(cfg(data={"path": "x.csv", "args": {"seed": 1}}))


@pytest.mark.parametrize("raw, pattern", [
    (cfg(model={"formul": "y ~ x"}), r"unknown key 'formul' in \[model\]; did you mean 'formula'\?"),
    (cfg(data={"bultin": "sleepstudy"}), r"unknown key 'bultin' in \[data\]; did you mean 'builtin'\?"),
    (cfg(output={"dri": "x"}), r"unknown key 'dri' in \[output\]; did you mean 'dir'\?"),
    (cfg(modle={"formula": "y ~ x"}), r"unknown section \[modle\]; did you mean \[model\]\?"),
    (cfg(zzz={}), r"unknown section \[zzz\] \(allowed"),
    (cfg(formula="y ~ x"), r"key 'formula' at the top level belongs in the \[model\] section"),
    ({"data": {"builtin": "sleepstudy"}}, r"missing the \[model\] section"),
    ({"model": {"formula": "y ~ x"}}, r"missing the \[data\] section"),
    (cfg(model={"method": "ML"}), r"\[model\] is missing the required key 'formula'"),
    (cfg(model={"formula": 3}), r"\[model\] formula must be a string, got an integer 3"),
    (cfg(model={"formula": "y ~ x", "method": True}), r"\[model\] method must be a string, got a boolean"),
    (cfg(model={"formula": "y ~ x", "method": "RML"}),
     r"\[model\] method must be one of 'REML', 'ML' for a gaussian model, got 'RML'; did you mean 'REML'"),
    (cfg(model={"formula": "y ~ x", "dtype": "float16"}), r"dtype must be one of 'float64', 'float32'"),
    (cfg(model={"formula": "  "}), r"\[model\] formula must not be empty"),
    (cfg(model={"formula": "y ~ x + (1|g"}), r"\[model\] formula: .*unbalanced"),
    (cfg(data={"builtin": "sleepstudyy"}), r"unknown built-in dataset 'sleepstudyy'; did you mean 'sleepstudy'"),
    (cfg(data={"builtin": 1}), r"\[data\] builtin must be a string"),
    (cfg(data={"builtin": "sleepstudy", "args": 3}), r"\[data\] args must be a table"),
    (cfg(data={}), r"exactly one of 'builtin' or 'path'"),
    (cfg(data={"builtin": "sleepstudy", "path": "x.csv"}), r"exactly one of 'builtin' or 'path' \(both are set\)"),
    (cfg(data="sleepstudy"), r"\[data\] must be a table"),
    (cfg(output={"dir": 5}), r"\[output\] dir must be a string"),
    (cfg(devices={"cpu_devices": 0}), r"\[devices\] cpu_devices must be a positive integer or 'auto', got 0"),
    (cfg(devices={"cpu_devices": "all"}), r"\[devices\] cpu_devices must be a positive integer or 'auto', got 'all'"),
    (cfg(devices={"cpu_devices": 1.5}), r"\[devices\] cpu_devices must be an integer or a string, got a number 1.5"),
])
def test_bad_configs(raw, pattern):
    with pytest.raises(ConfigError, match=pattern) as exc:
        parse_config(raw)
    assert "\n" not in str(exc.value)
    assert isinstance(exc.value, jaxmix.JaxmixError)


def test_parse_config_is_pure(tmp_path, monkeypatch):
    """A missing data file is not parse_config's business (no file system access)."""
    monkeypatch.chdir(tmp_path)
    c = parse_config(cfg(data={"path": "missing.csv"}, output={"dir": "never/created"}), base_dir=tmp_path)
    assert c.data.path == tmp_path / "missing.csv"
    assert list(tmp_path.iterdir()) == []


def test_schema_keys_match_dataclasses():
    from dataclasses import fields

    from jaxmix.cli.config import (BootstrapConfig, DataConfig, InferenceConfig, ModelConfig, OptionsConfig,
                               OutputConfig, SweepConfig)

    for name, dc in [("data", DataConfig), ("output", OutputConfig), ("inference", InferenceConfig),
                     ("bootstrap", BootstrapConfig), ("options", OptionsConfig), ("sweep", SweepConfig)]:
        assert set(SCHEMA[name]) == {f.name for f in fields(dc)}, name
    assert set(SCHEMA["model"]) == {f.name for f in fields(ModelConfig)} - {"name"}
    assert SCHEMA["models"] is SCHEMA["model"]  # [models.NAME] tables take the [model] keys


def test_readme_documents_every_key():
    """configs/README.md has a row for every section and key of the schema."""
    doc = (REPO / "configs" / "README.md").read_text()
    for section, spec in SCHEMA.items():
        assert f"[{section}" in doc, section
        for key in spec:
            assert f"`{key}`" in doc, (section, key)


def test_load_config_files(tmp_path):
    for name in ["sleepstudy", "centres"]:
        c = load_config(REPO / "configs" / f"{name}.toml")
        assert c.data.builtin == name and c.output.dir == Path("out") / name
    assert load_config(REPO / "configs" / "centres.toml").model.formula == "return ~ use + (use | centre)"

    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nbuiltin = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"config file '.*nope\.toml' not found"):
        load_config(tmp_path / "nope.toml")
    typo = tmp_path / "typo.toml"
    typo.write_text('[data]\nbuiltin = "sleepstudy"\n[model]\nformula = "y ~ x"\nmethd = "ML"\n')
    with pytest.raises(ConfigError, match=r"typo\.toml: unknown key 'methd' in \[model\]; did you mean 'method'"):
        load_config(typo)
    rel = tmp_path / "sub" / "rel.toml"
    rel.parent.mkdir()
    rel.write_text('[data]\npath = "../d.csv"\n[model]\nformula = "y ~ x"\n')
    assert load_config(rel).data.path == tmp_path / "sub" / ".." / "d.csv"


# ---- named models, families and methods ------------------------------------------------------------
def named(models, **extra):
    raw = {"data": {"builtin": "centres"}, "models": models}
    raw.update(extra)
    return raw


NULL_FULL = {"null": {"formula": "return ~ use + (1 | centre)", "method": "ML"},
             "full": {"formula": "return ~ use + (use | centre)", "method": "ML"}}


def test_named_models_and_comparisons():
    c = parse_config(named(NULL_FULL, comparisons={"lrt": ["null", "full"]}))
    assert list(c.models) == ["null", "full"] and c.named and c.model is None
    assert c.models["full"].label == "[models.full]" and c.models["full"].method == "ML"
    assert c.comparisons.lrt == (("null", "full"),) and c.comparisons.refit is None
    c2 = parse_config(named(NULL_FULL, comparisons={"lrt": [["null", "full"], ["full", "null"]], "refit": True}))
    assert c2.comparisons.lrt == (("null", "full"), ("full", "null")) and c2.comparisons.refit is True
    d = c.to_dict()
    assert d["model"] is None and d["models"]["null"]["formula"] == "return ~ use + (1 | centre)"
    assert d["comparisons"]["lrt"] == [["null", "full"]]


def test_glmm_models_defaults():
    c = parse_config(named({
        "lap": {"formula": "y ~ x + (1 | g)", "family": "Binomial"},
        "agq": {"formula": "y ~ x + (1 | g)", "family": "binomial", "method": "agq"},
        "agq5": {"formula": "y ~ x + (1 | g)", "family": "poisson", "nagq": 5},
        "probit": {"formula": "y ~ x + (1 | g)", "family": "binomial", "link": "Probit", "trials": "n",
                   "offset": "o", "dtype": "float32"},
    }))
    m = c.models
    assert (m["lap"].family, m["lap"].method, m["lap"].nagq) == ("binomial", "Laplace", 1)
    assert (m["agq"].method, m["agq"].nagq) == ("AGQ", 9)
    assert (m["agq5"].family, m["agq5"].method, m["agq5"].nagq) == ("poisson", "AGQ", 5)
    assert m["probit"].fit_kwargs() == {"method": "Laplace", "weights": None, "dtype": "float32", "family": "binomial",
                                        "link": "probit", "nagq": 1, "trials": "n", "offset": "o"}


def test_inference_options_output_bootstrap():
    c = parse_config(cfg(inference={"ddf": "Kenward_Roger", "anova": True, "level": 0.9},
                         options={"max_iter": 50, "gtol": 1e-6, "dtype": "float32"},
                         output={"dir": "o", "formats": ["csv", "Parquet"], "plots": ["shrinkage", "caterpillar"],
                                 "plot_x": "Days", "dpi": 80},
                         bootstrap={"n": 30, "seed": 4}))
    m = c.model
    assert m.ddf == "kenward-roger" and m.anova is True and m.dtype == "float32"  # defaults from the sections
    assert m.fit_kwargs(c.options) == {"method": "REML", "weights": None, "dtype": "float32", "max_iter": 50,
                                       "gtol": 1e-6}
    assert c.output.formats == ("csv", "parquet") and c.output.plots == ("caterpillar", "shrinkage")
    assert c.output.plot_x == "Days" and c.output.dpi == 80
    assert (c.bootstrap.n, c.bootstrap.seed, c.bootstrap.level, c.bootstrap.models) == (30, 4, 0.95, ("model",))
    assert parse_config(cfg(output={"plots": False})).output.plots == ()
    assert parse_config(cfg(output={"plots": True})).output.plots == ("caterpillar", "group_lines", "shrinkage")
    # per-model keys win over [inference]
    c = parse_config(named({"a": {"formula": "return ~ use + (1 | centre)", "ddf": "containment", "anova": False},
                            "b": {"formula": "return ~ use + (1 | centre)"}},
                           inference={"ddf": "between-within", "anova": True}))
    assert (c.models["a"].ddf, c.models["a"].anova) == ("containment", False)
    assert (c.models["b"].ddf, c.models["b"].anova) == ("between-within", True)
    # bootstrap defaults to the models with random effects
    c = parse_config(named({"ols": {"formula": "return ~ use"}, **NULL_FULL}, bootstrap={}))
    assert c.bootstrap.models == ("null", "full") and c.bootstrap.n == 1000


M = {"formula": "y ~ x + (1 | g)"}


@pytest.mark.parametrize("raw, pattern", [
    (named({"full": {**M, "methd": "ML"}}), r"unknown key 'methd' in \[models\.full\]; did you mean 'method'\?"),
    (named({"full": {"method": "ML"}}), r"\[models\.full\] is missing the required key 'formula'"),
    (named({"full": {**M, "nagq": "9"}}), r"\[models\.full\] nagq must be an integer, got a string '9'"),
    (named({"full": {**M, "method": "AGQ"}}),
     r"\[models\.full\] method 'AGQ' is for non-gaussian models; a gaussian model takes 'REML' or 'ML'"),
    (named({"full": {**M, "family": "binomial", "method": "REML"}}),
     r"\[models\.full\] method 'REML' is for gaussian models; a binomial model takes 'Laplace' or 'AGQ'"),
    (cfg(model={**M, "family": "poisson", "method": "Laplce"}), r"\[model\] method must be one of 'Laplace', 'AGQ'.*did you mean 'Laplace'"),
    (cfg(model={**M, "family": "binomal"}), r"\[model\] family must be one of .*did you mean 'binomial'"),
    (cfg(model={**M, "family": "binomial", "link": "logt"}), r"\[model\] link: unknown link 'logt'"),
    (cfg(model={**M, "link": "log"}), r"\[model\] link: unknown link 'log' for family 'gaussian'; choose one of identity"),
    (cfg(model={**M, "nagq": 5}), r"\[model\] nagq is for non-gaussian models"),
    (cfg(model={**M, "family": "binomial", "method": "Laplace", "nagq": 5}), r"nagq = 5 needs method = 'AGQ'"),
    (cfg(model={**M, "family": "binomial", "method": "AGQ", "nagq": 1}), r"'AGQ' needs nagq > 1"),
    (cfg(model={"formula": "y ~ x", "family": "binomial", "method": "AGQ"}), r"'AGQ' needs a random-effect term"),
    (cfg(model={**M, "family": "poisson", "trials": "n"}), r"\[model\] trials is for binomial models"),
    (cfg(model={**M, "family": "binomial", "ddf": "satterthwaite"}),
     r"\[model\] ddf 'satterthwaite' needs a linear mixed model; this is a binomial GLMM"),
    (cfg(model={"formula": "y ~ x"}, inference={"ddf": "containment"}),
     r"\[inference\] ddf \(for \[model\]\) 'containment' needs random effects; use 'residual'"),
    (cfg(model={"formula": "y ~ x"}, inference={"ddf": "satterthwaite"}),
     r"\[inference\] ddf \(for \[model\]\) 'satterthwaite' needs a linear mixed model; this is a model without"),
    (cfg(model={**M, "method": "ML", "ddf": "kr"}), r"ddf must be one of .*got 'kr'"),
    (cfg(model={**M, "method": "ML", "ddf": "kenward-roger"}), r"ddf 'kenward-roger' needs method = 'REML', got 'ML'"),
    (cfg(inference={"level": 95}), r"\[inference\] level must be between 0 and 1, got 95"),
    (cfg(inference={"anova": "yes"}), r"\[inference\] anova must be true or false, got a string 'yes'"),
    (cfg(options={"gtol": "1e-4"}), r"\[options\] gtol must be a number, got a string"),
    (cfg(options={"max_iter": 0}), r"\[options\] max_iter must be a positive integer"),
    (cfg(options={"maxiter": 10}), r"unknown key 'maxiter' in \[options\]; did you mean 'max_iter'"),
    (cfg(output={"formats": ["cvs"]}), r"\[output\] formats: unknown format 'cvs'; did you mean 'csv'"),
    (cfg(output={"plots": "yes"}), r"\[output\] plots must be true or false or an array, got a string"),
    (cfg(output={"plots": ["caterpilar"]}), r"unknown plot 'caterpilar'; did you mean 'caterpillar'"),
    (cfg(bootstrap={"n": 0}), r"\[bootstrap\] n must be a positive number"),
    (cfg(bootstrap={"nn": 10}), r"unknown key 'nn' in \[bootstrap\]; did you mean 'n'"),
    (named(NULL_FULL, comparisons={"lrt": ["null", "ful"]}),
     r"\[comparisons\] lrt: unknown model 'ful'; did you mean 'full'\? \(models: null, full\)"),
    (named(NULL_FULL, comparisons={"lrt": [["null"]]}), r"\[comparisons\] lrt needs at least 2 models"),
    (named(NULL_FULL, comparisons={"lrt": []}), r"\[comparisons\] lrt is empty"),
    (named(NULL_FULL, comparisons={}), r"\[comparisons\] is missing the required key 'lrt'"),
    (named(NULL_FULL, bootstrap={"models": ["nul"]}), r"\[bootstrap\] models: unknown model 'nul'; did you mean 'null'"),
    (named(NULL_FULL, comparisons={"lrt": ["null", "null"]}), r"\[comparisons\] lrt lists 'null' twice"),
    (cfg(comparisons={"lrt": ["model", "model"]}), r"\[comparisons\] needs two or more named models"),
    (named({}), r"\[models\] has no models"),
    (named({"formula": "y ~ x"}), r"\[models\] formula must be a table \[models\.formula\].*such as \[models\.full\]"),
    (named({"a b": M}), r"a model name may use letters, digits"),
    ({**cfg(), "models": {"x": M}}, r"either one \[model\] or named \[models\.NAME\] tables, not both"),
    ({"data": {"builtin": "ami"}, "sweep": {"formula": "~ x", "outcomes": ["a"]}, "bootstrap": {"n": 5}},
     r"\[bootstrap\] is for \[model\] / \[models\.NAME\] configs, not a \[sweep\]"),
    ({"data": {"builtin": "ami"}, "sweep": {"formula": "~ x", "outcomes": []}}, r"\[sweep\] outcomes is empty"),
])
def test_bad_model_configs(raw, pattern):
    with pytest.raises(ConfigError, match=pattern) as exc:
        parse_config(raw)
    assert "\n" not in str(exc.value)


# ---- --set overrides ---------------------------------------------------------------------------------
def test_apply_overrides():
    from jaxmix.cli.config import apply_overrides

    raw = named(NULL_FULL)
    new = apply_overrides(raw, ["data.args.n_per_centre=5", "models.full.method=REML", "output.plots=false",
                                "inference.ddf=containment", 'output.formats=["csv", "parquet"]',
                                "output.dir=out/x y", "data.args={ seed = 3 }", "bootstrap.n=10"])
    assert raw == named(NULL_FULL)  # the input is not changed
    assert new["data"]["args"] == {"seed": 3}  # later overrides win
    assert new["models"]["full"]["method"] == "REML" and new["output"]["plots"] is False
    assert new["output"]["formats"] == ["csv", "parquet"] and new["output"]["dir"] == "out/x y"  # a string
    assert new["bootstrap"] == {"n": 10}  # a new section
    c = parse_config(new)
    assert c.models["full"].method == "REML" and c.models["null"].ddf == "containment" and c.output.plots == ()
    # an empty value removes the key: switch from a builtin data set to a file
    c = parse_config(apply_overrides(cfg(), ["data.builtin=", "data.path=x.csv"]), base_dir="/d")
    assert c.data.path == Path("/d/x.csv") and c.data.builtin is None
    # sleepstudy's model, method ML
    assert parse_config(apply_overrides(cfg(), ["model.method=ml"])).model.method == "ML"


@pytest.mark.parametrize("item, pattern", [
    ("model.method", r"--set 'model\.method': expected KEY=VALUE"),
    ("=3", r"expected KEY=VALUE with KEY like 'section\.key'"),
    ("model..method=ML", r"expected KEY=VALUE with KEY like 'section\.key'"),
    ("modle.method=ML", r"--set 'modle\.method=ML': unknown section 'modle'; did you mean 'model'"),
    ("model.methd=ML", r"--set 'model\.methd=ML': unknown key 'methd' in \[model\]; did you mean 'method'"),
    ("model=3", r"--set 'model=3': name a key of \[model\]"),
    ("models.ful.method=ML", r"no model 'ful' in the config; did you mean 'full'\? \(models: null, full\)"),
    ("models.full=3", r"a model key is models\.NAME\.key"),
    ("model.method.x=1", r"\[model\] method is not a table"),
])
def test_bad_overrides(item, pattern):
    from jaxmix.cli.config import apply_overrides

    raw = named(NULL_FULL)
    with pytest.raises(ConfigError, match=pattern) as exc:
        apply_overrides(raw, [item])
    assert "\n" not in str(exc.value)


def test_load_config_with_overrides(tmp_path):
    c = load_config(REPO / "configs" / "sleepstudy.toml", overrides=["model.method=ML", "inference.ddf=residual"])
    assert c.model.method == "ML" and c.model.ddf == "residual"
    assert c.overrides == ("model.method=ML", "inference.ddf=residual")
    assert c.to_dict()["overrides"] == ["model.method=ML", "inference.ddf=residual"]
    with pytest.raises(ConfigError, match=r"sleepstudy\.toml: \[options\] max_iter must be an integer, got a string 'many'"):
        load_config(REPO / "configs" / "sleepstudy.toml", overrides=["options.max_iter=many"])


def test_every_config_parses():
    for path in sorted((REPO / "configs").glob("*.toml")):
        c = load_config(path)
        assert c.output.dir == Path("out") / path.stem, path
        assert c.sweep is not None or c.models
    c = load_config(REPO / "configs" / "seed_centres.toml")
    assert len(c.models) >= 2 and c.comparisons.lrt[0] == ("intercept", "slope")
    assert {m.method for n, m in c.models.items() if n in ("intercept", "slope")} == {"ML"}
    b = load_config(REPO / "configs" / "batting_day_night.toml")
    assert b.models["player"].ddf == "containment"
