"""The audit compare's statistics (benchmarks/paired.py): the window order, the median of
paired ratios with its interval, and the verdict rule. No timing here: the inputs are fixed
numbers, so these pin the arithmetic and the rule, not this machine's speed."""

from __future__ import annotations

import pytest

from benchmarks.paired import (
    OFF,
    ON,
    Summary,
    abba_order,
    median,
    median_interval,
    paired_ratios,
    verdict,
)


def test_abba_pairs_are_adjacent_and_alternate_which_side_goes_first() -> None:
    order = abba_order(4)
    assert [m for _k, m in order] == [OFF, ON, ON, OFF, OFF, ON, ON, OFF]
    assert [k for k, _m in order] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_abba_needs_a_pair() -> None:
    with pytest.raises(ValueError):
        abba_order(0)


def test_paired_ratios_are_on_over_off_per_pair_and_skip_pairs_missing_a_side() -> None:
    assert paired_ratios([2.0, 4.0, None, 0.0, 5.0], [3.0, 4.0, 1.0, 1.0, None]) == [1.5, 1.0]


def test_paired_ratios_refuse_unequal_sides() -> None:
    with pytest.raises(ValueError):
        paired_ratios([1.0, 2.0], [1.0])


def test_median_of_odd_and_even_counts() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        median([])


def test_median_is_not_moved_by_one_disturbed_pair() -> None:
    """The point of the median: a burst of other work that hits one window of one pair."""
    steady = [1.02, 1.04, 1.03, 1.05, 1.01, 1.04, 1.03, 1.02, 1.04, 1.03, 1.05]
    assert median([*steady, 3.0]) == median([*steady, 300.0]) == pytest.approx(1.035)


def test_interval_of_twelve_ratios_is_the_third_to_tenth_order_statistic() -> None:
    """n = 12: P(Bin(12, 1/2) <= 2) = 79/4096, so [x(3), x(10)] covers 96.1% (>= 90%), and
    the next narrower one, [x(4), x(9)], only 85.4%."""
    values = [float(v) for v in range(12, 0, -1)]
    low, high, coverage = median_interval(values, 0.90)
    assert (low, high) == (3.0, 10.0)
    assert coverage == pytest.approx(1 - 2 * 79 / 4096)


def test_interval_of_ten_ratios_covers_at_least_the_level_asked() -> None:
    low, high, coverage = median_interval([float(v) for v in range(1, 11)], 0.90)
    assert (low, high) == (2.0, 9.0)
    assert coverage == pytest.approx(1 - 2 * 11 / 1024)
    narrower = median_interval([float(v) for v in range(1, 11)], 0.85)
    assert narrower[:2] == (3.0, 8.0)


def test_too_few_pairs_give_the_whole_range_and_say_its_smaller_coverage() -> None:
    low, high, coverage = median_interval([1.2, 0.9, 1.0], 0.90)
    assert (low, high) == (0.9, 1.2)
    assert coverage == pytest.approx(0.75)


def test_summary_describes_the_median_change_and_interval_in_percent() -> None:
    summary = Summary.of([1.05, 0.98, 1.02, 1.10, 1.01])
    assert summary is not None
    assert summary.median == 1.02
    assert summary.describe() == "+2.0% [-2.0%, +10.0%]"
    assert Summary.of([]) is None


def _cpu(*ratios: float) -> Summary:
    summary = Summary.of(list(ratios))
    assert summary is not None
    return summary


def _verdict(cpu: Summary | None, **kw: int) -> tuple[bool, str]:
    args = {"errors": 0, "events_written": 100, "events_expected": 100, "events_off": 0}
    return verdict(cpu, target=0.10, **{**args, **kw})


def test_met_when_the_median_cpu_ratio_is_at_most_one_plus_the_target() -> None:
    assert _verdict(_cpu(1.02, 1.10, 1.30))[0]  # median 1.10: the boundary is met
    met, reason = _verdict(_cpu(1.02, 1.11, 1.30))
    assert not met and "1.110 > 1.10" in reason


def test_an_outlying_pair_does_not_decide() -> None:
    assert _verdict(_cpu(1.01, 1.03, 1.04, 1.02, 1.9))[0]


def test_errors_fail_the_verdict_whatever_the_cpu() -> None:
    met, reason = _verdict(_cpu(1.0, 1.0, 1.0), errors=3)
    assert not met and "3 failed" in reason


def test_a_trail_that_wrote_fewer_events_than_reads_measured_nothing() -> None:
    met, reason = _verdict(_cpu(1.0, 1.0, 1.0), events_written=99)
    assert not met and "not measured" in reason
    met, reason = _verdict(_cpu(1.0, 1.0, 1.0), events_written=0, events_expected=0)
    assert not met and "no reads" in reason


def test_a_trail_off_server_that_wrote_events_was_not_off() -> None:
    met, reason = _verdict(_cpu(1.0, 1.0, 1.0), events_off=5)
    assert not met and "not off" in reason


def test_no_cpu_samples_is_no_verdict() -> None:
    assert not _verdict(None)[0]
