"""Why the first fit limits BLAS/LAPACK to one thread: a small triangular solve and Cholesky in a jitted
program, with the BLAS libraries' default threads and with one (threadpoolctl), median of 200 calls.

    python benchmarks/bench_blas_threads.py
"""
from __future__ import annotations

import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

jax.config.update("jax_enable_x64", True)


def median_call(fn, A, reps=200):
    exe = jax.jit(fn).lower(A).compile()
    exe(A).block_until_ready()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        exe(A).block_until_ready()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    print("load", os.getloadavg()[0], [(i["internal_api"], i["num_threads"]) for i in threadpool_info()])
    trsm = lambda A: jax.scipy.linalg.solve_triangular(jnp.tril(A), A, lower=True)  # noqa: E731
    chol = lambda A: jnp.linalg.cholesky(A)  # noqa: E731
    print("| m | trsm default threads | trsm one thread | cholesky default | cholesky one |")
    print("|---|---:|---:|---:|---:|")
    for m in (16, 32, 128, 512):
        A = np.random.default_rng(0).normal(size=(m, m))
        A = A @ A.T + m * np.eye(m)
        t_def, c_def = median_call(trsm, A), median_call(chol, A)
        with threadpool_limits(1, user_api="blas"):
            t_one, c_one = median_call(trsm, A), median_call(chol, A)
        print(f"| {m} | {t_def * 1e6:.0f} µs | {t_one * 1e6:.0f} µs | {c_def * 1e6:.0f} µs | {c_one * 1e6:.0f} µs |")


if __name__ == "__main__":
    main()
