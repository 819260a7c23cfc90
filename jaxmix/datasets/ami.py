"""Simulated acute myocardial infarction (AMI) study: patients in physicians in hospitals.

The design follows the classic comparison of hierarchical and "traditional" single-level logistic
regression for AMI outcomes (Austin, Tu & Alter 2003, Am Heart J 145:27): patients treated by
physicians who practise in hospitals, patient, physician and hospital characteristics, and nine binary
endpoints.  Every endpoint is drawn from its own three-level logistic model

    logit P(yᵢ = 1) = x_i′β_e + u_hospital(i) + v_physician(i),   u ~ N(0, σ_h,e²),  v ~ N(0, σ_p,e²),

with the coefficients β_e and standard deviations in :data:`AMI_ENDPOINTS`, so the "true" model of
each endpoint is exactly ``(1 | hospital) + (1 | physician)`` with the covariates below.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["simulate_ami", "AMI_ENDPOINTS", "AMI_COVARIATES", "AMI_FORMULA"]

#: Covariates in the order of the coefficient rows of :data:`AMI_ENDPOINTS` (after the intercept).
AMI_COVARIATES = ("age10", "female", "diabetes", "shock", "cardiologist", "volume", "teaching", "rural")

#: The three-level model of every endpoint (the response is left out: one formula for all nine).
AMI_FORMULA = ("~ age10 + female + diabetes + shock + cardiologist + volume + teaching + rural"
               " + (1 | hospital) + (1 | physician)")

_COLUMNS = ("intercept",) + AMI_COVARIATES + ("sd_physician", "sd_hospital", "missing")

#: endpoint -> (intercept, coefficients of AMI_COVARIATES, physician SD, hospital SD, share missing).
#: death30 and death1y are complete; the others miss a few per cent of patients at random.
AMI_ENDPOINTS: dict[str, tuple[float, ...]] = {
    #                int    age10  female diab   shock  card   vol    teach  rural  sd_p  sd_h  miss
    "death30":      (-2.40, 0.55, 0.10, 0.25, 1.60, -0.06, -0.05, -0.06, 0.10, 0.10, 0.15, 0.00),
    "death1y":      (-1.60, 0.60, 0.05, 0.35, 1.20, -0.05, -0.04, -0.05, 0.08, 0.10, 0.15, 0.00),
    "reinfarction": (-3.00, 0.10, 0.05, 0.20, 0.40, -0.08, -0.03, 0.00, 0.05, 0.15, 0.20, 0.03),
    "readmit_hf":   (-2.60, 0.35, 0.10, 0.40, 0.50, -0.10, -0.02, 0.04, 0.08, 0.15, 0.20, 0.04),
    "readmit_ami":  (-2.90, 0.10, -0.05, 0.20, 0.20, -0.05, -0.04, 0.03, 0.10, 0.15, 0.20, 0.04),
    "betablocker":  (1.20, -0.15, -0.05, 0.05, -0.60, 0.25, 0.08, 0.12, -0.10, 0.35, 0.45, 0.03),
    "aspirin":      (1.90, -0.10, -0.05, 0.05, -0.40, 0.20, 0.05, 0.10, -0.08, 0.30, 0.40, 0.02),
    "acei":         (0.00, -0.05, -0.05, 0.40, -0.30, 0.15, 0.06, 0.08, -0.12, 0.30, 0.40, 0.03),
    "cath":         (-0.40, -0.45, -0.20, -0.10, 0.30, 0.35, 0.10, 0.40, -0.60, 0.35, 0.60, 0.05),
}


def _allocate(n_items: int, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Owner of each of ``n_items`` items: every owner gets one, the rest go with probability ∝ weights."""
    k = weights.shape[0]
    extra = rng.choice(k, size=n_items - k, p=weights / weights.sum())
    return np.sort(np.concatenate([np.arange(k), extra]))


