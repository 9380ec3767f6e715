"""Statistics of paired off/on windows: the order of the windows, the median of the paired
ratios with a distribution-free interval, and the verdict rule.

Pure (standard library only), so the unit tests run without the bench extra
(tests/unit/test_bench_paired.py). Why paired ratios: on a shared machine the speed drifts by
tens of percent within minutes, but two adjacent windows a few seconds apart see nearly the
same machine, so each pair's ratio cancels most of the drift; the median then ignores the
few pairs a burst of someone else's work hit on one side only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median  # empty data: StatisticsError, a ValueError

OFF, ON = "off", "on"


def abba_order(pairs: int) -> list[tuple[int, str]]:
    """The windows of `pairs` pairs as (pair index, mode): off on | on off | off on | …

    A B B A blocks: each pair is two adjacent windows, and which side goes first alternates,
    so a steady drift (the machine warming up or calming down) favours neither side."""
    if pairs < 1:
        raise ValueError("at least one pair")
    order: list[tuple[int, str]] = []
    for k in range(pairs):
        first, second = (OFF, ON) if k % 2 == 0 else (ON, OFF)
        order += [(k, first), (k, second)]
    return order


def paired_ratios(off: list[float | None], on: list[float | None]) -> list[float]:
    """on/off of each pair; a pair missing either side (no requests, no CPU sample) or with a
    zero `off` is dropped, never counted as 0 or infinity."""
    if len(off) != len(on):
        raise ValueError(f"{len(off)} off windows against {len(on)} on windows")
    return [b / a for a, b in zip(off, on, strict=True) if a and b is not None]


def _binom_cdf(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) <= k)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def median_interval(values: list[float], level: float = 0.90) -> tuple[float, float, float]:
    """A confidence interval for the median from order statistics: (low, high, coverage).

    The narrowest [x(k), x(n+1-k)] whose coverage 1 - 2 P(Bin(n, 1/2) <= k-1) is at least
    `level` (distribution-free: no assumption about how the ratios are spread; coverage is
    discrete, so it is returned). With too few values for `level` (n <= 4 at 90%), the
    full range and its smaller coverage."""
    if not values:
        raise ValueError("an interval of nothing")
    ordered, n = sorted(values), len(values)
    k = 1
    while k + 1 <= (n + 1) // 2 and 1 - 2 * _binom_cdf(k, n) >= level:
        k += 1
    coverage = 1 - 2 * _binom_cdf(k - 1, n)
    return ordered[k - 1], ordered[n - k], coverage


@dataclass(frozen=True)
class Summary:
    """The paired ratios of one metric in one phase."""

    ratios: tuple[float, ...]
    median: float
    low: float
    high: float
    coverage: float

    @classmethod
    def of(cls, ratios: list[float], level: float = 0.90) -> Summary | None:
        if not ratios:
            return None
        low, high, coverage = median_interval(ratios, level)
        return cls(tuple(ratios), median(ratios), low, high, coverage)

    def describe(self) -> str:
        """e.g. `+3.1% [-1.2%, +6.0%]`: the median change and its interval, in percent."""
        return (
            f"{100 * (self.median - 1):+.1f}% "
            f"[{100 * (self.low - 1):+.1f}%, {100 * (self.high - 1):+.1f}%]"
        )


def verdict(
    cpu: Summary | None,
    *,
    target: float,
    errors: int,
    events_written: int,
    events_expected: int,
    events_off: int,
) -> tuple[bool, str]:
    """Met when the median paired ratio of CPU per request (on/off) is at most 1 + `target`,
    and the measurement measured something: no failed request, the trail-on server wrote at
    least one AuditEvent per read counted in its windows, the trail-off server none.

    CPU per request decides, not throughput: it is what the trail adds to each read (the
    flusher thread and its COPY included), and it moves far less than req/s when other work
    takes the cores (throughput falls with every other process; the CPU a request needs does
    not). Returns (met, the reason in words)."""
    if cpu is None:
        return False, "no pair with CPU samples on both sides"
    if errors:
        return False, f"{errors} failed requests"
    if events_expected <= 0:
        return False, "the trail-on server served no reads in its windows"
    if events_written < events_expected:
        return False, (
            f"the trail-on server wrote {events_written} AuditEvents for "
            f"{events_expected} reads: the trail was not measured"
        )
    if events_off:
        return False, f"the trail-off server wrote {events_off} AuditEvents: it was not off"
    limit = 1 + target
    if cpu.median <= limit:
        return True, f"median CPU/request ratio {cpu.median:.3f} <= {limit:.2f}"
    return False, f"median CPU/request ratio {cpu.median:.3f} > {limit:.2f}"
