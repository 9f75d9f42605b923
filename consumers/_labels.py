"""Label values for the text exposition format: never trusted, always escaped and bounded."""

from __future__ import annotations

from runstream.schemas import NAME_MAX


def safe_label(text: str | None) -> str:
    """A label value from free-form text: non-printable characters replaced, length bounded."""
    if not text:
        return ""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "\ufffd" for c in text)
    return text[:NAME_MAX]


def escape(value: str) -> str:
    """A label value escaped for the text exposition format (backslash, quote, newline)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def metric_labels(experiment: str, run_id: str, metric: str, rank: int) -> str:
    """The label text of one `runstream_metric_*` series."""
    return (
        f'experiment="{escape(experiment)}",run_id="{escape(run_id)}",'
        f'metric="{escape(metric)}",rank="{rank}"'
    )


def aggregate_labels(experiment: str, run_id: str, metric: str) -> str:
    """The label text of one `runstream_metric_ranks_*` series (a metric across a run's ranks)."""
    return f'experiment="{escape(experiment)}",run_id="{escape(run_id)}",metric="{escape(metric)}"'
