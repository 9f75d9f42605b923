"""Event size limits: a call whose event would exceed its kind's limit raises and logs nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runstream import ValidationError
from runstream._config import KafkaConfig, ProducerConfig
from runstream.producer import Run, RunContext
from runstream.schemas import EVENT_MAX, TOPIC_MESSAGE_MAX, event_limit, kinds
from tests.ports import REFUSED

_SURROGATE = "bad-\udce9-name"


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    config = ProducerConfig(kafka=KafkaConfig(bootstrap_servers=REFUSED), spool_dir=tmp_path)
    handle = Run(RunContext(run_id="limits-run", experiment="unit"), config)
    yield handle
    handle.close(timeout=0.5)


def test_every_limit_leaves_room_below_the_topics_message_size() -> None:
    for kind in kinds.BODY_KINDS:
        assert event_limit(kind) <= EVENT_MAX < TOPIC_MESSAGE_MAX - 32 * 1024


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda run: run.log_params({f"p{i}": "v" * 6000 for i in range(400)}), "params"),
        (lambda run: run.set_tags({f"t{i}": "v" * 6000 for i in range(400)}), "tags"),
        (lambda run: run.log_row("big", **{f"c{i}": "v" * 6000 for i in range(400)}), "columns"),
        (lambda run: run.log_metrics({f"m{i}:{'x' * 200}": 1.0 for i in range(3000)}), "metrics"),
        (lambda run: run.log_record("INFO", "l" * 100_000, "hello"), "logger and message"),
    ],
    ids=["params", "tags", "row", "metrics", "record"],
)
def test_an_event_over_its_limit_raises_naming_field_and_limit(
    run: Run, call: object, field: str
) -> None:
    before = run.events_logged
    with pytest.raises(ValidationError, match=r"at most \d+ bytes") as raised:
        call(run)  # type: ignore[operator]
    assert raised.value.field == field
    assert raised.value.rule == "oversize"
    assert run.events_logged == before


def test_a_lone_surrogate_in_a_value_is_refused_at_the_call(run: Run) -> None:
    before = run.events_logged
    with pytest.raises(ValidationError, match="surrogate"):
        run.log_params({"path": _SURROGATE})
    assert run.events_logged == before


def test_a_lone_surrogate_in_the_command_line_does_not_stop_start_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.argv", ["train.py", _SURROGATE])
    config = ProducerConfig(kafka=KafkaConfig(bootstrap_servers=REFUSED), spool_dir=tmp_path)
    run = Run(RunContext(run_id="argv-run", experiment="unit"), config)
    assert run.events_logged == 1  # RunStarted
    run.close(timeout=0.5)


def test_a_run_refused_at_start_leaves_no_spool_folder(tmp_path: Path) -> None:
    config = ProducerConfig(kafka=KafkaConfig(bootstrap_servers=REFUSED), spool_dir=tmp_path)
    context = RunContext(run_id="refused-run", experiment="unit", name=_SURROGATE)
    with pytest.raises(ValidationError):
        Run(context, config)
    assert list(tmp_path.iterdir()) == []
