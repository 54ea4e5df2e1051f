"""Shared steps of the engine tests (a helper module, not a test: no `test_` prefix; the
MicroPython harness copies it beside them)."""

from protocol import engine


def issued(program, value_minor=0, day=0):
    """A card of `program` issued on `day` with `value_minor` (the issue must be accepted)."""
    op = {"op": "issue", "id": "sale", "card": "C1", "value_minor": value_minor}
    state, effects = engine.apply(None, program, op, day)
    assert "declined" not in effects, effects
    return state


def accepted(state, program, op, day):
    """Apply `op`, insisting it is not declined: (state, effects)."""
    state, effects = engine.apply(state, program, op, day)
    assert "declined" not in effects, effects
    return state, effects