def simulate_ami(n_patients: int = 100_000, seed: int = 0, n_physicians: int | None = None,
                 n_hospitals: int | None = None) -> pd.DataFrame:
    """Simulated AMI patients in physicians in hospitals with nine binary endpoints (Austin et al. 2003).

    Args:
      n_patients: number of patients (rows); default 100,000.
      seed: the same seed always gives the same table.
      n_physicians: default ``n_patients / 50`` (2,000 for 100,000 patients), at least 2.
      n_hospitals: default ``n_physicians / 12`` (167 for 2,000 physicians), at least 2.

    Returns:
      One row per patient with columns ``patient``; ``hospital`` (``"H001"`` ...) with its ``teaching``
      and ``rural`` indicators; ``physician`` (``"P00001"`` ..., each in one hospital) with
      ``cardiologist`` and ``volume`` (standardised log of the physician's number of patients);
      patient ``age`` (years), ``age10`` (= (age − 65)/10, the scale the models use), ``female``,
      ``diabetes``, ``shock``; and the endpoints ``death30, death1y, reinfarction, readmit_hf,
      readmit_ami, betablocker, aspirin, acei, cath`` (1.0/0.0, NaN where missing).  Coefficients and
      variances: :data:`AMI_ENDPOINTS`.
    """
    from ..errors import JaxmixError

    n = int(n_patients)
    n_phys = max(2, round(n / 50)) if n_physicians is None else int(n_physicians)
    n_hosp = max(2, round(n_phys / 12)) if n_hospitals is None else int(n_hospitals)
    if n_hosp < 2 or n_phys < n_hosp or n < n_phys:
        raise JaxmixError("simulate_ami needs n_patients >= n_physicians >= n_hospitals >= 2, got "
                          f"{n} patients, {n_phys} physicians, {n_hosp} hospitals")
    rng = np.random.default_rng(seed)
    # hospitals and their characteristics (teaching hospitals are urban)
    hosp_w = rng.lognormal(0.0, 0.6, n_hosp)
    teaching = (rng.random(n_hosp) < 0.25).astype(float)
    rural = ((rng.random(n_hosp) < 0.35) & (teaching == 0)).astype(float)
    # physicians, each practising in one hospital
    phys_hosp = _allocate(n_phys, hosp_w, rng)
    phys_w = rng.lognormal(0.0, 0.5, n_phys) * hosp_w[phys_hosp]
    cardiologist = (rng.random(n_phys) < np.where(teaching[phys_hosp] > 0, 0.6, 0.4)).astype(float)
    # patients, each treated by one physician; volume = standardised log of the physician's caseload
    pat_phys = _allocate(n, phys_w, rng)
    logvol = np.log(np.bincount(pat_phys, minlength=n_phys))
    volume = (logvol - logvol.mean()) / (logvol.std() if logvol.std() > 0 else 1.0)
    pat_hosp = phys_hosp[pat_phys]
    age = np.clip(rng.normal(68.0, 12.0, n), 30.0, 100.0).round(0)
    frame = {
        "patient": np.arange(1, n + 1),
        "hospital": np.char.add("H", np.char.zfill((pat_hosp + 1).astype(str), 3)),
        "physician": np.char.add("P", np.char.zfill((pat_phys + 1).astype(str), 5)),
        "age": age,
        "age10": (age - 65.0) / 10.0,
        "female": (rng.random(n) < 0.38).astype(float),
        "diabetes": (rng.random(n) < 0.25).astype(float),
        "shock": (rng.random(n) < 0.05).astype(float),
        "cardiologist": cardiologist[pat_phys],
        "volume": volume[pat_phys],
        "teaching": teaching[pat_hosp],
        "rural": rural[pat_hosp],
    }
    X = np.column_stack([np.ones(n)] + [frame[c] for c in AMI_COVARIATES])
    for name, row in AMI_ENDPOINTS.items():
        par = dict(zip(_COLUMNS, row))
        beta = np.asarray(row[: 1 + len(AMI_COVARIATES)])
        u_h = rng.normal(0.0, par["sd_hospital"], n_hosp)
        u_p = rng.normal(0.0, par["sd_physician"], n_phys)
        eta = X @ beta + u_h[pat_hosp] + u_p[pat_phys]
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
        if par["missing"] > 0:
            y[rng.random(n) < par["missing"]] = np.nan
        frame[name] = y
    return pd.DataFrame(frame)
