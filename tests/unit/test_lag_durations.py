"""`worker lag` shows ages as durations people read at a glance; `--json` keeps seconds."""

from __future__ import annotations

import pytest

from worker.entrypoints.commands.lag import duration


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0s"), (0.4, "0s"), (45, "45s"), (60, "1m"), (725, "12m 5s"), (3661, "1h 1m"),
    (3 * 86_400 + 4 * 3_600 + 59, "3d 4h"), (86_400 + 300, "1d"), (None, None),
])
def test_ages_read_as_durations_in_their_two_largest_units(seconds: float | None, shown: str | None) -> None:
    assert duration(seconds) == shown
