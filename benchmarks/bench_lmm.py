"""Benchmark jaxmix against lme4 (R) and the Python peers on the same data, in one run.

Problems
  sleepstudy  ``Reaction ~ Days + (Days | Subject)`` (lme4's sleepstudy, 180 rows), REML
  crossed     ``y ~ service + (1 | s) + (1 | d) + (1 | dept)`` on the InstEval-like simulation of
              ``benchmarks/data.py`` (default ~74,000 rows, 2972 x 1127 x 14 levels), REML

Tools
  jaxmix      in-process first and second fit (warm), and, for sleepstudy, the whole ``python -c``
              process once with an empty ``JAXMIX_CACHE_DIR`` (cold) and once with that cache warm
  lme4        ``Rscript benchmarks/lme4_fit.R``: the whole process, and lmer() alone as timed in R
  statsmodels MixedLM (crossed factors as variance components of one all-rows group)
  glmm        PyPI ``glmm`` (Rust kernel), ``glmm.fit(..., reml=True, satterthwaite=False)``
  bossanova   ``bossanova.model(..., method="reml").fit()``

Every measurement runs in its own subprocess (this file with ``--worker``), so a peer that is missing,
fails or hangs is recorded (error text or timeout) and the run goes on.  The load average (``uptime``)
is recorded before each timing; jaxmix and lme4 are repeated ``--repeats`` times and the minimum is
reported.  Results go to ``benchmarks/_work/results.json`` and Markdown tables to
``benchmarks/_work/tables.md``.

    python benchmarks/bench_lmm.py                                   # full size, everything
    python benchmarks/bench_lmm.py --students 300 --lecturers 110    # small (~7,700 rows)
    python benchmarks/bench_lmm.py --problems sleepstudy --peers glmm
    python benchmarks/bench_lmm.py --tables-from benchmarks/_work/results.json

jaxmix is timed once per environment variant (``--jaxmix-envs``, default: as is, and
``PJRT_NPROC=1,OPENBLAS_NUM_THREADS=1``): on a 2-core machine jaxlib 0.10.2's batched LAPACK kernels
can deadlock XLA's 2-thread pool on the crossed model, so the default-environment crossed run has its
own, shorter timeout (``--hang-timeout``) and a timeout is not repeated.  See RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work"
sys.path.insert(0, str(HERE))

from data import FORMULA, SLEEP_FORMULA, describe, simulate, write_csv  # noqa: E402

TAG = "BENCHJSON "
PROBLEMS = {
    "sleepstudy": dict(formula=SLEEP_FORMULA, factors="Subject"),
    "crossed": dict(formula=FORMULA, factors="s,d,dept"),
}


# --------------------------------------------------------------------------------------------------
# workers: run inside a subprocess, print one TAG line of JSON
# --------------------------------------------------------------------------------------------------

def _emit(obj) -> None:
    print(TAG + json.dumps(obj, default=float), flush=True)


def _read(problem: str, csv: str, kind: str = "pandas"):
    if kind == "polars":
        import polars as pl

        df = pl.read_csv(csv)
        cols = PROBLEMS[problem]["factors"].split(",")
        return df.with_columns([pl.col(c).cast(pl.Utf8) for c in cols])
    import pandas as pd

    df = pd.read_csv(csv)
    for c in PROBLEMS[problem]["factors"].split(","):
        df[c] = df[c].astype(str)
    return df


def worker_jaxmix(problem: str, csv: str, nfits: int) -> dict:
    t0 = time.perf_counter()
    import jax

    import jaxmix
    t_import = time.perf_counter() - t0
    df = _read(problem, csv)
    fits = []
    for _ in range(nfits):
        t = time.perf_counter()
        r = jaxmix.fit(PROBLEMS[problem]["formula"], df, method="REML")
        wall = time.perf_counter() - t
        fits.append(dict(wall_seconds=wall, fit_seconds=r.optim.fit_seconds,
                         compile_seconds=r.optim.compile_seconds, iterations=r.optim.iterations,
                         evaluations=r.optim.evaluations))
    return dict(import_seconds=t_import, fits=fits, loglik=r.loglik, objective=r.objective,
                fixef=[float(x) for x in r.fixef], theta=[float(x) for x in r.theta], sigma=r.sigma,
                converged=bool(r.converged), message=r.optim.message, jax=jax.__version__,
                cache_dir=jax.config.jax_compilation_cache_dir,
                xla_flags=os.environ.get("XLA_FLAGS", ""))


def worker_statsmodels(problem: str, csv: str, nfits: int) -> dict:
    import warnings

    import numpy as np
    import statsmodels
    import statsmodels.formula.api as smf

    df = _read(problem, csv)
    fits = []
    for _ in range(nfits):
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as ws:
            warnings.simplefilter("always")
            if problem == "sleepstudy":
                m = smf.mixedlm("Reaction ~ Days", df, groups="Subject", re_formula="~Days").fit(reml=True)
            else:
                df["one_group"] = 1
                vc = {"s": "0 + C(s)", "d": "0 + C(d)", "dept": "0 + C(dept)"}
                m = smf.mixedlm("y ~ service", df, groups="one_group", re_formula="0",
                                vc_formula=vc).fit(reml=True)
        fits.append(dict(wall_seconds=time.perf_counter() - t))
    return dict(fits=fits, loglik=float(m.llf), objective=-2 * float(m.llf),
                fixef=np.asarray(m.fe_params, dtype=float).tolist(), sigma=float(np.sqrt(m.scale)),
                converged=bool(m.converged), version=statsmodels.__version__,
                warnings=sorted({str(w.message)[:160] for w in ws}))


def worker_glmm(problem: str, csv: str, nfits: int) -> dict:
    import glmm
    import numpy as np

    df = _read(problem, csv)
    fits = []
    for _ in range(nfits):
        t = time.perf_counter()
        f = glmm.fit(df, PROBLEMS[problem]["formula"], reml=True, satterthwaite=False)
        fits.append(dict(wall_seconds=time.perf_counter() - t, evaluations=int(f.n_eval)))
    from importlib.metadata import version

    return dict(fits=fits, loglik=float(f.loglik), objective=-2 * float(f.loglik),
                fixef=np.asarray(f.beta, dtype=float).tolist(), sigma=float(np.sqrt(f.dispersion)),
                converged=bool(f.converged), version=version("glmm"))


def worker_bossanova(problem: str, csv: str, nfits: int) -> dict:
    import bossanova
    import numpy as np

    df = _read(problem, csv, kind="polars")
    fits = []
    for _ in range(nfits):
        t = time.perf_counter()
        m = bossanova.model(PROBLEMS[problem]["formula"], df, method="reml")
        m.fit()
        fits.append(dict(wall_seconds=time.perf_counter() - t))
    f = m._fit  # the public tables round to display digits; the fit state has the full numbers
    from importlib.metadata import version

    return dict(fits=fits, loglik=float(f.loglik), objective=-2 * float(f.loglik),
                fixef=np.asarray(f.coef, dtype=float).tolist(), theta=np.asarray(f.theta).tolist(),
                sigma=float(f.sigma), converged=bool(f.converged), iterations=int(f.n_iter),
                version=version("bossanova"), backend=str(bossanova.get_backend()))


WORKERS = {"jaxmix": worker_jaxmix, "statsmodels": worker_statsmodels, "glmm": worker_glmm,
           "bossanova": worker_bossanova}

# the whole-process jaxmix measurement: exactly what a user's script does
COLD_SNIPPET = (
    "import jaxmix, pandas as pd, time; t = time.perf_counter(); "
    "df = pd.read_csv({csv!r}, dtype={{{fac}}}); "
    "r = jaxmix.fit({formula!r}, df, method='REML'); "
    "print({tag!r} + __import__('json').dumps(dict(loglik=r.loglik, objective=r.objective, "
    "fit_seconds=r.optim.fit_seconds, compile_seconds=r.optim.compile_seconds, "
    "iterations=r.optim.iterations, converged=bool(r.converged), "
    "in_process_seconds=time.perf_counter() - t)))"
)


# --------------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------------

def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:  # pragma: no cover - uptime missing
        return "load average: %.2f, %.2f, %.2f" % os.getloadavg()


def load1() -> float:
    return os.getloadavg()[0]


def run_proc(cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run a command, time the whole process, parse its TAG line."""
    load = uptime()
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return dict(ok=False, error=f"timeout after {timeout:.0f} s", process_seconds=time.perf_counter() - t,
                    load=load)
    wall = time.perf_counter() - t
    out = dict(process_seconds=wall, load=load, returncode=p.returncode)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(TAG) or ln.startswith("LME4JSON ")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-6:]
        out.update(ok=False, error=" | ".join(tail)[-600:] or f"exit {p.returncode}, no result")
        return out
    out.update(ok=True, **json.loads(lines[-1].split(" ", 1)[1]))
    return out


