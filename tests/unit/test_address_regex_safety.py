"""No regex of the address rules backtracks catastrophically, and huge or hostile input is read in
bounded time. Sizes are compared within one run (a ratio), never against a tight absolute figure."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from src.domain import address_rules, address_vocabulary
from src.domain.address_rules import normalize_address_rules

PATTERNS = {
    f"{module.__name__.rpartition('.')[2]}.{name}": value
    for module in (address_rules, address_vocabulary)
    for name, value in vars(module).items()
    if isinstance(value, re.Pattern)
}
# Repeated units that make a careless pattern retry a long run from every position: runs of spaces,
# dashes, digits, letters, dots, parentheses, and the words the patterns key on.
UNITS = [" ", "a", "1", "-", "a-", "1-", "(", "((a)", ".", "a.", "1.", ", ", " - ", "/", "a/", "km ",
         "rod ", "br ", "cep ", "zona ", "n", "ii", "aa1", "\x01", "ç", "1 a "]  # fmt: skip
SMALL, LARGE = 2_000, 16_000  # 8 times the size: linear work takes about 8 times longer, quadratic 64


def best_time(action: Callable[[str], object], text: str, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        action(text)
        best = min(best, time.perf_counter() - started)
    return best


def adversarial(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size] + "!"


def test_the_patterns_are_found() -> None:
    """The modules' compiled patterns are all under test (a rename cannot silently drop them)."""
    assert len(PATTERNS) >= 25
    assert "address_rules._SEGMENT_BREAK" in PATTERNS


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_every_pattern_runs_in_linear_time_on_adversarial_runs(name: str) -> None:
    """search, sub and match on 8x longer input take well under 64x longer (the quadratic ratio)."""
    pattern = PATTERNS[name]
    for unit in UNITS:
        times = []
        for size in (SMALL, LARGE):
            text = adversarial(unit, size)
            times.append(best_time(lambda t: (pattern.sub("", t), pattern.match(t), pattern.search(t)), text))
        # floor of 0.5 ms on the small run: below it, timer noise would dominate the ratio
        assert times[1] < 24 * max(times[0], 0.0005), (name, unit, times)


@pytest.mark.parametrize(
    "unit", UNITS + ["Rua Augusta 1500, Centro, Campinas - SP, 01305-100 ", "😀", "\x00"]
)
def test_normalizer_on_ten_and_a_hundred_thousand_characters_is_bounded(unit: str) -> None:
    """10k and 100k characters of hostile input each finish in well under 2 s, about equally fast."""
    times = []
    for size in (10_000, 100_000):
        text = adversarial(unit, size)
        times.append(best_time(normalize_address_rules, text, repeats=2))
        address = normalize_address_rules(text)
        assert 0.0 <= address.confidence <= 1.0
        assert any(note.startswith(f"input of {size + 1} characters cut") for note in address.notes)
    assert max(times) < 2.0, times
    assert times[1] < 10 * max(times[0], 0.001), times
