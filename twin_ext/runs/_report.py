# SPDX-License-Identifier: Apache-2.0
"""A self-contained HTML report of a twin run: measured vs estimated vs truth, errors, link health, what-ifs.

Plots are drawn with matplotlib (Agg, no display needed) and embedded as PNG data URIs, so the report is
one file that opens anywhere. Also writes each figure as a PNG beside the HTML for quick viewing.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ReportData", "write_report", "tracking_errors"]


@dataclass
class ReportData:
    """What the report shows. Times are seconds from the start of the run; angles rad.

    Attributes:
        title: report heading.
        joint_names: ``[ndof]``.
        t: ``[T]`` display times, s.
        estimated: ``[T, ndof]`` displayed estimate.
        std: ``[T, ndof]`` its 1-sigma.
        measured: ``[T, ndof]`` newest measurement at each display time (last-sample-hold).
        truth: ``[T, ndof]`` the plant at each display time, or None when there is no ground truth.
        health: ``[T]`` 0 ok, 1 stale, 2 lost.
        summary: ordered (label, value) rows for the run table.
        whatifs: what-if results: dicts with at least ``title`` and ``text`` (a readable summary), optionally
            ``rows`` (list of dicts for a table).
        figures_extra: extra (title, matplotlib Figure) pairs.
        tables: extra sections: dicts with ``title``, ``rows`` (list of dicts) and optionally ``text``.
    """

    title: str
    joint_names: Sequence[str]
    t: np.ndarray
    estimated: np.ndarray
    std: np.ndarray
    measured: np.ndarray
    truth: np.ndarray | None = None
    health: np.ndarray | None = None
    summary: list[tuple[str, str]] = field(default_factory=list)
    whatifs: list[Mapping[str, Any]] = field(default_factory=list)
    figures_extra: list[tuple[str, Any]] = field(default_factory=list)
    tables: list[Mapping[str, Any]] = field(default_factory=list)


def tracking_errors(estimate: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """RMS and 99th-percentile absolute error over all joints and ticks (NaNs ignored), rad."""
    err = np.abs(estimate - truth)
    err = err[np.isfinite(err)]
    if err.size == 0:
        return {"rms": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"rms": float(np.sqrt(np.mean(err**2))), "p99": float(np.percentile(err, 99)), "max": float(err.max())}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _joint_figure(data: ReportData, joints: Sequence[int]):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(joints), 1, figsize=(10, 1.9 * len(joints)), sharex=True, squeeze=False)
    for ax, j in zip(axes[:, 0], joints, strict=False):
        if data.truth is not None:
            ax.plot(data.t, data.truth[:, j], color="0.2", lw=2.2, alpha=0.35, label="plant (truth)")
        ax.plot(
            data.t,
            data.measured[:, j],
            color="tab:orange",
            lw=0.8,
            drawstyle="steps-post",
            label="newest measurement (held)",
        )
        ax.plot(data.t, data.estimated[:, j], color="tab:blue", lw=1.0, label="twin estimate")
        band = 3 * data.std[:, j]
        known = np.ones(len(data.t), dtype=bool) if data.health is None else data.health == 0
        ax.fill_between(
            data.t,
            data.estimated[:, j] - band,
            data.estimated[:, j] + band,
            where=known,
            color="tab:blue",
            alpha=0.15,
            lw=0,
            label="±3σ (while ok)",
        )
        # Axis limits from what was measured and estimated while the twin knew the state (a lost twin's
        # uncertainty is huge and would flatten every curve).
        shown = [data.estimated[known, j], data.measured[known, j]]
        if data.truth is not None:
            shown.append(data.truth[:, j])
        values = np.concatenate([v[np.isfinite(v)] for v in shown]) if shown else np.array([])
        if values.size:
            lo, hi = float(values.min()), float(values.max())
            pad = max(0.05 * (hi - lo), 1e-3)
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_ylabel(f"{data.joint_names[j]}\n[rad|m]", fontsize=8)
        ax.tick_params(labelsize=7)
        if data.health is not None:
            bad = data.health > 0
            if np.any(bad):
                ax.fill_between(
                    data.t,
                    0,
                    1,
                    where=bad,
                    transform=ax.get_xaxis_transform(),
                    color="tab:red",
                    alpha=0.1,
                    lw=0,
                    label="stale / lost",
                )
    handles, labels = axes[0, 0].get_legend_handles_labels()
    axes[-1, 0].set_xlabel("time [s]")
    fig.suptitle("Joint positions: measured vs estimated vs truth", fontsize=10, y=0.995)
    fig.legend(handles, labels, loc="upper center", ncol=5, fontsize=7, bbox_to_anchor=(0.5, 0.985))
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def _error_figure(data: ReportData):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 2.8))

    def worst(err: np.ndarray) -> np.ndarray:
        err = np.where(np.isfinite(err), err, -np.inf).max(axis=1)  # NaN rows (no data yet) stay gaps
        return np.where(np.isfinite(err), err * 1e3 + 1e-6, np.nan)

    ax.semilogy(
        data.t,
        worst(np.abs(data.measured - data.truth)),
        color="tab:orange",
        lw=0.8,
        label="newest measurement (last-sample-hold)",
    )
    ax.semilogy(data.t, worst(np.abs(data.estimated - data.truth)), color="tab:blue", lw=0.8, label="twin estimate")
    ax.set_ylabel("max joint error [mrad]")
    ax.set_xlabel("time [s]")
    ax.legend(fontsize=8)
    ax.set_title("Error against the plant at display time (worst joint)", fontsize=10)
    return fig


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    """An HTML table of ``rows`` (the first row's keys are the columns; verdict words are coloured)."""
    if not rows:
        return ""
    cols = list(rows[0].keys())
    out = ["<table><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in cols) + "</tr>"]
    for row in rows:
        cells = []
        for c in cols:
            value = str(row.get(c, ""))
            css = value if value in ("pass", "fail", "unknown") else ""
            cells.append(f"<td class='{css}'>{html.escape(value)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def write_report(path: str | Path, data: ReportData) -> Path:
    """Write ``path`` (HTML) and the figures as PNGs next to it; returns the HTML path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, Any]] = []
    arm = [j for j in range(len(data.joint_names))][:7]
    figures.append(("joints", _joint_figure(data, arm)))
    if data.truth is not None:
        figures.append(("errors", _error_figure(data)))
    figures.extend(data.figures_extra)

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(data.title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}"
        "th{background:#f3f3f3;text-align:left}pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:12px}"
        ".pass{color:#17733a;font-weight:bold}.fail{color:#b00020;font-weight:bold}.unknown{color:#8a6d00;font-weight:bold}"
        "</style></head><body>",
        f"<h1>{html.escape(data.title)}</h1>",
    ]
    if data.summary:
        parts.append("<h2>Run</h2><table>")
        parts.extend(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in data.summary)
        parts.append("</table>")
    for name, fig in figures:
        png = _png(fig)
        (path.parent / f"{path.stem}_{name}.png").write_bytes(png)
        plt.close(fig)
        parts.append(
            f"<img alt='{html.escape(name)}' style='max-width:100%' "
            f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        )
    for item in data.tables:
        parts.append(f"<h2>{html.escape(str(item.get('title', '')))}</h2>")
        parts.append(_table(item.get("rows") or []))
        if item.get("text"):
            parts.append(f"<pre>{html.escape(str(item['text']))}</pre>")
    if data.whatifs:
        parts.append("<h2>What-if</h2>")
        for item in data.whatifs:
            parts.append(f"<h3>{html.escape(str(item.get('title', 'what-if')))}</h3>")
            parts.append(_table(item.get("rows") or []))
            parts.append(f"<pre>{html.escape(str(item.get('text', '')))}</pre>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts))
    return path
