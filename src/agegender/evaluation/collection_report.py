"""`agegender report`: a collection's make-up (evaluation/collection.py) as PNG plots, the CSV behind each plot,
summary.json, and one self-contained HTML page that shows them all (the PNGs inlined as data: URLs, no
script, a Content-Security-Policy that lets the page load nothing from anywhere).

    report/index.html  summary.json  errors.csv
    report/age_pyramid.png|.csv  faces_per_image.png|.csv  folders.png|.csv  detector_scores.png|.csv
    report/gender_confidence.png|.csv
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..extras import require
from ..fileio import atomic_write_text
from . import collection as c
from .plots import _plt

MALE, FEMALE, OTHER = "#4c72b0", "#dd8452", "#55a868"
#: folders drawn in folders.png (the CSV has them all)
TOP_FOLDERS = 25


@dataclass
class Section:
    """One plot of the page: file stem, title, a sentence on how to read it, its numbers, its drawing."""

    name: str
    title: str
    caption: str
    table: c.Table
    draw: Callable[[Any, c.Table], None]  # (matplotlib Axes, table) -> None


def _pyramid(ax, t: c.Table) -> None:
    y = np.arange(len(t.rows))
    ax.barh(y, [-v for v in t.column("male")], color=MALE, label="male")
    ax.barh(y, t.column("female"), color=FEMALE, label="female")
    ax.set_yticks(y, t.column("age_group"))
    top = max([1, *t.column("male"), *t.column("female")])
    ax.set_xlim(-top * 1.1, top * 1.1)
    ax.xaxis.set_major_formatter(lambda v, _: f"{abs(v):g}")
    ax.set_xlabel("faces")
    ax.set_ylabel("estimated age")
    ax.axvline(0, color="k", lw=0.8)
    ax.legend(loc="upper right")


def _bars(column: str, label: str, color: str = OTHER) -> Callable[[Any, c.Table], None]:
    def draw(ax, t: c.Table) -> None:
        names = [str(v) for v in t.column(t.header[0])]
        bars = ax.bar(names, t.column(column), color=color)
        ax.bar_label(bars, fontsize=8)
        ax.set_xlabel(t.header[0].replace("_", " "))
        ax.set_ylabel(label)

    return draw


def _folders(ax, t: c.Table) -> None:
    rows = t.rows[:TOP_FOLDERS][::-1]
    names = [r[0] for r in rows]
    root = os.path.commonpath(names) if len(names) > 1 and all(n.startswith("/") == names[0].startswith("/")
                                                               for n in names) else ""
    female = [r[t.header.index("female")] for r in rows]
    male = [r[t.header.index("male")] for r in rows]
    labels = [_short(os.path.relpath(n, root) if root else n) for n in names]
    ax.barh(labels, male, color=MALE, label="male faces")
    ax.barh(labels, female, left=male, color=FEMALE, label="female faces")
    ax.set_xlabel(f"faces (folders in {_short(root, 70)})" if root else "faces")
    ax.legend(loc="lower right")
    ax.tick_params(axis="y", labelsize=8)


def _short(folder: str, width: int = 40) -> str:
    return folder if len(folder) <= width else "..." + folder[-(width - 3):]


def _scores(ax, t: c.Table) -> None:
    lefts = t.column("score_from")
    widths = [b - a for a, b in zip(lefts, t.column("score_to"))]
    ax.bar(lefts, t.column("faces"), width=widths, align="edge", color=OTHER, edgecolor="white")
    ax.set_xlabel("detector score")
    ax.set_ylabel("faces")


def _confidence(threshold: float) -> Callable[[Any, c.Table], None]:
    def draw(ax, t: c.Table) -> None:
        shares = [100 * (s or 0.0) for s in t.column("share")]
        bars = ax.bar(t.column("age_group"), shares, color=OTHER)
        ax.bar_label(bars, labels=[f"{k}/{n}" if n else "" for k, n in zip(t.column("low_confidence"),
                                                                             t.column("faces"))], fontsize=7)
        ax.set_xlabel("estimated age")
        ax.set_ylabel(f"% of faces with P(gender) < {threshold:g}")
        ax.tick_params(axis="x", labelrotation=60)

    return draw


def sections(r: c.Results, threshold: float = c.LOW_CONFIDENCE) -> list[Section]:
    """The page's plots, in order."""
    return [
        Section("age_pyramid", "Age by gender", "Faces per estimated age group: men to the left, women to the right.",
                c.age_pyramid(r), _pyramid),
        Section("faces_per_image", "Faces per image", "Images read without error, by the number of faces estimated "
                f"in them ({c.MAX_FACES_BAR}+ pooled).", c.faces_per_image(r), _bars("images", "images")),
        Section("folders", "Faces by folder", f"The {TOP_FOLDERS} folders with the most faces, split by gender; the "
                "CSV lists every folder with its images, errors and images without a face.", c.by_folder(r), _folders),
        Section("detector_scores", "Detector scores", "Faces per detector confidence: a pile-up near the threshold "
                "means many doubtful detections.", c.detector_scores(r), _scores),
        Section("gender_confidence", "Low-confidence genders", f"Share of faces per age group whose gender probability "
                f"is under {threshold:g} (labels: low / all); children's faces are the usual doubt.",
                c.gender_confidence(r, threshold), _confidence(threshold)),
    ]


