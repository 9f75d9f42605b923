"""The C hot path of `run.log()` (producer/_hotpath.c) against the Python path it stands for.

The Python path is checked in the two builds it runs in: beside C (the calls C hands over, on C's
`LogState`) and alone (a build without the extension: `PyLogState`, every call in Python).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runstream import ClosedError, ValidationError
from runstream._config import KafkaConfig, ProducerConfig
from runstream.producer import Run, RunContext, _hotpath, _hotstate
from runstream.producer._hotstate import LogState, PyLogState
from runstream.schemas import Heartbeat, Metrics, Text
from tests.ports import REFUSED
from tests.spooled import bodies, spooled_events

# Known and new names, floats and other numbers, omitted, repeated, backward and large steps,
# NaN and infinities: the C path takes some, hands the others to Python.
CALLS: list[tuple[str, Any, int | None]] = [
    ("loss", 0.5, None),
    ("loss", 0.25, None),
    ("acc", 1.0, 7),
    ("loss", 2.0, 3),
    ("loss", 2.5, None),
    ("acc", 3, None),
    ("loss", float("nan"), None),
    ("loss", float("inf"), 2**40),
    ("acc", -math.inf, 200),
    ("loss", -0.0, 2**63 - 1),
    ("loss", 1e-300, 0),
    ("acc", 0.75, None),
    ("text", "a string", None),
    ("text", 1.5, None),
]


def _run(tmp_path: Path, name: str) -> Run:
    kafka = KafkaConfig(bootstrap_servers=REFUSED)
    config = ProducerConfig(kafka=kafka, spool_dir=tmp_path / name)
    return Run(RunContext(run_id="hot-path", experiment="unit"), config)


def _python_only_run(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    """A run as a build without the C extension makes it."""
    with monkeypatch.context() as patch:
        patch.setattr(_hotstate, "BUILT", False)
        return _run(tmp_path, name)


def _counting(run: Run) -> list[bool]:
    """Record what the C path answered to each call."""
    fast = run._fast_log
    assert fast is not None, "built without the C hot path"
    answers: list[bool] = []

    def counted(name: str, value: object, step: int | None) -> bool:
        answers.append(fast(name, value, step))
        return answers[-1]

    run._fast_log = counted
    return answers


def _metrics(tmp_path: Path, name: str) -> list[tuple[Any, ...]]:
    """Metrics, texts and heartbeats (their step is the highest logged), with seq and rank."""
    found: list[tuple[Any, ...]] = []
    for event in spooled_events(tmp_path / name):
        body = event.body
        if isinstance(body, Metrics):
            for name_, number in body.values:
                value = "nan" if math.isnan(number) else number
                found.append((event.seq, event.rank, body.step, name_, value))
        elif isinstance(body, Text):
            found.append((event.seq, event.rank, body.step, body.name, body.value))
        elif isinstance(body, Heartbeat):
            found.append((event.seq, event.rank, body.step, "heartbeat", body.progress))
    return found


def _log_all(run: Run, calls: list[tuple[str, Any, int | None]]) -> None:
    for name, value, step in calls:
        run.log(name, value, step)


def test_the_c_hot_path_is_built() -> None:
    """`pip install -e .` builds it wherever a C compiler is (CI has one)."""
    assert _hotstate.BUILT


def test_the_c_path_logs_what_a_python_only_build_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, slow = _run(tmp_path, "c"), _python_only_run(tmp_path, "python", monkeypatch)
    answers = _counting(fast)
    for run in (fast, slow):
        _log_all(run, CALLS)
        run.report_progress()  # its step: the highest step logged
        _log_all(run, [("loss", 0.5, None), ("acc", 0.5, None)])  # where each count stands
    # New names, ints, strings go to Python; known names with floats stay in C.
    assert answers == [
        False, True, False, True, True, False, True, True, True, True, True, True, False, False,
        True, True,
    ]  # fmt: skip
    assert fast.events_logged == slow.events_logged
    fast.close(timeout=0.5)
    slow.close(timeout=0.5)
    events = _metrics(tmp_path, "c")
    assert events == _metrics(tmp_path, "python")
    assert [row[2:4] for row in events][:6] == [
        (0, "loss"), (1, "loss"), (7, "acc"), (3, "loss"), (4, "loss"), (8, "acc"),
    ]  # fmt: skip
    assert [row[2:4] for row in events][-3:] == [
        (2**63 - 1, "heartbeat"), (1, "loss"), (202, "acc"),
    ]  # fmt: skip


def _use(state: LogState) -> list[object]:
    """What a run does to its state over two sessions, and what the state says back."""
    seen: list[object] = [state.max_step, state.next_seq(), state.next_seq()]
    state.names.add("loss")
    state.steps["loss"] = 3
    state.max_step = 2**63 - 1
    state.new_session()
    seen += [state.next_seq(), state.max_step, sorted(state.names), state.steps]
    return seen


def test_the_c_state_behaves_as_the_python_state() -> None:
    assert _use(_hotpath.LogState()) == _use(PyLogState()) == [
        -1, 0, 1, 0, 2**63 - 1, ["loss"], {"loss": 3},
    ]  # fmt: skip


@pytest.mark.parametrize("python_only", [False, True], ids=["with C", "python only"])
def test_a_count_past_the_last_step_raises_and_logs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, python_only: bool
) -> None:
    run = _python_only_run(tmp_path, "end", monkeypatch) if python_only else _run(tmp_path, "end")
    try:
        run.log("loss", 1.0, 2**63 - 1)
        logged = run.events_logged
        with pytest.raises(ValidationError):
            run.log("loss", 2.0)
        with pytest.raises(ValidationError):
            run.log_metrics({"loss": 2.0})
        assert run.events_logged == logged
    finally:
        run.close(timeout=0.5)


def test_long_varints_and_the_clock_are_encoded_as_the_codec_reads_them(tmp_path: Path) -> None:
    run = _run(tmp_path, "long")
    answers = _counting(run)
    before = time.time_ns() // 1000
    for step in range(3_000_000, 3_000_000 + 20_000):  # seq past 2**14, steps past 2**21
        run.log("loss", step / 7, step)
    run.log("loss", 0.5, 2**62)
    after = time.time_ns() // 1000
    assert answers.count(True) == 20_000  # the first one met a new name
    run.close(timeout=1.0)
    events = [e for e in spooled_events(tmp_path / "long") if isinstance(e.body, Metrics)]
    metrics = bodies(events, Metrics)
    assert [body.step for body in metrics] == [*range(3_000_000, 3_020_000), 2**62]
    assert [body.values[0][1] for body in metrics[:-1]] == [
        step / 7 for step in range(3_000_000, 3_020_000)
    ]
    assert [e.seq for e in events] == sorted({e.seq for e in events})
    assert events[-1].seq > 2**14
    assert all(before <= e.time_us <= after for e in events)


@pytest.mark.parametrize("step", [-1, True, 2**63, 1.5, "3"])
def test_bad_steps_of_a_known_name_raise_and_log_nothing(tmp_path: Path, step: object) -> None:
    run = _run(tmp_path, "bad")
    try:
        run.log("loss", 1.0)
        logged = run.events_logged
        with pytest.raises(ValidationError):
            run.log("loss", 2.0, step)  # type: ignore[arg-type]
        assert run.events_logged == logged
        run.log("loss", 3.0)
    finally:
        run.close(timeout=0.5)
    assert [row[2:5] for row in _metrics(tmp_path, "bad")] == [(0, "loss", 1.0), (1, "loss", 3.0)]


def test_a_closed_run_refuses_a_known_name_too(tmp_path: Path) -> None:
    run = _run(tmp_path, "closed")
    run.log("loss", 1.0)
    run.close(timeout=0.5)
    with pytest.raises(ClosedError):
        run.log("loss", 2.0)


def test_the_c_path_wakes_a_dozing_shipper_and_spills_a_full_memory_queue(tmp_path: Path) -> None:
    kafka = KafkaConfig(bootstrap_servers=REFUSED)
    config = ProducerConfig(kafka=kafka, spool_dir=tmp_path / "full", memory_events=100)
    run = Run(RunContext(run_id="hot-path", experiment="unit"), config)
    intake = run._shipper.intake
    calls = {"wake_up": 0, "spill": 0}
    for action in calls:
        original: Callable[[], None] = getattr(intake, action)

        def counted(_original: Callable[[], None] = original, _action: str = action) -> None:
            calls[_action] += 1
            _original()

        setattr(intake, action, counted)
    try:
        run.log("loss", 0.0)
        answers = _counting(run)
        woken = calls["wake_up"]
        intake.dozing = True
        run.log("loss", 1.0)
        assert calls["wake_up"] == woken + 1
        assert not intake.dozing
        for step in range(2, 400):
            run.log("loss", float(step))
        assert all(answers)
        assert calls["spill"] >= 1
    finally:
        run.close(timeout=1.0)
    metrics = bodies(spooled_events(tmp_path / "full"), Metrics)
    assert len(metrics) == 400
