"""Guard rails: the HPA's behavior defaults (step limit, stabilisation), min/max, cooldowns, rate limit."""

from __future__ import annotations

from tasks.config.scaling import GuardRails
from tasks.scaling.guardrails import RailState, apply_guardrails


def test_scale_up_limit_is_max_of_double_and_plus_four() -> None:
    rails = GuardRails()
    assert apply_guardrails(20, 2, 0.0, rails, RailState())[0] == 6  # max(2*2, 2+4)
    assert apply_guardrails(50, 10, 0.0, rails, RailState())[0] == 20  # max(10*2, 10+4)
    to, _, notes = apply_guardrails(7, 5, 0.0, rails, RailState())
    assert to == 7 and notes == []  # within the limit: untouched


def test_scale_up_limit_counts_units_added_in_the_same_period() -> None:
    rails = GuardRails()
    to, st, _ = apply_guardrails(100, 10, 0.0, rails, RailState())
    assert to == 20
    # 5 s later, same 15 s period: the base is still 10 (20 - 10 added), so the limit stays 20.
    to2, _, notes = apply_guardrails(100, 20, 5.0, rails, st)
    assert to2 == 20 and any("step limit" in n for n in notes)
    # A full period later the base is 20: limit 40.
    assert apply_guardrails(100, 20, 15.0, rails, st)[0] == 40


def test_scale_down_waits_for_the_five_minute_stabilisation_window() -> None:
    rails = GuardRails()
    st = RailState()
    to, st, _ = apply_guardrails(10, 10, 0.0, rails, st)
    assert to == 10
    for t in range(15, 300, 15):
        to, st, notes = apply_guardrails(3, 10, float(t), rails, st)
        assert to == 10, t  # the proposal of 10 at t=0 is inside the window
        assert any("stabilised" in n for n in notes)
    to, st, _ = apply_guardrails(3, 10, 300.0, rails, st)
    assert to == 3  # t=0 is no longer strictly inside (now - 300, now]


def test_stabilisation_uses_the_highest_recent_proposal_not_the_current_count() -> None:
    rails = GuardRails()
    st = RailState(recommendations=((0.0, 6),))
    to, _, _ = apply_guardrails(2, 10, 60.0, rails, st)
    assert to == 6


def test_min_and_max_clamp_every_proposal() -> None:
    rails = GuardRails(min_units=2, max_units=8, scale_down_stabilisation_s=0)
    assert apply_guardrails(0, 4, 0.0, rails, RailState())[0] == 2
    to, _, notes = apply_guardrails(40, 6, 0.0, rails, RailState())
    assert to == 8 and any("clamped" in n for n in notes)


def test_cooldowns_and_rate_limit_hold_the_count() -> None:
    rails = GuardRails(scale_up_cooldown_s=60, scale_down_stabilisation_s=0, scale_down_cooldown_s=120)
    to, st, _ = apply_guardrails(5, 4, 0.0, rails, RailState())
    assert to == 5
    to, st, notes = apply_guardrails(6, 5, 30.0, rails, st)
    assert to == 5 and any("cooldown" in n for n in notes)
    assert apply_guardrails(6, 5, 61.0, rails, st)[0] == 6
    assert apply_guardrails(3, 5, 100.0, rails, st)[0] == 5  # scale-down cooldown after any change
    assert apply_guardrails(3, 5, 121.0, rails, st)[0] == 3
    limited = GuardRails(max_changes=2, rate_window_s=600, scale_down_stabilisation_s=0)
    st = RailState()
    cur = 4
    for t, want in ((0.0, 5), (15.0, 6)):
        cur, st, _ = apply_guardrails(want, cur, t, limited, st)
        assert cur == want
    cur, st, notes = apply_guardrails(9, cur, 30.0, limited, st)
    assert cur == 6 and any("rate limit" in n for n in notes)
    assert apply_guardrails(9, cur, 601.0, limited, st)[0] == 9


def test_emergency_skips_pacing_rails_but_not_max() -> None:
    rails = GuardRails(max_units=30, scale_up_cooldown_s=600)
    st = RailState(changes=((0.0, 1),))
    assert apply_guardrails(25, 2, 10.0, rails, st, emergency=True)[0] == 25
    assert apply_guardrails(99, 2, 10.0, rails, st, emergency=True)[0] == 30
    assert apply_guardrails(25, 2, 10.0, rails, st)[0] == 2  # normal path: cooldown holds


def test_emergency_never_skips_scale_down_stabilisation() -> None:
    """Found on WorldCup98: a repeating spike flagged an emergency while the count was falling, and the
    emergency path dropped the count at once; the next spike then found one unit."""
    rails = GuardRails()
    st = RailState(recommendations=((0.0, 4),))
    to, _, notes = apply_guardrails(1, 4, 60.0, rails, st, emergency=True)
    assert to == 4 and any("stabilised" in n for n in notes)
