"""benchmarks.stats against textbook values, closed forms and numbers computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks import stats


# ----------------------------------------------------------------------------------------- t distribution
@pytest.mark.parametrize(
    "p, df, expected",
    [  # two-sided 95%, 90% and 99% critical values and an 80% quantile from a t table
        (0.975, 1, 12.7062), (0.975, 2, 4.3027), (0.975, 4, 2.7764), (0.975, 5, 2.5706), (0.975, 9, 2.2622),
        (0.975, 30, 2.0423), (0.95, 10, 1.8125), (0.995, 5, 4.0321), (0.80, 2, 1.0607), (0.80, 20, 0.8600),
    ],
)
def test_t_quantiles_match_the_table(p: float, df: int, expected: float) -> None:
    assert stats.t_ppf(p, df) == pytest.approx(expected, abs=5e-5)
    assert stats.t_ppf(1 - p, df) == pytest.approx(-expected, abs=5e-5)  # symmetric
    assert stats.t_cdf(stats.t_ppf(p, df), df) == pytest.approx(p, abs=1e-12)


def test_t_cdf_closed_forms() -> None:
    """df = 1 is the Cauchy distribution (F(t) = 1/2 + atan(t)/π); df = 2 has F(t) = 1/2 + t / (2 √(2 + t²))."""
    for t in (-30.0, -2.0, -0.3, 0.0, 0.7, 1.0, 5.0):
        assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-13)
        assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-13)
    assert stats.t_cdf(math.inf, 3) == 1.0 and stats.t_cdf(-math.inf, 3) == 0.0


def test_incomplete_beta_closed_forms() -> None:
    for x in (0.0, 0.01, 0.3, 0.5, 0.9, 1.0):
        assert stats.betainc(1, 1, x) == pytest.approx(x, abs=1e-14)
        assert stats.betainc(3.5, 1, x) == pytest.approx(x**3.5, abs=1e-14)
        assert stats.betainc(1, 2.5, x) == pytest.approx(1 - (1 - x) ** 2.5, abs=1e-14)
        assert stats.betainc(2, 3, x) == pytest.approx(1 - stats.betainc(3, 2, 1 - x), abs=1e-14)
    assert stats.betainc(7.3, 7.3, 0.5) == pytest.approx(0.5, abs=1e-14)
    with pytest.raises(ValueError):
        stats.betainc(1, 1, 1.5)


def test_t_distribution_agrees_with_scipy() -> None:
    sp = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 7, 40, 500):
        for p in (0.6, 0.8, 0.9, 0.975, 0.999):
            assert stats.t_ppf(p, df) == pytest.approx(sp.t.ppf(p, df), rel=1e-10)
        for t in (-8.0, -1.5, 0.2, 3.0):  # the smaller tail to 1e-10 of itself
            tail = min(sp.t.cdf(t, df), sp.t.sf(t, df))
            assert stats.t_cdf(t, df) == pytest.approx(sp.t.cdf(t, df), abs=1e-10 * tail)


# ----------------------------------------------------------------------------------------- intervals, tests
def test_mean_ci_by_hand() -> None:
    """(1, 2, 3): mean 2, s = 1, half-width t_{0.975,2} / √3 = 4.302653 / 1.732051 = 2.484138."""
    mean, lo, hi = stats.mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and lo == pytest.approx(2 - 2.484138, abs=1e-6) and hi == pytest.approx(2 + 2.484138, abs=1e-6)
    assert stats.mean_ci([1.0, None, 3.0, float("nan")])[0] == 2.0  # missing values left out
    m1, lo1, hi1 = stats.mean_ci([4.0])
    assert m1 == 4.0 and math.isnan(lo1) and math.isnan(hi1)


def test_the_95_percent_interval_covers_the_mean_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(12345)
    for n in (2, 3, 6):
        samples = rng.normal(3.0, 2.0, size=(4000, n))
        covered = [lo <= 3.0 <= hi for _, lo, hi in map(stats.mean_ci, samples)]
        # binomial SD of the coverage over 4000 intervals: 0.0034
        assert np.mean(covered) == pytest.approx(0.95, abs=0.012), n


def test_paired_log_ratio_by_hand() -> None:
    """Log ratios -1, -2, -3: mean -2, s_d = 1, t = -2√3 with 2 df; p from the df = 2 closed form, the
    interval exp(-2 ± 4.302653/√3)."""
    b = np.array([1.0, 2.0, 4.0])
    a = b * np.exp([-1.0, -2.0, -3.0])
    c = stats.paired_log_ratio(a, b)
    t = -2 * math.sqrt(3)
    p = 2 * (0.5 + t / (2 * math.sqrt(2 + t * t)))
    assert c.n == 3 and c.sd_log == pytest.approx(1.0)
    assert c.ratio == pytest.approx(math.exp(-2)) and c.p == pytest.approx(p, rel=1e-10)
    assert p == pytest.approx(0.07418, abs=1e-5)
    assert c.lo == pytest.approx(math.exp(-2 - 2.484138), rel=1e-6) and c.hi == pytest.approx(math.exp(-2 + 2.484138), rel=1e-6)
    # a missing, zero or negative value drops its pair
    d = stats.paired_log_ratio([*a, None, 0.0, 1.0], [*b, 1.0, 1.0, -1.0])
    assert (d.n, d.ratio, d.p) == (c.n, c.ratio, c.p)
    with pytest.raises(ValueError):
        stats.paired_log_ratio([1.0, 2.0], [1.0])


def test_the_ratio_interval_excludes_1_exactly_when_p_is_below_alpha() -> None:
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(300):
        n = int(rng.integers(2, 8))
        b = rng.lognormal(0, 0.3, n)
        a = b * rng.lognormal(rng.normal(0, 0.15), 0.1, n)
        c = stats.paired_log_ratio(a, b)
        excluded = not (c.lo <= 1.0 <= c.hi)
        assert excluded == (c.p < 0.05), (c, a, b)
        seen.add(excluded)
    assert seen == {True, False}


def test_paired_t_p_degenerate_cases_and_scipy() -> None:
    assert math.isnan(stats.paired_t_p([0.3]))
    assert stats.paired_t_p([0.0, 0.0, 0.0]) == 1.0
    assert stats.paired_t_p([0.2, 0.2, 0.2]) == 0.0  # no spread, not zero: t is infinite
    sp = pytest.importorskip("scipy.stats")
    d = [0.1, -0.05, 0.3, 0.12]
    assert stats.paired_t_p(d) == pytest.approx(sp.ttest_1samp(d, 0.0).pvalue, rel=1e-10)


def test_holm_on_known_vectors() -> None:
    """(0.01, 0.04, 0.03, 0.005): sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 -> 0.06
    (never below the step before)."""
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([0.01, 0.011]) == pytest.approx([0.02, 0.02])  # monotone
    adj = stats.holm([0.02, float("nan"), 0.04])  # NaN stays NaN and is not counted: m = 2
    assert adj[0] == pytest.approx(0.04) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.04)
    assert stats.holm([0.03]) == pytest.approx([0.03])


# ----------------------------------------------------------------------------------------- power, MDE
def test_the_detectable_noncentrality_gives_80_percent_power() -> None:
    """By simulation at n = 3 and 6; the large-n limit is z_{0.975} + z_{0.8} = 2.801585; at small n it is
    larger than the common approximation t_{0.975} + t_{0.8}, which gives less than 80% there."""
    rng = np.random.default_rng(2024)
    for n in (3, 6):
        lam = stats.detectable_noncentrality(n - 1)
        x = rng.normal(size=(200_000, n)) + lam / math.sqrt(n)
        t = x.mean(1) / (x.std(1, ddof=1) / math.sqrt(n))
        assert np.mean(np.abs(t) > stats.t_ppf(0.975, n - 1)) == pytest.approx(0.8, abs=0.004), n  # SD 0.0009
    assert stats.detectable_noncentrality(10_000) == pytest.approx(1.959964 + 0.841621, abs=2e-3)
    assert stats.detectable_noncentrality(2) > stats.t_ppf(0.975, 2) + stats.t_ppf(0.8, 2) + 0.2
    assert stats.t_power(0.0, 4) == pytest.approx(0.05, abs=1e-4)  # no effect: the test's level


def test_power_agrees_with_scipys_noncentral_t() -> None:
    sp = pytest.importorskip("scipy.stats")
    for df in (2, 5, 12):
        for lam in (0.5, 2.0, 4.0):
            tc = sp.t.ppf(0.975, df)
            expected = sp.nct.sf(tc, df, lam) + sp.nct.cdf(-tc, df, lam)
            assert stats.t_power(lam, df) == pytest.approx(expected, abs=2e-6), (df, lam)


def test_mde_formula() -> None:
    lam = stats.detectable_noncentrality(5)
    assert stats.mde(0.1, 6) == pytest.approx(math.expm1(lam * 0.1 / math.sqrt(6)))
    assert stats.mde(0.0, 6) == 0.0
    assert math.isnan(stats.mde(0.1, 1)) and math.isnan(stats.mde(float("nan"), 6))
    assert stats.mde(0.1, 6, alpha=0.05 / 4) > stats.mde(0.1, 6)  # a stricter level needs a larger effect
    assert stats.mde(0.1, 24) < stats.mde(0.1, 6)  # more units resolve less
