"""Longest-prefix rating speed: lookups per second on a RateTable of 100,000 prefixes.

Builds a RateTable of 100,000 distinct random digit prefixes (lengths 2-10, seeded), then rates
random 12-digit numbers for about three seconds through ``RateTable.rate`` (which normalises the
number, then probes the prefix index) and reports the rate. Pure Python, no server, no pytest.

Usage: python bench/rating.py   (prints one line: rating: <n> prefixes, <n> lookups/s)
"""

import random
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mizu.billing.rating import RateTable, Tariff  # noqa: E402

PREFIXES = 100_000
SECONDS = 3.0
BATCH = 10_000


def build(rng: random.Random) -> RateTable:
    """A table of PREFIXES distinct prefixes of 2-10 random digits."""
    prefixes: set[str] = set()
    while len(prefixes) < PREFIXES:
        length = rng.randint(2, 10)
        prefixes.add("".join(rng.choices("0123456789", k=length)))
    return RateTable(Tariff(p, Decimal(rng.randint(1, 9999)) / 1000) for p in sorted(prefixes))


def measure(table: RateTable, rng: random.Random) -> float:
    """Lookups per second over batches of random 12-digit numbers, for about SECONDS."""
    numbers = ["".join(rng.choices("0123456789", k=12)) for _ in range(BATCH)]
    rate = table.rate
    done = 0
    began = time.perf_counter()
    while (elapsed := time.perf_counter() - began) < SECONDS:
        for number in numbers:
            rate(number)
        done += len(numbers)
    return done / elapsed


def main() -> None:
    """Build, measure, print one line."""
    rng = random.Random(7)
    table = build(rng)
    speed = measure(table, rng)
    print(f"rating: {len(table)} prefixes, {speed:.0f} lookups/s")


if __name__ == "__main__":
    main()
