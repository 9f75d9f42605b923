"""The garbage collector of a consumer process, set for batches of thousands of events.

A batch of 5,000 metrics events builds some 65,000 container objects (records, bodies, value
lists and pairs) that live until the batch is written. With CPython's default thresholds
(700, 10, 10) the collector runs about a hundred young collections per batch, promotes the batch's
objects while they are still alive and then walks them again in older generations, together with
every long-lived object of the process (clients, schemas, caches): the persist benchmark at ten
values per event spent a quarter of its time there (346k values/s; 475k with the collector off).

So a consumer, once set up, moves what exists to the permanent generation (`gc.freeze`: never
walked again) and lets a young generation grow to `YOUNG` objects: a batch's objects are freed by
reference counting before a young collection would see them. Cycles are still collected, later.
Only consumer processes do this: a training process's collector is the user's.
"""

from __future__ import annotations

import gc

YOUNG = 100_000
"""Allocations of container objects between young collections (CPython's default: 700)."""


def settle_collector() -> None:
    """Collect once, freeze what survives, and raise the young generation's threshold."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
