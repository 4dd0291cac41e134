"""Result rows, the aligned table and the JSON file.

A :class:`Row` holds one figure for pipectl and the baseline measured in the
same run. ``ratio`` is oriented so that **> 1 means pipectl did better**:
``pipectl rate / baseline rate`` for rates (higher is better, e.g. files/s,
MB/s, datums/s) and ``baseline time / pipectl time`` for times (lower is
better, e.g. s, ms).
"""

from __future__ import annotations

import dataclasses
import json

HIGHER_IS_BETTER = {"files/s", "MB/s", "datums/s", "req/s"}

FOOTER = ("RATIO > 1 means pipectl is faster/better than the baseline: pipectl rate / baseline rate "
          "(files/s, MB/s, datums/s), baseline time / pipectl time (s, ms). n/a: no comparable baseline.")


@dataclasses.dataclass
class Row:
    """One line of the table.

    ``value`` (in ``unit``) is pipectl's figure, ``stat`` how it was reduced
    over repeats ("best of 3", "median of 3"). ``baseline`` is the competing
    figure in ``baseline_unit`` (same unit unless stated), produced by
    ``baseline_name``. ``target`` states a goal in words and ``target_met``
    whether it was reached (None: no target). ``compare=False`` shows the
    baseline as a reference only (ratio n/a). ``samples``/``extra`` go to the
    JSON file only."""

    store: str
    workload: str
    value: float | None
    unit: str
    stat: str = ""
    baseline: float | None = None
    baseline_name: str = ""
    baseline_unit: str | None = None
    ratio: float | None = None
    target: str = ""
    target_met: bool | None = None
    notes: str = ""
    samples: list = dataclasses.field(default_factory=list)
    baseline_samples: list = dataclasses.field(default_factory=list)
    extra: dict = dataclasses.field(default_factory=dict)
    compare: bool = True

    def __post_init__(self):
        if self.baseline_unit is None:
            self.baseline_unit = self.unit
        if self.compare and self.ratio is None and self.value and self.baseline and self.baseline_unit == self.unit:
            if self.unit in HIGHER_IS_BETTER:
                self.ratio = self.value / self.baseline
            else:
                self.ratio = self.baseline / self.value

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def fmt(value: float | None, unit: str) -> str:
    """``1,234 files/s``, ``12.3 MB/s``, ``0.84 s``, ``950 ms``; ``-`` for None."""
    if value is None:
        return "-"
    if unit == "ms" or abs(value) >= 100:
        number = f"{value:,.0f}"
    elif abs(value) >= 10:
        number = f"{value:.1f}"
    else:
        number = f"{value:.2f}"
    return f"{number} {unit}"


def _ratio(r: Row) -> str:
    if r.ratio is None:
        return "n/a"
    return f"{r.ratio:.2f}x" if r.ratio < 100 else f"{r.ratio:,.0f}x"


def table(rows: list[Row], footer: list[str] = ()) -> str:
    """The aligned text table (notes last, unpadded)."""
    head = ["STORE", "WORKLOAD", "PIPECTL", "BASELINE", "RATIO", "NOTES"]
    body = []
    for r in rows:
        pip = fmt(r.value, r.unit) if r.value is not None else "n/a"
        if r.stat and r.value is not None:
            pip += f" ({r.stat})"
        if r.baseline is None:
            base = f"n/a{' (' + r.baseline_name + ')' if r.baseline_name else ''}"
        else:
            base = f"{fmt(r.baseline, r.baseline_unit)} ({r.baseline_name})"
        notes = r.notes
        if r.target:
            mark = {True: "MET", False: "MISSED", None: "?"}[r.target_met]
            notes = f"target {r.target}: {mark}; {notes}" if notes else f"target {r.target}: {mark}"
        body.append([r.store, r.workload, pip, base, _ratio(r), notes])
    widths = [max(len(str(line[i])) for line in [head] + body) for i in range(len(head) - 1)]
    out = []
    for line in [head] + body:
        cells = [str(c).ljust(w) if i != 4 else str(c).rjust(w) for i, (c, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells + [line[-1]]).rstrip())
    rule = "-" * max(len(x) for x in out[:1] + out[1:2])
    return "\n".join([out[0], rule] + out[1:] + [rule] + list(footer))


def write_json(path: str, rows: list[Row], meta: dict) -> None:
    with open(path, "w") as f:
        json.dump({"meta": meta, "ratio_direction": FOOTER, "rows": [r.to_dict() for r in rows]}, f, indent=1)
        f.write("\n")
