"""Many outcomes at once: jaxmix.fit_many against lme4 loops, and how a sweep's time grows.

Parts (each measured side by side in one run; whole-process times include starting Python or R,
reading the data, compiling and fitting):

  a   nine AMI endpoints (simulate_ami, three-level logistic): one fit_many vs nine sequential glmer
  b   1,000 Gaussian outcomes on one random-slope design (50 groups x 20 rows): fit_many vs lme4 refit()
  b1k the 1,000-outcome Gaussian sweep of part b in fresh processes, each with an empty compilation
      cache: first call (import and data excluded), second call, compile seconds, programs compiled,
      calls of the objective program, points per outcome, and logLik against jaxmix.fit alone
  c   scaling of a Gaussian sweep with the number of outcomes (1, 10, 100, 1000) and with n
  gpu the prepared GPU run (benchmarks/gpu.sh): nine endpoints on --n-patients and a --gaussian-outcomes
      sweep, in float64 and float32, one table

Usage::

    python benchmarks/bench_sweep.py a --n-patients 100000
    python benchmarks/bench_sweep.py b c
    python benchmarks/bench_sweep.py b1k --repeats 5
    python benchmarks/bench_sweep.py gpu --n-patients 1000000 --gaussian-outcomes 10000

Results are printed and written as JSON to benchmarks/_work/bench_sweep_<part>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
REPO = HERE.parent
ENDPOINTS = ["death30", "death1y", "reinfarction", "readmit_hf", "readmit_ami", "betablocker", "aspirin", "acei",
             "cath"]
COVARIATES = "age10 + female + diabetes + shock + cardiologist + volume + teaching + rural"

R_GLMER = r"""
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
t0 <- proc.time()[["elapsed"]]
d <- read.csv(args[1])
eps <- strsplit(args[2], ",")[[1]]
out <- list(); times <- c()
for (ep in eps) {
  t1 <- proc.time()[["elapsed"]]
  f <- as.formula(paste(ep, "~ @COVARIATES@ + (1 | hospital) + (1 | physician)"))
  m <- glmer(f, data = d, family = binomial)
  times <- c(times, proc.time()[["elapsed"]] - t1)
  cf <- summary(m)$coefficients
  out[[ep]] <- data.frame(outcome = ep, term = rownames(cf), estimate = cf[, 1], se = cf[, 2],
                          loglik = as.numeric(logLik(m)))
}
write.csv(do.call(rbind, out), args[3], row.names = FALSE)
cat(sprintf("fit_seconds %s\n", paste(round(times, 2), collapse = ",")))
cat(sprintf("total_seconds %.2f\n", proc.time()[["elapsed"]] - t0))
""".replace("@COVARIATES@", COVARIATES)

R_REFIT = r"""
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
t0 <- proc.time()[["elapsed"]]
d <- read.csv(args[1]); Y <- as.matrix(read.csv(args[2]))
d$y <- Y[, 1]
m <- lmer(y ~ x + (x | g), data = d, REML = TRUE)
t1 <- proc.time()[["elapsed"]]
est <- matrix(NA, ncol(Y), 3); th <- matrix(NA, ncol(Y), 3)
for (j in seq_len(ncol(Y))) {
  mj <- refit(m, newresp = Y[, j])
  est[j, ] <- c(fixef(mj), sqrt(diag(as.matrix(vcov(mj))))[2]); th[j, ] <- getME(mj, "theta")
}
loop <- proc.time()[["elapsed"]] - t1
write.csv(data.frame(b0 = est[, 1], b1 = est[, 2], se_b1 = est[, 3], theta1 = th[, 1], theta2 = th[, 2],
                     theta3 = th[, 3]), args[3], row.names = FALSE)
