"""The detail page's timeline bar: SVG geometry proportional to the time in each state."""

from __future__ import annotations

import pytest

from webapp.web.presentation import TIMELINE_GAP
from webapp.web.presentation import TIMELINE_MIN_SEGMENT
from webapp.web.presentation import TIMELINE_WIDTH
from webapp.web.presentation import timeline_segments


def test_segments_fill_the_bar_in_proportion_with_gaps_between():
    first, second, last = timeline_segments([10.0, 30.0, None])
    assert first.x == 0
    assert second.x == pytest.approx(first.width + TIMELINE_GAP, abs=0.1)
    assert last.x + last.width == pytest.approx(TIMELINE_WIDTH, abs=0.2)
    # The final state (None) gets a sliver; the others share the rest 1:3.
    assert last.width == pytest.approx(TIMELINE_MIN_SEGMENT, abs=0.1)
    spare = (first.width - TIMELINE_MIN_SEGMENT, second.width - TIMELINE_MIN_SEGMENT)
    assert spare[1] == pytest.approx(3 * spare[0], rel=0.01)


def test_no_time_yet_shares_the_bar_evenly_and_many_states_still_fit():
    even = timeline_segments([0.0, 0.0])
    assert even[0].width == pytest.approx(even[1].width)
    many = timeline_segments([1.0] * 400)
    assert many[-1].x + many[-1].width <= TIMELINE_WIDTH + 0.5
    assert all(segment.width > 0 for segment in many)
    assert timeline_segments([]) == []
