"""A consumer process freezes what it set up and lets the young generation grow (`_gc`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from runstream.consumers._gc import YOUNG, settle_collector


@pytest.fixture
def collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector")
def test_settling_freezes_what_exists_and_raises_the_young_threshold() -> None:
    _, middle, old = gc.get_threshold()
    settle_collector()
    assert gc.get_freeze_count() > 0
    assert gc.get_objects(generation=2) == []  # all of it frozen: never walked again
    assert gc.get_threshold() == (YOUNG, middle, old)