def env_with(**kw) -> dict:
    env = dict(os.environ)
    for k, v in kw.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def parse_env(spec: str) -> dict:
    """'default' -> {}; 'A=1,B=2' -> {'A': '1', 'B': '2'}."""
    if spec in ("", "default"):
        return {}
    return dict(kv.split("=", 1) for kv in spec.split(","))


def run_repeats(cmd, n, timeout, env, log, what) -> list:
    """n runs of cmd; a timeout is not repeated (a hang would only cost another timeout)."""
    runs = []
    for i in range(n):
        log(f"{what} {i + 1}/{n}")
        r = run_proc(cmd, timeout, env=env)
        runs.append(r)
        if not r.get("ok") and "timeout" in r.get("error", ""):
            log(f"{what}: timed out after {timeout:.0f} s, not repeated")
            break
    return runs


def bench_problem(name: str, csv: Path, a, log) -> dict:
    spec = PROBLEMS[name]
    res: dict = dict(problem=name, formula=spec["formula"], csv=str(csv.relative_to(REPO)))

    # lme4
    runs = []
    for i in range(a.repeats):
        log(f"{name}: lme4 run {i + 1}/{a.repeats}")
        runs.append(run_proc(["Rscript", str(HERE / "lme4_fit.R"), str(csv), spec["formula"], "REML",
                              spec["factors"]], a.timeout))
    res["lme4"] = runs

    # jaxmix, once per environment variant
    res["jaxmix_variants"] = []
    for variant in a.jaxmix_envs:
        extra = parse_env(variant)
        tag = variant
        vres: dict = dict(env=variant)
        cache = WORK / ("jaxmix_cache_" + "".join(ch if ch.isalnum() else "_" for ch in variant))
        shutil.rmtree(cache, ignore_errors=True)  # repeat 1 starts with an empty cache, later ones find it warm
        jax_env = env_with(JAXMIX_CACHE_DIR=str(cache), XLA_FLAGS=a.xla_flags or None, **extra)
        timeout = a.hang_timeout if (variant == "default" and name == "crossed") else a.timeout
        # in-process: first fit (persistent cache of earlier runs of this variant), then warm fits
        vres["in_process"] = run_repeats(
            [sys.executable, __file__, "--worker", "jaxmix", name, str(csv), "--nfits", str(a.nfits)],
            a.repeats, timeout, jax_env, log, f"{name}: jaxmix [{tag}] in-process")
        hung = any("timeout" in r.get("error", "") for r in vres["in_process"])
        # whole process, cold (empty persistent cache) and with that cache warm
        if (name == "sleepstudy" or a.cold_crossed) and not hung:
            fac = ", ".join(f"{c!r}: str" for c in spec["factors"].split(","))
            code = COLD_SNIPPET.format(csv=str(csv), fac=fac, formula=spec["formula"], tag=TAG)
            cold, warm = [], []
            for i in range(a.repeats):
                cdir = tempfile.mkdtemp(prefix="jaxmix_cold_", dir=WORK)
                env = env_with(JAXMIX_CACHE_DIR=cdir, XLA_FLAGS=a.xla_flags or None, **extra)
                log(f"{name}: jaxmix [{tag}] cold process {i + 1}/{a.repeats} (empty cache)")
                cold.append(run_proc([sys.executable, "-c", code], timeout, env=env))
                log(f"{name}: jaxmix [{tag}] process {i + 1}/{a.repeats} with that cache warm")
                warm.append(run_proc([sys.executable, "-c", code], timeout, env=env))
                shutil.rmtree(cdir, ignore_errors=True)
            vres["cold_process"] = cold
            vres["warmcache_process"] = warm
        res["jaxmix_variants"].append(vres)
    if name == "sleepstudy":
        log(f"{name}: bare 'python -c \"import jaxmix\"'")
        res["import_only"] = [run_proc([sys.executable, "-c", f"import jaxmix; print({TAG!r} + '{{}}')"], 120)
                              for _ in range(a.repeats)]

    # peers
    for peer in a.peers:
        if peer == "statsmodels" and name == "crossed":
            n_rows, n_cols = a._crossed_shape
            gb = n_rows * n_cols * 8 / 1e9
            if gb > a.statsmodels_max_gb:
                res[peer] = [dict(ok=False, skipped=True, error=(
                    f"not run: statsmodels MixedLM has no crossed random effects; as variance components of "
                    f"one all-rows group its random-effects design is dense {n_rows} x {n_cols} "
                    f"({gb:.1f} GB) and every iteration costs O(n q^2) = {n_rows * n_cols ** 2 / 1e12:.1f} "
                    f"TFLOP (limit --statsmodels-max-gb {a.statsmodels_max_gb})"))]
                log(f"{name}: statsmodels skipped ({gb:.1f} GB dense design)")
                continue
        runs = []
        for i in range(a.peer_repeats):
            log(f"{name}: {peer} run {i + 1}/{a.peer_repeats}")
            runs.append(run_proc([sys.executable, __file__, "--worker", peer, name, str(csv), "--nfits",
                                  str(a.nfits)], a.peer_timeout, env=env_with(XLA_FLAGS=a.xla_flags or None)))
        res[peer] = runs
    return res


