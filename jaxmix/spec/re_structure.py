"""Covariance structures of random-effect terms: their own parameters ψ -> lme4's θ (Λ per term).

glmmTMB's structures, for a term with q columns and Ω = σ² ΛΛ′:

=========  =====================  ==========================================================
``us``     ψ = θ (q(q+1)/2)       Λ lower triangular, free (lme4's default)
``diag``   ψ = (λ₁ … λ_q) ≥ 0     Λ = diag(λ): Ω = σ² diag(λ²)
``cs``     ψ = (τ ≥ 0, η)         Λ = τ chol(C), C = (1 − ρ)I + ρJ; ρ = ℓ + (1 − ℓ)·logistic(η),
                                   ℓ = −1/(q − 1) (C positive definite for ρ in (ℓ, 1))
``ar1``    ψ = (τ ≥ 0, η)         Λ = τ chol(C), C_ij = ρ^|i−j|, ρ = tanh(η); chol(C) in closed form:
                                   L_i0 = ρ^i, L_ij = ρ^(i−j) √(1 − ρ²) (1 ≤ j ≤ i)
``none``   ψ = ()                 Λ = 0 (an internal placeholder term of a model without random terms)
=========  =====================  ==========================================================

θ = g(ψ) is Λ's lower triangle column by column, as :mod:`jaxmix.spec.covariance` lays it out, so the LMM
objective (:func:`jaxmix.core.lmm.objective`), the solution and everything downstream stay generic over Λ.
Each structure reports its own parameters (:func:`natural`): ``us`` the variances and covariances,
``diag`` the variances, ``cs``/``ar1`` the variance σ²τ² and the correlation ρ.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from .covariance import theta_layout
from ..errors import JaxmixError

__all__ = ["StructLayout", "struct_layout", "theta_from_psi", "psi_init", "psi_lower", "psi_flips", "psi_scale",
           "natural", "natural_names", "needs_structured_fit", "check_plain_structures",
           "check_plain_terms", "rho_cs", "rho_ar1"]


@dataclass(frozen=True)
class StructLayout:
    """Per term (lme4 order): structure kind and number of columns; ψ's start of each term."""

    kinds: tuple[str, ...]
    q: tuple[int, ...]

    def size_of(self, k: int) -> int:
        kind, qk = self.kinds[k], self.q[k]
        return {"us": qk * (qk + 1) // 2, "diag": qk, "cs": 2, "ar1": 2, "none": 0}[kind]

    @property
    def starts(self) -> tuple[int, ...]:
        out, s = [], 0
        for k in range(len(self.kinds)):
            out.append(s)
            s += self.size_of(k)
        return tuple(out)

    @property
    def size(self) -> int:
        return sum(self.size_of(k) for k in range(len(self.kinds)))


def struct_layout(kinds, q) -> StructLayout:
    """Checks the structures against the columns (cs/ar1 need two or more) and builds the layout."""
    kinds = tuple("us" if (k == "diag" and qk == 1) else k for k, qk in zip(kinds, q))
    for k, qk in zip(kinds, q):
        if k in ("cs", "ar1") and qk < 2:
            raise JaxmixError(f"a {k}(...) random term needs two or more columns (e.g. {k}(0 + f | g) with a "
                              f"factor f); this one has {qk}")
    return StructLayout(kinds, tuple(int(x) for x in q))


def rho_cs(eta, q: int):
    """ρ = ℓ + (1 − ℓ)/(1 + e^(−η)), ℓ = −1/(q − 1)."""
    lo = -1.0 / (q - 1)
    return lo + (1.0 - lo) / (1.0 + jnp.exp(-eta))


def rho_ar1(eta):
    """ρ = tanh η."""
    return jnp.tanh(eta)


def _chol_ar1(rho, q: int):
    pw = jnp.cumprod(jnp.concatenate([jnp.ones((1,), rho.dtype), jnp.full((q - 1,), 1.0, rho.dtype) * rho]))
    i, j = np.tril_indices(q)
    vals = pw[i - j] * jnp.where(j == 0, 1.0, jnp.sqrt(1.0 - rho**2))
    return jnp.zeros((q, q), rho.dtype).at[i, j].set(vals)


def _chol_cs(rho, q: int):
    C = (1.0 - rho) * jnp.eye(q, dtype=rho.dtype) + rho * jnp.ones((q, q), rho.dtype)
    return jnp.linalg.cholesky(C)


def term_lambda(psi_k, kind: str, q: int):
    """Λ of one term from its ψ (jnp, differentiable)."""
    if kind == "us":
        tl = theta_layout((q,))
        return jnp.zeros((q, q), psi_k.dtype).at[np.asarray(tl.rows[0]), np.asarray(tl.cols[0])].set(psi_k)
    if kind == "diag":
        return jnp.diag(psi_k)
    if kind == "cs":
        return psi_k[0] * _chol_cs(rho_cs(psi_k[1], q), q)
    if kind == "ar1":
        return psi_k[0] * _chol_ar1(rho_ar1(psi_k[1]), q)
    if kind == "none":
        return jnp.zeros((q, q), psi_k.dtype)
    raise JaxmixError(f"unknown random-term structure {kind!r}")


def theta_from_psi(psi, sl: StructLayout):
    """θ (lme4's layout: Λ's lower triangle column by column, term after term) from ψ."""
    parts = []
    for k, (kind, qk, s) in enumerate(zip(sl.kinds, sl.q, sl.starts)):
        lam = term_lambda(psi[s : s + sl.size_of(k)], kind, qk)
        tl = theta_layout((qk,))
        parts.append(lam[np.asarray(tl.rows[0]), np.asarray(tl.cols[0])])
    return jnp.concatenate(parts) if parts else jnp.zeros((0,), psi.dtype)


def psi_init(sl: StructLayout) -> np.ndarray:
    """Start: Λ = I (us, diag), τ = 1 and ρ = 0 (cs, ar1)."""
    out = []
    for k, (kind, qk) in enumerate(zip(sl.kinds, sl.q)):
        if kind == "us":
            out.append(theta_layout((qk,)).init())
        elif kind == "diag":
            out.append(np.ones(qk))
        elif kind == "cs":
            out.append(np.array([1.0, float(np.log(1.0 / (qk - 1)))]))  # logistic(η) = 1/q: ρ = 0
        elif kind == "ar1":
            out.append(np.array([1.0, 0.0]))
    return np.concatenate(out) if out else np.zeros(0)


def psi_lower(sl: StructLayout) -> np.ndarray:
    """Lower bounds: 0 for Λ's diagonal (us), λ (diag) and τ (cs, ar1); −inf otherwise."""
    out = []
    for kind, qk in zip(sl.kinds, sl.q):
        if kind == "us":
            out.append(np.where(theta_layout((qk,)).is_diagonal(), 0.0, -np.inf))
        elif kind == "diag":
            out.append(np.zeros(qk))
        elif kind in ("cs", "ar1"):
            out.append(np.array([0.0, -np.inf]))
    return np.concatenate(out) if out else np.zeros(0)


def psi_flips(sl: StructLayout) -> list[tuple[int, tuple[int, ...]]]:
    """The sign symmetries of the unstructured ("us") terms' Λ in ψ (:meth:`ThetaLayout.flips`)."""
    out = []
    for kind, qk, s in zip(sl.kinds, sl.q, sl.starts):
        if kind == "us":
            out += [(s + j, tuple(s + i for i in idx)) for j, idx in theta_layout((qk,)).flips()]
    return out


def psi_scale(rms: list[np.ndarray], sl: StructLayout) -> np.ndarray:
    """c with ψ = c ⊙ ψ̃ (the optimiser's units): 1/sᵢ for the entries of Λ's row i (us, diag), 1/√mean(s²)
    for τ (cs, ar1), 1 for the correlation parameters; sᵢ the root mean square of Z column i."""
    out = []
    for kind, qk, s in zip(sl.kinds, sl.q, rms):
        if kind == "us":
            out.append(1.0 / s[np.asarray(theta_layout((qk,)).rows[0], dtype=int)])
        elif kind == "diag":
            out.append(1.0 / s)
        elif kind in ("cs", "ar1"):
            out.append(np.array([1.0 / np.sqrt(np.mean(s**2)), 1.0]))
    return np.concatenate(out) if out else np.zeros(0)


def natural(psi, sigma2, sl: StructLayout):
    """Each structure's own parameters, term after term (see :func:`natural_names`)."""
    parts = []
    for k, (kind, qk, s) in enumerate(zip(sl.kinds, sl.q, sl.starts)):
        pk = psi[s : s + sl.size_of(k)]
        if kind == "us":
            lam = term_lambda(pk, kind, qk)
            om = sigma2 * lam @ lam.T
            r, c = np.tril_indices(qk, -1)
            order = np.lexsort((r, c))
            parts += [jnp.diagonal(om), om[r[order], c[order]]]
        elif kind == "diag":
            parts.append(sigma2 * pk**2)
        elif kind == "cs":
            parts.append(jnp.stack([sigma2 * pk[0] ** 2, rho_cs(pk[1], qk)]))
        elif kind == "ar1":
            parts.append(jnp.stack([sigma2 * pk[0] ** 2, rho_ar1(pk[1])]))
    return jnp.concatenate(parts) if parts else jnp.zeros((0,))


def natural_names(sl: StructLayout, groups: list[str], columns: list[list[str]]) -> list[tuple]:
    """(group, var1, var2, kind) of each :func:`natural` entry; kind is "variance", "covariance" or "rho"."""
    out = []
    for kind, qk, g, cols in zip(sl.kinds, sl.q, groups, columns):
        if kind == "none":
            continue
        if kind in ("us", "diag"):
            out += [(g, c, None, "variance") for c in cols]
            if kind == "us":
                for j in range(qk):
                    for i in range(j + 1, qk):
                        out.append((g, cols[j], cols[i], "covariance"))
        else:
            out += [(g, f"{kind}({', '.join(cols)})", None, "variance"), (g, "rho", None, "rho")]
    return out


def needs_structured_fit(terms) -> bool:
    """Whether some random term's structure is more than lme4's (cs, ar1, or diag over a factor)."""
    for t in terms:
        s = getattr(t.term, "structure", "us")
        if s in ("cs", "ar1") or (s == "diag" and t.q > 1):
            return True
    return False


def check_plain_structures(parsed, where: str) -> None:
    """A clear error where only lme4's unstructured terms (and diag over numeric columns) are fitted."""
    for t in parsed.random:
        if t.structure in ("cs", "ar1"):
            raise JaxmixError(f"random term {t.text}: {t.structure}(...) structures are fitted (jaxmix.fit, fit_many) for "
                              f"Gaussian models only, not by {where}")


def check_plain_terms(terms, where: str) -> None:
    """As :func:`check_plain_structures`, on built terms (also refuses diag(...) over a factor's columns)."""
    for t in terms:
        s = getattr(t.term, "structure", "us")
        if s in ("cs", "ar1") or (s == "diag" and t.q > 1):
            raise JaxmixError(f"random term {t.term.text}: {s}(...) over {t.q} columns is fitted (jaxmix.fit, fit_many) "
                              f"for Gaussian models only, not by {where}")
