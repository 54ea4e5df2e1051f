"""`engine_legs.apportion`, the LARGEST_REMAINDER split of a refund over the tenders of its
sale: exact, within each part, in whole steps, and within one step of the exact share."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.engine_legs import apportion

SETTINGS = settings(max_examples=500, deadline=None)


@st.composite
def parts_and_amount(draw: st.DrawFn, unit_steps: bool) -> tuple[list[int], list[int], int]:
    count = draw(st.integers(1, 4))
    steps = [1 if unit_steps else draw(st.sampled_from([1, 1, 10, 100])) for _ in range(count)]
    parts = [draw(st.integers(0, 5000)) * step for step in steps]
    amount = draw(st.integers(0, sum(parts)))
    return parts, steps, amount


@SETTINGS
@given(parts_and_amount(unit_steps=True))
def test_minor_unit_parts_split_exactly_each_within_one_unit_of_its_share(
        drawn: tuple[list[int], list[int], int]) -> None:
    parts, steps, amount = drawn
    shares = apportion(amount, parts, steps)
    assert shares is not None and sum(shares) == amount
    whole = sum(parts)
    for part, share in zip(parts, shares, strict=True):
        exact_floor = part * amount // whole if whole else 0
        assert exact_floor <= share <= exact_floor + 1 and share <= part


@st.composite
def with_points(draw: st.DrawFn) -> tuple[list[int], list[int], int]:
    """Minor-unit parts and one part counted in points worth 10 or 100 (a sale's tenders)."""
    minor = draw(st.lists(st.integers(0, 3000), min_size=0, max_size=3))
    step = draw(st.sampled_from([10, 100]))
    parts = [*minor, draw(st.integers(0, 300)) * step]
    steps = [*([1] * len(minor)), step]
    return parts, steps, draw(st.integers(0, sum(parts)))


@SETTINGS
@given(with_points())
def test_a_split_in_whole_points_is_found_whenever_one_exists(
        drawn: tuple[list[int], list[int], int]) -> None:
    parts, steps, amount = drawn
    shares = apportion(amount, parts, steps)
    minor_room, step, points_part = sum(parts[:-1]), steps[-1], parts[-1]
    exists = any(0 <= amount - k * step <= minor_room for k in range(points_part // step + 1))
    assert (shares is not None) == exists
    if shares is not None:
        assert sum(shares) == amount
        for part, part_step, share in zip(parts, steps, shares, strict=True):
            assert 0 <= share <= part and share % part_step == 0


@SETTINGS
@given(parts_and_amount(unit_steps=True), st.lists(st.integers(1, 100), min_size=1, max_size=6))
def test_refunds_in_any_pieces_give_back_exactly_the_sale(
        drawn: tuple[list[int], list[int], int], cuts: list[int]) -> None:
    """Refunding a sale in pieces, each split over what is left: the pieces of each part add
    up to the part, whatever the pieces."""
    parts, steps, _ = drawn
    left = list(parts)
    for cut in cuts:
        amount = sum(left) * cut // 100
        shares = apportion(amount, left, steps)
        assert shares is not None and sum(shares) == amount
        left = [part - share for part, share in zip(left, shares, strict=True)]
    assert apportion(sum(left), left, steps) == left


def test_the_hand_computed_examples() -> None:
    assert apportion(1001, [0, 2700, 300, 0], [1, 1, 1, 1]) == [0, 901, 100, 0]
    assert apportion(333, [0, 950, 50, 0], [1, 1, 10, 1]) == [0, 323, 10, 0]
    assert apportion(335, [0, 0, 1000, 0], [1, 1, 10, 1]) is None
    assert apportion(1, [1, 1], [1, 1]) == [1, 0]  # a tie: the earlier part
