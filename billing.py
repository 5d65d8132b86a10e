"""Money: the parking fee rule, as a pure function, and ISO 4217 currencies.

Amounts are integers in the currency's minor unit (cents, KES cents, yen...),
never floats. Intermediate values are exact fractions; rounding happens once
per day, half-to-even.

The fee rule, for a stay of length D under a tariff
(hourly_rate, billing_increment_minutes, grace_minutes, daily_max):

* D <= grace_minutes: the stay is free.
* Otherwise the stay is cut into full 24-hour periods counted from check-in
  plus the remainder. In each period every *started* increment costs
  hourly_rate * increment / 60; the period's sum is rounded half-to-even to a
  whole minor unit and then capped at daily_max (when the lot has one).
* The fee is the sum over the periods.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

MICROS_PER_MINUTE = 60 * 1_000_000
MICROS_PER_DAY = 24 * 60 * MICROS_PER_MINUTE

# Active ISO 4217 codes; every one has two decimals except those listed below.
_CODES = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV
BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK
DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL
HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT
LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR
MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP
TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG
XOF XPF YER ZAR ZMW ZWG
""".split()
_EXPONENT_EXCEPTIONS = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}
CURRENCIES: dict[str, int] = {code: _EXPONENT_EXCEPTIONS.get(code, 2) for code in _CODES}


TARIFF_COLUMNS = ("hourly_rate", "billing_increment_minutes", "grace_minutes", "daily_max")


def tariff_to_dict(row) -> dict:
    """The tariff of a lot or a ticket (or any row with its columns), as the API shows it."""
    return {name: getattr(row, name) for name in TARIFF_COLUMNS}


@dataclass(frozen=True)
class Tariff:
    hourly_rate: int
    billing_increment_minutes: int = 60
    grace_minutes: int = 0
    daily_max: int | None = None

    @classmethod
    def of(cls, row) -> "Tariff":
        """The tariff stored on a lot or frozen on a ticket."""
        return cls(row.hourly_rate, row.billing_increment_minutes, row.grace_minutes, row.daily_max)


def _period_amount(micros: int, tariff: Tariff) -> tuple[int, int, bool]:
    """Increments started, amount and whether daily_max capped one period."""
    increment = tariff.billing_increment_minutes
    increments = -(-micros // (increment * MICROS_PER_MINUTE))  # ceiling division
    amount = round(Fraction(tariff.hourly_rate * increment * increments, 60))  # half-even
    if tariff.daily_max is not None and amount > tariff.daily_max:
        return increments, tariff.daily_max, True
    return increments, amount, False


def fee_for(stay: timedelta, tariff: Tariff) -> tuple[int, list[dict]]:
    """The amount owed for a stay, and a breakdown a receipt can show."""
    micros = stay // timedelta(microseconds=1)
    if micros <= tariff.grace_minutes * MICROS_PER_MINUTE:
        # Started minutes, as the receipt's duration_minutes counts them.
        minutes = -(-micros // MICROS_PER_MINUTE)
        return 0, [{"period": "grace", "minutes": minutes, "amount": 0}]
    full_days, remainder = divmod(micros, MICROS_PER_DAY)
    breakdown = []
    total = 0
    if full_days:
        increments, amount, capped = _period_amount(MICROS_PER_DAY, tariff)
        total += amount * full_days
        breakdown.append(
            {
                "period": "full_day",
                "days": full_days,
                "increments_per_day": increments,
                "amount_per_day": amount,
                "capped": capped,
                "amount": amount * full_days,
            }
        )
    if remainder:
        increments, amount, capped = _period_amount(remainder, tariff)
        total += amount
        breakdown.append(
            {
                "period": "remainder",
                "minutes": -(-remainder // MICROS_PER_MINUTE),
                "increments": increments,
                "capped": capped,
                "amount": amount,
            }
        )
    return total, breakdown


def stay_charge(
    check_in: datetime,
    at: datetime,
    tariff: Tariff,
    *,
    paid_until: datetime | None = None,
    exit_grace_minutes: int = 0,
    covered_until: datetime | None = None,
) -> tuple[int, list[dict], datetime]:
    """What a stay from `check_in` costs when it ends at `at`, and the moment
    the fee runs to.

    * A payment while parked fixed the fee up to `paid_until`: leaving within
      `exit_grace_minutes` after it costs nothing more; later, the fee runs
      to `at` (the extra time is owed).
    * A permit covering the stay's start until `covered_until` makes that part
      free; the rest is billed under the tariff from the permit's end, as a
      stay of its own (its grace period included).
    """
    end = at
    if paid_until is not None and at <= paid_until + timedelta(minutes=exit_grace_minutes):
        end = paid_until
    start = check_in
    parts = []
    if covered_until is not None and covered_until > check_in:
        start = min(covered_until, end)
        covered = max(start - check_in, timedelta(0))
        parts.append({"period": "permit", "minutes": covered // timedelta(minutes=1), "amount": 0})
    if parts and end <= start:
        return 0, parts, end
    amount, breakdown = fee_for(max(end - start, timedelta(0)), tariff)
    return amount, parts + breakdown, end


def reserved_stay_charge(
    check_in: datetime,
    at: datetime,
    tariff: Tariff,
    *,
    reserved_from: datetime,
    reserved_until: datetime,
    prepaid: int,
    paid_until: datetime | None = None,
    exit_grace_minutes: int = 0,
) -> tuple[int, list[dict], datetime]:
    """What a reserved stay owes beyond its reservation, which was paid at
    booking and covers [reserved_from, reserved_until).

    * Minutes before the window (check-in opens early_minutes before it) are free.
    * The window itself is the reservation's prepaid amount: nothing more.
    * Time after the window is billed under the frozen tariff from its end,
      without a new grace period (the fee rule's periods start there).
    * A payment while parked fixed the fee up to `paid_until`, as for any stay.
    """
    end = at
    if paid_until is not None and at <= paid_until + timedelta(minutes=exit_grace_minutes):
        end = paid_until
    minute = timedelta(minutes=1)
    parts = []
    early = min(reserved_from, end) - check_in
    if early > timedelta(0):
        parts.append({"period": "early", "minutes": -(-early // minute), "amount": 0})
    window = max(min(reserved_until, end) - max(check_in, reserved_from), timedelta(0))
    parts.append(
        {
            "period": "reservation",
            "minutes": -(-window // minute),
            "amount": 0,
            "prepaid": prepaid,
        }
    )
    if end <= reserved_until:
        return 0, parts, end
    no_grace = Tariff(tariff.hourly_rate, tariff.billing_increment_minutes, 0, tariff.daily_max)
    amount, breakdown = fee_for(end - reserved_until, no_grace)
    return amount, parts + breakdown, end
