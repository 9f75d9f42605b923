"""Which ranks get per-rank metric series on /metrics, and the cross-rank aggregates."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from runstream.consumers import LiveRuns, RunCollector
from runstream.consumers._shownranks import RankSpread, shown_ranks
from runstream.schemas import kinds
from tests.unit.test_consumers_collector import event, metrics


def test_a_run_within_the_limit_shows_every_rank() -> None:
    assert shown_ranks({0, 1, 2, 3}, [], limit=4) == {0, 1, 2, 3}


def test_a_larger_run_shows_rank_zero_and_its_stragglers() -> None:
    assert shown_ranks(set(range(1000)), [17, 400], limit=8) == {0, 17, 400}


def test_stragglers_fill_up_to_the_limit_lowest_first() -> None:
    assert shown_ranks(set(range(100)), [90, 5, 40, 7], limit=3) == {0, 5, 7}


def test_a_straggler_that_logged_no_metric_takes_no_place() -> None:
    assert shown_ranks(set(range(10)), [12, 3], limit=2) == {0, 3}


def test_spread_of_the_ranks_latest_values() -> None:
    assert RankSpread.of([3.0, -1.0, 4.0]) == RankSpread(-1.0, 2.0, 4.0, 3)


def test_a_nan_on_one_rank_shows_in_every_aggregate() -> None:
    spread = RankSpread.of([1.0, math.nan, 2.0])
    assert all(math.isnan(x) for x in spread[:3])
    assert spread.ranks == 3


def test_infinities_of_both_signs_keep_their_min_and_max() -> None:
    spread = RankSpread.of([math.inf, -math.inf])
    assert (spread.low, spread.high) == (-math.inf, math.inf)
    assert math.isnan(spread.mean)


Page = dict[str, dict[frozenset[tuple[str, str]], float]]


def _page(live: LiveRuns, limit: int) -> Page:
    page: Page = {}
    for family in text_string_to_metric_families(RunCollector(live, ranks_limit=limit).render()):
        for s in family.samples:
            page.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return page


def _ranks(page: Page, name: str) -> set[str]:
    return {dict(labels)["rank"] for labels in page.get(name, {})}


def test_beyond_the_limit_only_the_aggregates_cover_every_rank() -> None:
    live = LiveRuns(finished_ttl=60, idle_ttl=3600)
    live.apply([metrics(9, float(rank), rank=rank) for rank in range(5)])
    page = _page(live, limit=2)
    assert _ranks(page, "runstream_metric_value") == _ranks(page, "runstream_metric_step") == {"0"}
    key = frozenset({("experiment", "exp"), ("metric", "loss"), ("run_id", "r1")})
    assert page["runstream_metric_ranks_min"][key] == 0.0
    assert page["runstream_metric_ranks_mean"][key] == 2.0
    assert page["runstream_metric_ranks_max"][key] == 4.0
    assert page["runstream_metric_ranks"][key] == 5
    assert page["runstream_run_hidden_ranks"] == {
        frozenset({("experiment", "exp"), ("run_id", "r1")}): 4
    }


def test_a_rank_flagged_straggling_gets_its_series_until_cleared() -> None:
    live = LiveRuns(finished_ttl=60, idle_ttl=3600)
    live.apply([metrics(9, float(rank), rank=rank) for rank in range(5)])
    flag = {"step": 1, "leader_step": 200, "straggling": True}
    live.apply([event(kinds.RANK_STRAGGLING, flag, rank=3, at=1)])
    assert _ranks(_page(live, limit=2), "runstream_metric_value") == {"0", "3"}
    live.apply([event(kinds.RANK_STRAGGLING, flag | {"straggling": False}, rank=3, at=2)])
    assert _ranks(_page(live, limit=2), "runstream_metric_value") == {"0"}


def test_within_the_limit_nothing_is_hidden() -> None:
    live = LiveRuns(finished_ttl=60, idle_ttl=3600)
    live.apply([metrics(9, float(rank), rank=rank) for rank in range(3)])
    page = _page(live, limit=3)
    assert _ranks(page, "runstream_metric_value") == {"0", "1", "2"}
    assert list(page["runstream_run_hidden_ranks"].values()) == [0]
