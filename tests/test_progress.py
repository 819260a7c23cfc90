"""jaxmix.progress: tqdm when installed, a text bar on stderr otherwise, nothing when quiet."""
from __future__ import annotations

import io

import pytest

from jaxmix import progress as prog


@pytest.fixture
def no_tqdm(monkeypatch):
    monkeypatch.setattr(prog, "_tqdm", lambda: None)


def test_quiet_yields_everything_and_prints_nothing(capsys):
    assert list(prog.progress(range(5), desc="x", quiet=True)) == [0, 1, 2, 3, 4]
    with prog.progress_bar(10, quiet=True) as bar:
        bar.update(4)
        assert bar.n == 4
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_text_bar_without_tqdm(no_tqdm, capsys):
    assert list(prog.progress(["a", "b", "c"], desc="bootstrap", unit="replicate")) == ["a", "b", "c"]
    err = capsys.readouterr().err
    last = err.rstrip("\n").split("\r")[-1]
    assert last.startswith("bootstrap: [") and "3/3 replicate" in last and "#" * prog.TextBar.width in last
    assert err.endswith("\n")
    assert capsys.readouterr().out == ""


def test_text_bar_unknown_total(no_tqdm, capsys):
    assert sum(prog.progress((i for i in range(4)), desc="profile")) == 6
    last = capsys.readouterr().err.rstrip("\n").split("\r")[-1]
    assert last.startswith("profile: 4 it")


def test_text_bar_by_hand():
    buf = io.StringIO()
    bar = prog.TextBar(8, "fitting", unit="outcome", file=buf, min_interval=0.0)
    bar.update(2)
    assert bar.line().startswith("fitting: [#######") and "2/8 outcome" in bar.line()
    bar.update(6)
    bar.close()
    bar.close()  # a second close draws nothing more
    text = buf.getvalue()
    assert text.count("\n") == 1 and "8/8" in text.split("\r")[-1]


def test_closed_when_the_loop_stops_early(no_tqdm, capsys):
    for i in prog.progress(range(100), desc="early"):
        if i == 2:
            break
    # the generator is closed when it is collected; close it now
    gen = prog.progress(range(10), desc="early2")
    next(gen)
    gen.close()
    assert capsys.readouterr().err.endswith("\n")


def test_tqdm_when_installed(capsys):
    pytest.importorskip("tqdm")
    assert list(prog.progress(range(3), desc="sweep")) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "sweep" in err and "3/3" in err
    bar = prog.progress_bar(5, desc="x")
    assert type(bar).__module__.startswith("tqdm")
    bar.close()


def test_profile_intervals_show_a_bar(no_tqdm, capsys):
    """confint(method="profile") reports progress over the profiled parameters; quiet by default here."""
    import warnings

    import jaxmix

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = jaxmix.fit("Reaction ~ Days + (1 | Subject)", jaxmix.datasets.sleepstudy())
        quiet = res.confint(method="profile", parm=["Days"])
        assert capsys.readouterr().err == ""  # stderr is not a terminal under pytest
        shown = res.confint(method="profile", parm=[".sig01", "Days"], progress=True)
    err = capsys.readouterr().err
    assert "profile" in err and "2/2 parameter" in err
    assert shown.loc["Days"].tolist() == quiet.loc["Days"].tolist()
    lo, hi = shown.loc["Days"]
    assert lo < res.fixef["Days"] < hi
