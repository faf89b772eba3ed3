"""Small-sample statistics for the benchmark report, in plain numpy and the standard library.

A report compares strategies over a handful of independent units (a unit is a ``(data_seed, seed)``
pair; a strategy's run is paired with random's run of the same task and unit). What is here:

- :func:`t_cdf`, :func:`t_ppf`: Student's t distribution, through the regularised incomplete beta
  function (:func:`betainc`, a continued fraction as in Numerical Recipes, section 6.4).
- :func:`mean_ci`: mean and two-sided t confidence interval.
- :func:`paired_log_ratio`: a paired comparison on per-unit log ratios ``d_i = log(a_i / b_i)``; the
  ratio is ``exp(mean d)`` (the ratio of the geometric means over the paired units), its confidence
  interval ``exp(mean d ± t_{1-α/2, n-1} s_d / √n)`` (a t interval on the log ratios, back-transformed),
  and the p value that of the two-sided paired t test on the log ratios, so the interval excludes 1
  exactly when p < α.
- :func:`holm`: Holm-Bonferroni adjusted p values over a family of comparisons.
- :func:`t_power`, :func:`mde`: power of the two-sided one-sample t test from the noncentral t
  distribution (numerical integration over the chi distribution of the sample SD), and the minimum
  detectable effect: the relative difference ``exp(λ* s_d / √n) - 1`` that the paired t test on log
  ratios detects with the given power, where ``λ*`` solves ``power(λ, n - 1, α) = 0.8``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_EPS = 1e-15
_FPMIN = 1e-300


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), Numerical Recipes 6.4."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _FPMIN else _FPMIN)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _FPMIN else _FPMIN)
        c = 1.0 + aa / c
        c = c if abs(c) > _FPMIN else _FPMIN
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _FPMIN else _FPMIN)
        c = 1.0 + aa / c
        c = c if abs(c) > _FPMIN else _FPMIN
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function ``I_x(a, b)`` for ``a, b > 0`` and ``0 <= x <= 1``."""
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs 0 <= x <= 1, got {x}")
    if x == 0.0 or x == 1.0:
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):  # the continued fraction converges fast here; use symmetry otherwise
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """``P(T <= t)`` for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    # the two tails together: P(|T| > |t|) = I_{df/(df+t^2)}(df/2, 1/2)
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@lru_cache(maxsize=4096)
def t_ppf(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf`)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return x[np.isfinite(x)]


def mean_ci(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided ``level`` t confidence interval ``mean ± t_{(1+level)/2, n-1} s / √n`` of the
    finite values (None and NaN left out); the interval is NaN with fewer than two values."""
    x = _finite(values)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    half = t_ppf(0.5 + level / 2.0, len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return m, m - half, m + half


def t_half_width(values: np.ndarray, level: float = 0.95, axis: int = 0) -> np.ndarray:
    """Half-width of the ``level`` t confidence interval of the mean along ``axis`` (zeros for one value)."""
    n = values.shape[axis]
    if n < 2:
        return np.zeros(np.delete(values.shape, axis))
    return t_ppf(0.5 + level / 2.0, n - 1) * values.std(axis=axis, ddof=1) / math.sqrt(n)


def paired_t_p(d: Sequence[float] | np.ndarray) -> float:
    """Two-sided p value of the one-sample t test of mean ``d`` = 0 (paired differences); NaN with fewer
    than two differences; 1 where every difference is 0, 0 where they are all equal and not 0."""
    d = _finite(d)
    if len(d) < 2:
        return math.nan
    if np.allclose(d, 0.0, rtol=0.0, atol=1e-12):
        return 1.0
    sd, mean = float(d.std(ddof=1)), float(d.mean())
    if sd <= 1e-12 * abs(mean):  # equal differences, not 0: t is infinite
        return 0.0
    t = mean / (sd / math.sqrt(len(d)))
    return min(1.0, 2.0 * t_cdf(-abs(t), len(d) - 1))


@dataclass(frozen=True)
class Paired:
    """A paired comparison of ``a`` with ``b`` on per-unit log ratios (see :func:`paired_log_ratio`)."""

    n: int  # units with a finite, positive value in both
    ratio: float  # exp(mean log(a/b)): ratio of the geometric means over the paired units
    lo: float  # the confidence interval of that ratio
    hi: float
    p: float  # two-sided paired t test on log(a/b)
    sd_log: float  # SD of the per-unit log ratios (ddof=1)


def paired_log_ratio(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                     level: float = 0.95) -> Paired:
    """Compare paired positive values ``a[i]`` with ``b[i]`` (one pair per unit) on ``log(a/b)``: the
    back-transformed mean and t interval, the paired t test's p value, the SD of the log ratios.

    Pairs where either value is missing, not finite or not positive are left out.
    """
    a = np.asarray([np.nan if v is None else v for v in a], dtype=float)
    b = np.asarray([np.nan if v is None else v for v in b], dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    d = np.log(a[keep]) - np.log(b[keep])
    n = len(d)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    mean, lo, hi = mean_ci(d, level)
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    return Paired(n, math.exp(mean), math.exp(lo) if n > 1 else math.nan, math.exp(hi) if n > 1 else math.nan,
                  paired_t_p(d), sd)


def holm(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p values: the ``i``-th smallest of ``m`` is ``max_{j<=i} min(1,
    (m - j + 1) p_(j))``. NaN entries stay NaN and do not count in ``m``."""
    p = np.asarray([np.nan if v is None else v for v in p], dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def _phi(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF, elementwise."""
    return 0.5 * np.vectorize(math.erfc, otypes=[float])(-np.asarray(x, dtype=float) / math.sqrt(2.0))


@lru_cache(maxsize=256)
def _chi_nodes(df: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (summing to 1) for an expectation over ``S = sqrt(V / df)``, ``V ~ chi2(df)``:
    Simpson's rule on the density ``2 (df/2)^(df/2) s^(df-1) exp(-df s^2 / 2) / Gamma(df/2)``."""
    smax = 1.0 + 12.0 / math.sqrt(df) + (10.0 if df < 3 else 0.0)
    s = np.linspace(0.0, smax, 4001)
    with np.errstate(divide="ignore"):
        log_s = np.log(s)
    power_term = (df - 1.0) * log_s if df != 1.0 else np.zeros(len(s))  # s^0 = 1, at s = 0 too
    g = np.exp(math.log(2.0) + (df / 2.0) * math.log(df / 2.0) + power_term - df * s * s / 2.0
               - math.lgamma(df / 2.0))
    simpson = np.ones(len(s))
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    w = g * simpson
    return s, w / w.sum()


def t_power(effect: float, df: float, alpha: float = 0.05) -> float:
    """Power of the two-sided one-sample t test at level ``alpha`` with ``df`` degrees of freedom when the
    true mean is ``effect`` standard errors from 0 (the noncentrality ``δ √n / σ``):
    ``E_S[Φ(effect - t_c S) + Φ(-t_c S - effect)]``, ``t_c = t_{1-α/2, df}``."""
    tc = t_ppf(1.0 - alpha / 2.0, df)
    s, w = _chi_nodes(float(df))
    return float(np.sum(w * (_phi(effect - tc * s) + _phi(-tc * s - effect))))


@lru_cache(maxsize=256)
def detectable_noncentrality(df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The noncentrality ``λ*`` at which :func:`t_power` reaches ``power`` (bisection)."""
    if not alpha < power < 1.0:
        raise ValueError(f"power must lie between alpha and 1, got {power}")
    lo, hi = 0.0, 1.0
    while t_power(hi, df, alpha) < power:
        lo, hi = hi, 2.0 * hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if t_power(mid, df, alpha) < power:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-7:
            break
    return 0.5 * (lo + hi)


def mde(sd_log: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable effect of a paired comparison on log ratios: the relative difference
    ``exp(λ* sd_log / √n) - 1`` that the two-sided paired t test at level ``alpha`` detects with
    probability ``power`` over ``n`` units, where ``λ*`` is :func:`detectable_noncentrality` of ``n - 1``
    degrees of freedom (a ratio below ``1 / (1 + mde)`` is detected as often). NaN with fewer than two
    units or an unknown SD."""
    if n < 2 or not math.isfinite(sd_log):
        return math.nan
    return math.expm1(detectable_noncentrality(float(n - 1), alpha, power) * sd_log / math.sqrt(n))