cat(sprintf("loop_seconds %.2f\n", loop))
cat(sprintf("total_seconds %.2f\n", proc.time()[["elapsed"]] - t0))
"""


def machine() -> dict:
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    import jax

    import jaxmix  # noqa: F401  (before jax.devices(): it splits the CPU when JAXMIX_CPU_DEVICES is set)

    return {"date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "uptime": up,
            "devices": [str(d) for d in jax.devices()]}


def _timed(cmd: list[str], env=None) -> tuple[float, str]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


BLAS_THREADS: str | None = None  # --openblas-threads: OPENBLAS_NUM_THREADS for the jaxmix processes


CPU_DEVICES: str | None = None  # --cpu-devices: JAXMIX_CPU_DEVICES for the jaxmix processes


def _cold_env() -> dict:
    env = dict(os.environ, JAXMIX_CACHE_DIR="off")
    if BLAS_THREADS is not None:
        env["OPENBLAS_NUM_THREADS"] = BLAS_THREADS
    if CPU_DEVICES is not None:
        env["JAXMIX_CPU_DEVICES"] = CPU_DEVICES
    return env


# ---- workers run in their own processes (whole-process timing) --------------------------------
def worker_ami(csv: str, out: str, dtype: str = "float64") -> None:
    import warnings

    import pandas as pd

    import jaxmix

    t0 = time.perf_counter()
    d = pd.read_csv(csv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sw = jaxmix.fit_many(f"~ {COVARIATES} + (1 | hospital) + (1 | physician)", d, outcomes=ENDPOINTS,
                             family="binomial", dtype=dtype)
    tidy = sw.to_frame()
    tidy["loglik"] = np.repeat(sw.loglik.to_numpy(), len(sw.x_names))
    tidy.to_csv(out, index=False)
    print(json.dumps({"compile_seconds": sw.compile_seconds, "run_seconds": sw.run_seconds,
                      "sweep_seconds": sw.seconds, "total_seconds": time.perf_counter() - t0,
                      "converged": int(sw.converged.sum()),
                      "evaluations": {n: sw[n].optim.evaluations for n in sw.names}}))


def worker_gauss(csv: str, ycsv: str, out: str, dtype: str = "float64") -> None:
    import warnings

    import pandas as pd

    import jaxmix

    t0 = time.perf_counter()
    d = pd.read_csv(csv)
    Y = pd.read_csv(ycsv).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sw = jaxmix.fit_many("~ x + (x | g)", d, Y=Y, dtype=dtype)
    se = sw.se.to_numpy()
    pd.DataFrame({"b0": sw.beta[:, 0], "b1": sw.beta[:, 1], "se_b1": se[:, 1], "theta1": sw.theta_[:, 0],
                  "theta2": sw.theta_[:, 1], "theta3": sw.theta_[:, 2], "status": sw.status_}).to_csv(out, index=False)
    print(json.dumps({"compile_seconds": sw.compile_seconds, "run_seconds": sw.run_seconds,
                      "sweep_seconds": sw.seconds, "total_seconds": time.perf_counter() - t0,
                      "converged": int(sw.converged.sum())}))


def worker_first(check: str = "20", jitter: str = "0") -> None:
    """Part b1k in this process: the first and the second call of a 1,000-outcome sweep (``jitter`` > 0:
    x + N(0, jitter²) per row, so that no two groups share their Z'Z block)."""
    import warnings

    import jaxmix
    from jaxmix.core import newton
    from jaxmix.fitting import cache

    d, Y = gauss_design(50, 20, 1000)
    if float(jitter):
        d = d.assign(x=d.x + np.random.default_rng(1).normal(0, float(jitter), len(d)))
    calls = []
    counted = newton._Counted.__call__

    def count(self, X, which):
        calls.append(len(X))
        return counted(self, X, which)

    newton._Counted.__call__ = count
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label in ("first", "warm"):
            calls.clear()
            n0 = len(cache._COMPILED)
            t = time.perf_counter()
            sw = jaxmix.fit_many("~ x + (x | g)", d, Y=Y)
            out[label] = {"seconds": time.perf_counter() - t, "compile_seconds": sw.compile_seconds,
                          "programs_compiled": len(cache._COMPILED) - n0, "objective_calls": len(calls),
                          "points_per_outcome": sum(calls) / Y.shape[1], "converged": int(sw.converged.sum())}
        newton._Counted.__call__ = counted
        dll = [abs(jaxmix.fit("y ~ x + (x | g)", d.assign(y=Y[:, j])).loglik - sw.loglik_[j])
               for j in np.linspace(0, Y.shape[1] - 1, int(check)).astype(int)]
    out["max_abs_dloglik_vs_fit"] = float(max(dll)) if dll else None
    print(json.dumps(out))


# ---- data ---------------------------------------------------------------------------------------
def ami_csv(n: int, seed: int = 1) -> Path:
    from jaxmix.datasets import simulate_ami

    path = WORK / f"ami_{n}_{seed}.csv"
    if not path.exists():
        simulate_ami(n, seed=seed).to_csv(path, index=False)
    return path


def gauss_design(groups: int, per: int, k: int, seed: int = 0):
    """Random intercept and slope: y = 250 + 10 x + b0 + b1 x + e, x uniform on 0..9."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = groups * per
    g = np.repeat(np.arange(groups), per)
    x = np.tile(np.arange(per) % 10, groups).astype(float)
    b = rng.multivariate_normal([0, 0], [[600, 10], [10, 35]], size=(k, groups))
    Y = 250 + 10 * x[:, None] + b[:, g, 0].T + b[:, g, 1].T * x[:, None] + rng.normal(0, 25, (n, k))
    return pd.DataFrame({"g": [f"g{i:04d}" for i in g], "x": x}), Y


def gauss_csv(groups: int, per: int, k: int) -> tuple[Path, Path]:
    import pandas as pd

    d, Y = gauss_design(groups, per, k)
    p1, p2 = WORK / f"gauss_{groups}x{per}.csv", WORK / f"gauss_{groups}x{per}_Y{k}.csv"
    d.to_csv(p1, index=False)
    pd.DataFrame(Y, columns=[f"y{j}" for j in range(k)]).to_csv(p2, index=False)
    return p1, p2


# ---- parts --------------------------------------------------------------------------------------
def part_a(n: int, reuse_lme4: str | None = None) -> dict:
    import pandas as pd

    csv = ami_csv(n)
    jx_out, r_out = WORK / "a_jaxmix.csv", WORK / "a_lme4.csv"
    wall_j, out_j = _timed([sys.executable, __file__, "_worker_ami", str(csv), str(jx_out)], env=_cold_env())
    inner = json.loads(out_j.strip().splitlines()[-1])
    warm_env = dict(_cold_env(), JAXMIX_CACHE_DIR=str(WORK / "bench_sweep_cache_a"))
    _timed([sys.executable, __file__, "_worker_ami", str(csv), str(jx_out)], env=warm_env)  # fills the cache
    wall_warm, out_w = _timed([sys.executable, __file__, "_worker_ami", str(csv), str(jx_out)], env=warm_env)
    if reuse_lme4:  # the lme4 side of an earlier run on the same CSV (its a_lme4.csv must still be there)
        old = json.loads(Path(reuse_lme4).read_text())
        assert old["n_patients"] == n
        wall_r, r_fits = old["lme4_process_s"], old["lme4_glmer_s"]
    else:
        rfile = WORK / "a_glmer.R"
        rfile.write_text(R_GLMER)
        wall_r, out_r = _timed(["Rscript", str(rfile), str(csv), ",".join(ENDPOINTS), str(r_out)])
        r_fits = [float(v) for v in out_r.split("fit_seconds ")[1].split()[0].split(",")]
    a, b = pd.read_csv(jx_out), pd.read_csv(r_out)
    b["term"] = b["term"].replace({"(Intercept)": "Intercept"})
    m = a.merge(b, on=["outcome", "term"], suffixes=("_jx", "_r"))
    res = {"part": "a", "n_patients": n, "endpoints": len(ENDPOINTS), "jaxmix_process_s": wall_j,
           "openblas_threads": BLAS_THREADS, "lme4_reused_from": reuse_lme4,
           "jaxmix": inner, "lme4_process_s": wall_r, "lme4_glmer_s": r_fits,
           "jaxmix_process_warm_cache_s": wall_warm, "jaxmix_warm": json.loads(out_w.strip().splitlines()[-1]),
           "speedup_whole_process": wall_r / wall_j, "speedup_whole_process_warm_cache": wall_r / wall_warm,
           "max_abs_diff_estimate": float(np.max(np.abs(m.estimate_jx - m.estimate_r))),
           "max_rel_diff_se": float(np.max(np.abs(m.se_jx / m.se_r - 1))),
           "max_abs_diff_loglik": float(np.max(np.abs(m.loglik_jx - m.loglik_r)))}
    return res


def part_b(groups: int = 50, per: int = 20, k: int = 1000) -> dict:
    import pandas as pd

    p1, p2 = gauss_csv(groups, per, k)
    jx_out, r_out = WORK / "b_jaxmix.csv", WORK / "b_lme4.csv"
    wall_j, out_j = _timed([sys.executable, __file__, "_worker_gauss", str(p1), str(p2), str(jx_out)],
                           env=_cold_env())
    inner = json.loads(out_j.strip().splitlines()[-1])
    warm_env = dict(_cold_env(), JAXMIX_CACHE_DIR=str(WORK / "bench_sweep_cache"))
    _timed([sys.executable, __file__, "_worker_gauss", str(p1), str(p2), str(jx_out)], env=warm_env)  # fills it
    wall_warm, out_w = _timed([sys.executable, __file__, "_worker_gauss", str(p1), str(p2), str(jx_out)],
                              env=warm_env)
    rfile = WORK / "b_refit.R"
    rfile.write_text(R_REFIT)
    wall_r, out_r = _timed(["Rscript", str(rfile), str(p1), str(p2), str(r_out)])
    loop_r = float(out_r.split("loop_seconds ")[1].split()[0])
    a, b = pd.read_csv(jx_out), pd.read_csv(r_out)
    return {"part": "b", "groups": groups, "per_group": per, "outcomes": k, "jaxmix_process_s": wall_j,
            "cpu_devices": CPU_DEVICES, "openblas_threads": BLAS_THREADS,
            "jaxmix": inner, "jaxmix_process_warm_cache_s": wall_warm,
            "jaxmix_warm": json.loads(out_w.strip().splitlines()[-1]),
            "lme4_process_s": wall_r, "lme4_refit_loop_s": loop_r,
            "speedup_whole_process": wall_r / wall_j, "speedup_whole_process_warm_cache": wall_r / wall_warm,
            "speedup_fit_only": loop_r / inner["run_seconds"],
            "max_rel_diff_se_b1": float(np.max(np.abs(a.se_b1 / b.se_b1 - 1))),
            "max_abs_diff_theta": float(np.max(np.abs(a[["theta1", "theta2", "theta3"]].to_numpy()
                                                      - b[["theta1", "theta2", "theta3"]].to_numpy()))),
            "jaxmix_status_counts": {str(k): int(v) for k, v in a.status.value_counts().items()}}


def part_b1k(repeats: int, jitter: float = 0.0) -> dict:
    """Fresh processes, each with an empty compilation cache (JAXMIX_CACHE_DIR=$(mktemp -d))."""
    import tempfile

    runs = []
    for _ in range(repeats):
        env = dict(_cold_env(), JAXMIX_CACHE_DIR=tempfile.mkdtemp(prefix="jaxmix_b1k_"))
        _, out = _timed([sys.executable, __file__, "_worker_first", "20" if not runs else "0", str(jitter)], env=env)
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    summary = {lab: {key: float(np.min([r[lab][key] for r in runs])) if key in ("seconds", "compile_seconds")
                     else runs[0][lab][key] for key in runs[0][lab]} for lab in ("first", "warm")}
    summary["max_abs_dloglik_vs_fit"] = runs[0]["max_abs_dloglik_vs_fit"]
    summary["first_seconds_all"] = [r["first"]["seconds"] for r in runs]
    summary["warm_seconds_all"] = [r["warm"]["seconds"] for r in runs]
    print(json.dumps(summary), flush=True)
    return {"part": "b1k", "jitter": jitter, "runs": runs, "min": summary}


def part_c() -> dict:
    import warnings

    import jaxmix

    rows = []
    d, Y = gauss_design(50, 20, 1000)
    for k in (1, 10, 100, 1000):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sw = jaxmix.fit_many("~ x + (x | g)", d, Y=Y[:, :k])
        rows.append({"outcomes": k, "n": len(d), "compile_s": sw.compile_seconds, "run_s": sw.run_seconds,
                     "total_s": sw.seconds})
        print(rows[-1], flush=True)
    for groups in (50, 500, 5000):
        dd, YY = gauss_design(groups, 20, 10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sw = jaxmix.fit_many("~ x + (x | g)", dd, Y=YY)
        rows.append({"outcomes": 10, "n": len(dd), "compile_s": sw.compile_seconds, "run_s": sw.run_seconds,
                     "total_s": sw.seconds})
        print(rows[-1], flush=True)
    return {"part": "c", "rows": rows}


def part_gpu(n: int, k: int, dtypes: list[str]) -> dict:
    rows = []
    csv = ami_csv(n)
    p1, p2 = gauss_csv(max(50, k // 200), 20, k)
    for dt in dtypes:
        wall, out = _timed([sys.executable, __file__, "_worker_ami", str(csv), str(WORK / f"gpu_ami_{dt}.csv"), dt],
                           env=_cold_env())
        r = json.loads(out.strip().splitlines()[-1])
        rows.append({"job": f"AMI 9 endpoints, n={n}", "dtype": dt, "process_s": wall, **r})
        print(rows[-1], flush=True)
        wall, out = _timed([sys.executable, __file__, "_worker_gauss", str(p1), str(p2),
                            str(WORK / f"gpu_gauss_{dt}.csv"), dt], env=_cold_env())
        r = json.loads(out.strip().splitlines()[-1])
        rows.append({"job": f"Gaussian sweep, {k} outcomes", "dtype": dt, "process_s": wall, **r})
        print(rows[-1], flush=True)
    return {"part": "gpu", "rows": rows}


def _table(rows: list[dict], cols: list[str]) -> str:
    import pandas as pd

    return pd.DataFrame(rows)[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_worker_ami":
        worker_ami(*argv[1:])
        return 0
    if argv and argv[0] == "_worker_first":
        worker_first(*argv[1:])
        return 0
    if argv and argv[0] == "_worker_gauss":
        worker_gauss(*argv[1:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="+", choices=["a", "b", "b1k", "c", "gpu"])
    ap.add_argument("--repeats", type=int, default=5, help="part b1k: fresh processes")
    ap.add_argument("--jitter", type=float, default=0.0, help="part b1k: x + N(0, jitter^2) (unbalanced design)")
    ap.add_argument("--n-patients", type=int, default=100_000)
    ap.add_argument("--gaussian-outcomes", type=int, default=10_000)
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--openblas-threads", help="OPENBLAS_NUM_THREADS for the jaxmix processes")
    ap.add_argument("--cpu-devices", help="JAXMIX_CPU_DEVICES for the jaxmix processes (e.g. 2 or auto)")
    ap.add_argument("--reuse-lme4", metavar="JSON", help="part a: take the lme4 side from an earlier result file")
    a = ap.parse_args(argv)
    global BLAS_THREADS, CPU_DEVICES
    BLAS_THREADS, CPU_DEVICES = a.openblas_threads, a.cpu_devices
    os.environ["JAXMIX_CACHE_DIR"] = "off"  # part c compiles in this process: report cold compiles
    WORK.mkdir(exist_ok=True)
    info = machine()
    print(json.dumps(info), flush=True)
    for part in a.parts:
        if part == "a":
            res = part_a(a.n_patients, a.reuse_lme4)
        elif part == "b":
            res = part_b()
        elif part == "b1k":
            res = part_b1k(a.repeats, a.jitter)
        elif part == "c":
            res = part_c()
        else:
            res = part_gpu(a.n_patients, a.gaussian_outcomes, a.dtypes.split(","))
            print(_table(res["rows"], ["job", "dtype", "process_s", "compile_seconds", "run_seconds", "converged"]))
        res["machine"] = info
        res["command"] = "python benchmarks/bench_sweep.py " + " ".join(argv)
        tag = f"_jitter{a.jitter:g}" if part == "b1k" and a.jitter else ""
        (WORK / f"bench_sweep_{part}{tag}.json").write_text(json.dumps(res, indent=2))
        print(json.dumps(res, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
