"""Ratings over time per agent, drawn as small server-side SVG charts (no JavaScript):
per day, a bar up for positive ratings and a bar down for negative ones, one shared scale."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

BAR_WIDTH = 12
BAR_STEP = 16  # bar and gap
HALF_HEIGHT = 60  # each side of the baseline, at the largest count
LEFT = 28  # room for the scale's labels
TOP = 8
BOTTOM = 18  # room for the first and last day


@dataclass(frozen=True)
class DayBar:
    day: date
    positive: int
    negative: int
    x: int
    positive_y: float
    positive_height: float
    negative_height: float


@dataclass(frozen=True)
class AgentRatingsChart:
    agent_name: str
    bars: list[DayBar]
    positive_total: int
    negative_total: int
    max_count: int
    width: int
    height: int
    baseline: int

    bar_width: int = BAR_WIDTH

    @property
    def top_y(self) -> int:
        return TOP

    @property
    def bottom_y(self) -> int:
        return self.baseline + HALF_HEIGHT

    @property
    def plot_height(self) -> int:
        return 2 * HALF_HEIGHT

    @property
    def plot_right(self) -> int:
        return self.width - 4

    @property
    def date_label_y(self) -> int:
        return self.height - 4

    @property
    def positive_share(self) -> float | None:
        total = self.positive_total + self.negative_total
        return self.positive_total / total if total else None


def ratings_charts(rows: list[dict[str, Any]], *, first_day: date, last_day: date) -> list[AgentRatingsChart]:
    """One chart per agent with ratings in ``rows`` (``FeedbackQuerySet.daily_counts``),
    each day from ``first_day`` to ``last_day`` a bar pair (empty days too), all agents on
    one scale so their charts compare at a glance."""
    days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    by_agent: dict[int, tuple[str, dict[tuple[date, str], int]]] = {}
    for row in rows:
        _, counts = by_agent.setdefault(row["agent_id"], (row["agent_name"], {}))
        counts[(row["day"], row["rating"])] = row["count"]
    max_count = max((row["count"] for row in rows), default=0) or 1
    scale = HALF_HEIGHT / max_count
    baseline = TOP + HALF_HEIGHT
    charts = []
    for agent_name, counts in by_agent.values():
        bars = []
        for index, day in enumerate(days):
            positive, negative = counts.get((day, "positive"), 0), counts.get((day, "negative"), 0)
            bars.append(
                DayBar(
                    day=day,
                    positive=positive,
                    negative=negative,
                    x=LEFT + index * BAR_STEP,
                    positive_y=baseline - positive * scale,
                    positive_height=positive * scale,
                    negative_height=negative * scale,
                )
            )
        charts.append(
            AgentRatingsChart(
                agent_name=agent_name,
                bars=bars,
                positive_total=sum(bar.positive for bar in bars),
                negative_total=sum(bar.negative for bar in bars),
                max_count=max_count,
                width=LEFT + len(days) * BAR_STEP + 4,
                height=TOP + 2 * HALF_HEIGHT + BOTTOM,
                baseline=baseline,
            )
        )
    return charts