def write_report(results: str | os.PathLike[str], out: str | os.PathLike[str],
                 threshold: float = c.LOW_CONFIDENCE) -> Path:
    """Read `results` (JSON lines or Parquet), write the report into folder `out`; returns index.html's path."""
    if c.is_parquet(results):
        require("pyarrow.parquet", "reading Parquet results", extra="parquet")  # named before matplotlib, if both miss
    plt = _plt()
    r = c.load_results(results)
    if not len(r):
        raise ValueError(f"{results}: no results in it")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = c.summary(r, threshold) | {"results": str(results)}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    c.error_list(r).to_csv(out / "errors.csv")
    parts = []
    for s in sections(r, threshold):
        s.table.to_csv(out / f"{s.name}.csv")
        height = 4.2 if s.name != "folders" else max(3.0, 0.28 * min(len(s.table.rows), TOP_FOLDERS) + 1.2)
        fig, ax = plt.subplots(figsize=(8, height))
        s.draw(ax, s.table)
        ax.set_title(s.title)
        ax.grid(axis="x" if s.name in ("age_pyramid", "folders") else "y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / f"{s.name}.png", dpi=100)
        plt.close(fig)
        parts.append(_section_html(s, (out / f"{s.name}.png").read_bytes()))
    page = _page(summary, parts, c.error_list(r))
    atomic_write_text(out / "index.html", page)
    return out / "index.html"


def _table_html(t: c.Table, limit: int | None = None) -> str:
    rows = t.rows if limit is None else t.rows[:limit]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    more = f"<p class=more>{len(t.rows) - len(rows)} more rows in the CSV</p>" if len(rows) < len(t.rows) else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _section_html(s: Section, png: bytes) -> str:
    data = base64.b64encode(png).decode()
    return (f'<section id="{s.name}"><h2>{html.escape(s.title)}</h2><p>{html.escape(s.caption)}</p>'
            f'<img src="data:image/png;base64,{data}" alt="{html.escape(s.title)}">'
            f'<details><summary>Numbers (<a href="{s.name}.csv">{s.name}.csv</a>)</summary>'
            f"{_table_html(s.table, 200)}</details></section>")


def _percent(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _page(summary: dict[str, Any], parts: list[str], errors: c.Table) -> str:
    facts = [
        ("images", summary["images"]), ("images with faces", summary["images_with_faces"]),
        ("images without a face", summary["images_without_face"]), ("unreadable images", summary["errors"]),
        ("faces", summary["faces"]), ("women", _percent(summary["female_share"])),
        ("median estimated age", "-" if summary["median_age"] is None else summary["median_age"]),
        (f"genders with P < {summary['low_confidence_threshold']:g}", _percent(summary["low_confidence_share"])),
        ("model", ", ".join(summary["models"]) or "not recorded (JSON lines)"),
    ]
    rows = "".join(f'<tr><th>{html.escape(k)}</th><td data-fact="{html.escape(k)}">{html.escape(str(v))}</td></tr>'
                   for k, v in facts)
    error_part = (f'<section id="errors"><h2>Unreadable images</h2>{_table_html(errors, 50)}'
                  '<p><a href="errors.csv">errors.csv</a></p></section>') if errors.rows else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>agegender report: {html.escape(str(summary["results"]))}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 900px; margin: 1.5em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0; font-size: 14px; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; }}
img {{ max-width: 100%; height: auto; display: block; }}
section {{ margin: 2em 0; }} .more {{ color: #666; font-size: 13px; }}
</style></head><body>
<h1>Who is in this collection</h1>
<p>Estimated by agegender from <code>{html.escape(str(summary["results"]))}</code>. Ages and genders are a model's
estimates from a face, not facts about the people: read them as a collection's rough make-up.</p>
<table id="summary">{rows}</table>
{"".join(parts)}
{error_part}
</body></html>
"""