def _min(runs, key):
    vals = [r[key] for r in runs if r.get("ok") and r.get(key) is not None]
    return min(vals) if vals else None


def _fmt(x, nd=3):
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _loads(runs):
    return ", ".join(r["load"].split("load average:")[-1].split(",")[0].strip() for r in runs if "load" in r)


def tables(results: dict) -> str:
    out = []
    for pr in results["problems"]:
        ref = next((r for r in pr.get("lme4", []) if r.get("ok")), None)
        ref_ll = ref["loglik"] if ref else None
        out.append(f"### {pr['problem']}: `{pr['formula']}` (REML, {pr['data']['rows']} rows)\n")
        out.append("| tool | what is timed | seconds (min) | runs | load (1-min) at start | REML log-lik | "
                   "REML criterion | log-lik − lme4 | notes |")
        out.append("|---|---|---:|---:|---|---:|---:|---:|---|")

        def row(tool, what, secs, runs, ll=None, note=""):
            diff = None if (ll is None or ref_ll is None) else ll - ref_ll
            out.append(f"| {tool} | {what} | {_fmt(secs)} | {sum(1 for r in runs if r.get('ok'))}/{len(runs)} | "
                       f"{_loads(runs)} | {_fmt(ll, 4)} | {_fmt(None if ll is None else -2 * ll, 4)} | "
                       f"{'—' if diff is None else f'{diff:.2e}'} | {note} |")

        def err(runs):
            bad = [r for r in runs if not r.get("ok")]
            # the last line of a traceback says what went wrong
            return ("; ".join(sorted({r.get("error", "").split(" | ")[-1].strip()[:300] for r in bad}))) if bad else ""

        def conv(runs):
            notok = sorted({r.get("message", "not converged") for r in runs if r.get("ok") and not r.get("converged", True)})
            return ("**NOT converged: " + "; ".join(notok) + "**; ") if notok else ""

        runs = pr.get("lme4", [])
        if runs:
            ll = ref_ll
            row("lme4 " + (ref or {}).get("lme4_version", ""), "Rscript process (R start, library(lme4), read.csv, lmer)",
                _min(runs, "process_seconds"), runs, ll, err(runs))
            row("lme4", "lmer() call alone (R system.time)", _min(runs, "lmer_seconds"), runs, ll,
                f"library(lme4) {_fmt(_min(runs, 'library_seconds'))} s")
        for v in pr.get("jaxmix_variants", []):
            env = "" if v["env"] == "default" else f" [{v['env']}]"
            runs = v.get("in_process", [])
            ok = [r for r in runs if r.get("ok")]
            ll = ok[0]["loglik"] if ok else None
            first = [r["fits"][0] for r in ok]
            warm = [f for r in ok for f in r["fits"][1:]]
            if first and runs[0].get("ok"):
                f0 = runs[0]["fits"][0]
                row("jaxmix" + env, "in-process 1st fit, empty persistent cache (repeat 1)", f0["wall_seconds"],
                    runs[:1], ll, conv(runs) + f"compile {f0['compile_seconds']:.3f} s of fit {f0['fit_seconds']:.3f} s; "
                    f"{f0['iterations']} iterations, {f0['evaluations']} evaluations")
            later = [r["fits"][0] for r in runs[1:] if r.get("ok")]
            if later:
                f0 = min(later, key=lambda f: f["wall_seconds"])
                row("jaxmix" + env, "in-process 1st fit, persistent cache warm (repeats 2+)", f0["wall_seconds"],
                    runs[1:], ll, f"compile {f0['compile_seconds']:.3f} s of fit {f0['fit_seconds']:.3f} s")
            if warm:
                fw = min(warm, key=lambda f: f["wall_seconds"])
                row("jaxmix" + env, "in-process warm fit (2nd in the process)", fw["wall_seconds"], runs, ll,
                    f"compile {fw['compile_seconds']:.4f} s of fit {fw['fit_seconds']:.3f} s")
            row("jaxmix" + env, f"whole worker process (import, read, {len(ok[0]['fits']) if ok else '?'} fits)",
                _min(runs, "process_seconds"), runs, ll, err(runs))
            for key, what in (("cold_process", "`python -c` process, empty JAXMIX_CACHE_DIR (cold)"),
                              ("warmcache_process", "`python -c` process, persistent cache warm")):
                runs = v.get(key, [])
                if runs:
                    ok2 = [r for r in runs if r.get("ok")]
                    cv = conv(runs)
                    ll2 = ok2[0]["loglik"] if ok2 else None
                    best = min(ok2, key=lambda r: r["process_seconds"]) if ok2 else None
                    note = cv + (f"in-process: compile {best['compile_seconds']:.3f} s of fit {best['fit_seconds']:.3f} s"
                                 if best else "") + ("; " + err(runs) if err(runs) else "")
                    row("jaxmix" + env, what, _min(runs, "process_seconds"), runs, ll2, note)
        runs = pr.get("import_only", [])
        if runs:
            row("python", "`python -c \"import jaxmix\"` (floor of any process)", _min(runs, "process_seconds"), runs)
        for peer in ("statsmodels", "glmm", "bossanova"):
            runs = pr.get(peer)
            if not runs:
                continue
            ok = [r for r in runs if r.get("ok")]
            ll = ok[0]["loglik"] if ok else None
            if ok:
                first = min(r["fits"][0]["wall_seconds"] for r in ok)
                warm = [f["wall_seconds"] for r in ok for f in r["fits"][1:]]
                ver = ok[0].get("version", "")
                row(f"{peer} {ver}", "in-process 1st fit", first, runs, ll, conv(runs))
                if warm:
                    row(peer, "in-process 2nd fit", min(warm), runs, ll, "")
                row(peer, "whole process", _min(runs, "process_seconds"), runs, ll, err(runs))
            else:
                row(peer, "—", None, runs, None, err(runs))
        out.append("")
    return "\n".join(out)


