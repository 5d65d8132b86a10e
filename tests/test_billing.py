"""The fee rule (billing.fee_for) as a pure function: no app, no HTTP.

Rule: free up to the grace period; otherwise every started increment costs
hourly_rate * increment / 60, summed per full 24 h from check-in (and the
remainder), each day's sum rounded once half-to-even and capped at daily_max.
"""

from datetime import timedelta

import pytest

from billing import CURRENCIES, Tariff, fee_for

H = timedelta(hours=1)
M = timedelta(minutes=1)
S = timedelta(seconds=1)
DAY = timedelta(days=1)


def amount(stay, **tariff):
    total, _ = fee_for(stay, Tariff(**tariff))
    return total


def assert_only_ints(value):
    """Every number in a fee result is an int (never a float or Fraction)."""
    if isinstance(value, dict):
        for item in value.values():
            assert_only_ints(item)
    elif isinstance(value, list | tuple):
        for item in value:
            assert_only_ints(item)
    else:
        assert value is None or type(value) in (int, bool, str), (value, type(value))


def test_zero_rate_is_always_free():
    assert amount(5 * H, hourly_rate=0) == 0
    assert amount(30 * DAY + S, hourly_rate=0, billing_increment_minutes=15) == 0


def test_zero_length_stay_is_free():
    assert amount(timedelta(0), hourly_rate=10000) == 0


def test_exactly_at_grace_is_free():
    total, breakdown = fee_for(15 * M, Tariff(hourly_rate=10000, grace_minutes=15))
    assert total == 0
    assert breakdown == [{"period": "grace", "minutes": 15, "amount": 0}]
    # A part of a minute counts as a started minute, as the receipt's duration does.
    one_second = fee_for(timedelta(seconds=1), Tariff(hourly_rate=10000, grace_minutes=15))
    assert one_second == (0, [{"period": "grace", "minutes": 1, "amount": 0}])


def test_one_second_past_grace_pays_from_check_in():
    # Grace is not deducted: the first started increment is charged in full.
    assert amount(15 * M + S, hourly_rate=10000, grace_minutes=15) == 10000
    assert amount(15 * M + timedelta(microseconds=1), hourly_rate=10000, grace_minutes=15) == 10000


def test_exactly_one_increment():
    assert amount(60 * M, hourly_rate=10000) == 10000


def test_one_second_past_an_increment_starts_the_next():
    assert amount(60 * M + S, hourly_rate=10000) == 20000
    assert amount(2 * H + S, hourly_rate=10000) == 30000


def test_any_started_increment_is_charged():
    assert amount(S, hourly_rate=10000) == 10000
    assert amount(timedelta(microseconds=1), hourly_rate=10000) == 10000


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [(1, 2500), (15, 2500), (16, 5000), (45, 7500), (60, 10000), (61, 12500), (90, 15000)],
)
def test_fifteen_minute_increments(minutes, expected):
    assert amount(minutes * M, hourly_rate=10000, billing_increment_minutes=15) == expected


def test_exactly_24_hours_is_one_full_day():
    total, breakdown = fee_for(DAY, Tariff(hourly_rate=10000))
    assert total == 240000
    assert breakdown == [
        {
            "period": "full_day",
            "days": 1,
            "increments_per_day": 24,
            "amount_per_day": 240000,
            "capped": False,
            "amount": 240000,
        }
    ]


def test_exactly_24_hours_with_daily_max_is_the_cap():
    assert amount(DAY, hourly_rate=10000, daily_max=150000) == 150000


def test_24_hours_and_one_minute_starts_a_new_day():
    tariff = Tariff(hourly_rate=10000, daily_max=150000)
    total, breakdown = fee_for(DAY + M, tariff)
    assert total == 150000 + 10000
    assert breakdown[1] == {
        "period": "remainder",
        "minutes": 1,
        "increments": 1,
        "capped": False,
        "amount": 10000,
    }
    assert amount(DAY + M, hourly_rate=10000) == 250000


def test_thirty_days():
    assert amount(30 * DAY, hourly_rate=10000) == 30 * 240000
    assert amount(30 * DAY, hourly_rate=10000, daily_max=150000) == 30 * 150000
    total, breakdown = fee_for(30 * DAY + S, Tariff(hourly_rate=10000, daily_max=150000))
    assert total == 30 * 150000 + 10000
    assert breakdown[0]["days"] == 30
    assert breakdown[0]["capped"] is True
    assert breakdown[1]["minutes"] == 1


