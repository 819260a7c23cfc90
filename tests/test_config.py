"""Pure validation of run configurations (dict -> RunConfig), no fitting."""
from pathlib import Path

import pytest

import jaxmix
from jaxmix.config import SCHEMA, ConfigError, RunConfig, load_config, parse_config

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
    (cfg(model={"formula": "y ~ x", "method": "RML"}), r"method must be one of 'REML', 'ML', got 'RML'; did you mean 'REML'"),
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

    from jaxmix.config import DataConfig, ModelConfig, OutputConfig

    for name, dc in [("data", DataConfig), ("model", ModelConfig), ("output", OutputConfig)]:
        assert set(SCHEMA[name]) == {f.name for f in fields(dc)}


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