def machine() -> dict:
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception as exc:  # pragma: no cover
            return f"error: {exc}"

    return dict(date=sh("date"), nproc=sh("nproc"), cpu=sh("lscpu | grep 'Model name'"),
                ram=sh("free -h | awk '/Mem:/ {print $2}'"), python=platform.python_version(),
                R=sh("Rscript -e 'cat(R.version.string)'"), uptime_start=uptime(),
                git_head=sh(f"git -C {REPO} log -1 --format='%h %cd %s'"),
                jaxmix_uncommitted=sh(f"git -C {REPO} status --short -- jaxmix"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--worker", nargs=3, metavar=("TOOL", "PROBLEM", "CSV"), help=argparse.SUPPRESS)
    ap.add_argument("--nfits", type=int, default=2, help="fits per worker process (1st = cold-ish, rest warm)")
    ap.add_argument("--problems", default="sleepstudy,crossed")
    ap.add_argument("--peers", default="statsmodels,glmm,bossanova", help="comma list, or 'none'")
    ap.add_argument("--students", type=int, default=2972)
    ap.add_argument("--lecturers", type=int, default=1128)
    ap.add_argument("--depts", type=int, default=14)
    ap.add_argument("--mean-ratings", type=float, default=24.7)
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--repeats", type=int, default=2, help="repeats of the jaxmix and lme4 timings")
    ap.add_argument("--peer-repeats", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per subprocess")
    ap.add_argument("--peer-timeout", type=float, default=900.0, help="seconds per peer subprocess")
    ap.add_argument("--statsmodels-max-gb", type=float, default=1.0,
                    help="skip statsmodels on the crossed model above this dense design size")
    ap.add_argument("--cold-crossed", action="store_true", help="also time cold processes on crossed")
    ap.add_argument("--xla-flags", default=None, help="XLA_FLAGS for the Python tools' processes")
    ap.add_argument("--jaxmix-envs", default="default;PJRT_NPROC=1,OPENBLAS_NUM_THREADS=1",
                    help="';'-separated environment variants for the jaxmix runs ('default' = as is)")
    ap.add_argument("--hang-timeout", type=float, default=420.0,
                    help="timeout for jaxmix on the crossed model in the default environment, where jaxlib "
                         "0.10.2's batched LAPACK kernels can deadlock on a 2-thread pool")
    ap.add_argument("--out", default=str(WORK / "results.json"))
    ap.add_argument("--tables-from", metavar="JSON", help="only print the tables of an earlier results file")
    a = ap.parse_args(argv)

    if a.tables_from:
        print(tables(json.loads(Path(a.tables_from).read_text())))
        return

    if a.worker:
        tool, problem, csv = a.worker
        _emit(WORKERS[tool](problem, csv, a.nfits))
        return

    a.peers = [] if a.peers == "none" else [p for p in a.peers.split(",") if p]
    a.jaxmix_envs = [v for v in a.jaxmix_envs.split(";") if v]
    WORK.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}  ({uptime().split('load average:')[-1].strip()})",
              flush=True)

    results = dict(machine=machine(), argv=sys.argv, command="python " + " ".join(sys.argv), problems=[])
    for name in [p for p in a.problems.split(",") if p]:
        if name == "sleepstudy":
            import pandas as pd

            from jaxmix.datasets import sleepstudy

            df = sleepstudy()
            csv = write_csv(df, WORK / "sleepstudy.csv")
            info = dict(rows=len(df), subjects=int(df.Subject.nunique()))
        else:
            df = simulate(a.students, a.lecturers, a.depts, a.mean_ratings, a.seed)
            csv = write_csv(df, WORK / f"crossed_{a.students}_{a.lecturers}_{a.depts}_{a.seed}.csv")
            info = describe(df)
            a._crossed_shape = (len(df), info["s"] + info["d"] + info["dept"])
        log(f"{name}: data {info}")
        pr = bench_problem(name, csv, a, log)
        pr["data"] = info
        results["problems"].append(pr)
        Path(a.out).write_text(json.dumps(results, indent=1, default=float))
    results["machine"]["uptime_end"] = uptime()
    results["total_seconds"] = time.perf_counter() - t_start
    Path(a.out).write_text(json.dumps(results, indent=1, default=float))
    md = tables(results)
    (WORK / "tables.md").write_text(md)
    print(md)
    print(f"results: {a.out}; tables: {WORK / 'tables.md'}")


if __name__ == "__main__":
    main()