def test_daily_max_caps_each_day_not_the_whole_stay():
    tariff = {"hourly_rate": 10000, "daily_max": 100000}
    assert amount(5 * H, **tariff) == 50000  # under the cap
    assert amount(10 * H, **tariff) == 100000  # exactly the cap
    assert amount(23 * H, **tariff) == 100000  # capped
    assert amount(25 * H, **tariff) == 100000 + 10000  # the second day starts again
    assert amount(DAY + 15 * H, **tariff) == 200000  # both days capped
    assert amount(48 * H, **tariff) == 200000
    assert amount(3 * DAY + 2 * H, **tariff) == 300000 + 20000


def test_daily_max_zero_makes_parking_free():
    assert amount(3 * H, hourly_rate=10000, daily_max=0) == 0


def test_half_even_rounding_of_a_partial_day():
    # 30-minute increments at 1 minor unit per hour: each increment is exactly 0.5.
    tariff = {"hourly_rate": 1, "billing_increment_minutes": 30}
    assert amount(30 * M, **tariff) == 0  # 0.5 -> 0 (down to even)
    assert amount(90 * M, **tariff) == 2  # 1.5 -> 2 (up to even)
    assert amount(150 * M, **tariff) == 2  # 2.5 -> 2 (down to even)
    assert amount(210 * M, **tariff) == 4  # 3.5 -> 4 (up to even)


def test_rounding_happens_once_per_day_not_per_increment():
    # Three increments of 0.5: per-increment half-even would give 0, ceiling 3.
    assert amount(90 * M, hourly_rate=1, billing_increment_minutes=30) == 2


def test_half_even_rounding_at_the_end_of_a_full_day():
    # 7-minute increments: 206 started per day = 1442 minutes, rate * 1442 / 60.
    # Rate 15: 360.5 per day -> 360; rate 45: 1081.5 per day -> 1082.
    total, breakdown = fee_for(DAY, Tariff(hourly_rate=15, billing_increment_minutes=7))
    assert total == 360
    assert breakdown[0]["increments_per_day"] == 206
    assert amount(DAY, hourly_rate=45, billing_increment_minutes=7) == 1082
    # Each day is rounded on its own: two days are 2 * 360, not round(721.0).
    assert amount(2 * DAY, hourly_rate=15, billing_increment_minutes=7) == 720
    assert amount(2 * DAY, hourly_rate=45, billing_increment_minutes=7) == 2164


def test_rounding_happens_before_the_cap():
    # 1081.5 rounds to 1082, which a cap of 1082 leaves alone and a cap of 1081 trims.
    tariff = {"hourly_rate": 45, "billing_increment_minutes": 7}
    assert amount(DAY, **tariff, daily_max=1082) == 1082
    assert amount(DAY, **tariff, daily_max=1081) == 1081


def test_large_values_are_exact_integers():
    tariff = Tariff(hourly_rate=9_999_999, billing_increment_minutes=7)
    total, breakdown = fee_for(365 * DAY + 10 * H, tariff)
    # Per day 9,999,999 * 1442 / 60 = 240,333,309.3 -> 240,333,309;
    # remainder: 86 increments = 602 min -> 100,333,323.3 -> 100,333,323.
    assert total == 365 * 240_333_309 + 100_333_323 == 87_821_991_108
    assert type(total) is int
    assert_only_ints(breakdown)
    biggest = fee_for(366 * DAY, Tariff(hourly_rate=10_000_000, billing_increment_minutes=1))
    assert biggest[0] == 366 * 24 * 10_000_000 == 87_840_000_000
    assert type(biggest[0]) is int
    assert_only_ints(biggest)


@pytest.mark.parametrize("stay", [timedelta(0), 15 * M, 61 * M + S, DAY, DAY + M, 30 * DAY + 7 * H])
def test_results_never_contain_floats(stay):
    result = fee_for(stay, Tariff(hourly_rate=12345, billing_increment_minutes=15, daily_max=99999))
    assert_only_ints(result)


def test_tariff_of_reads_a_row():
    class Row:
        hourly_rate, billing_increment_minutes, grace_minutes, daily_max = 100, 15, 5, 900

    assert Tariff.of(Row) == Tariff(100, 15, 5, 900)


def test_currency_exponents():
    assert CURRENCIES["KES"] == 2
    assert CURRENCIES["USD"] == 2
    assert CURRENCIES["JPY"] == 0
    assert CURRENCIES["KWD"] == 3
    assert "XYZ" not in CURRENCIES
