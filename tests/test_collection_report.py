"""`agegender report` on the real results of a photo collection (UTKFace subset, the portraits, a photo of
four faces, one with none, unreadable files): every CSV holds the numbers counted here straight from the
JSON lines; JSON lines and Parquet give the same report; the page opens in headless Chromium with its five
plots drawn, its numbers shown, and nothing loaded from anywhere."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from .conftest import cli, need_module, need_program

need_module("matplotlib")
need_module("pyarrow.parquet", 'pip install -e ".[parquet]"')

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PLOTS = ["age_pyramid", "faces_per_image", "folders", "detector_scores", "gender_confidence"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def reports(collection_jsonl, collection_parquet, tmp_path_factory) -> tuple[Path, Path]:
    """The report of the JSON lines and of the Parquet folder (the same results)."""
    base = tmp_path_factory.mktemp("report")
    out = cli("report", str(collection_jsonl), "-o", str(base / "from_jsonl"))
    assert f"report written to {base / 'from_jsonl' / 'index.html'}" in out.stdout
    cli("report", str(collection_parquet), "-o", str(base / "from_parquet"))
    return base / "from_jsonl", base / "from_parquet"


def test_csvs_hold_the_counts_of_the_results(reports, collection_jsonl):
    report, _ = reports
    lines = [json.loads(line) for line in collection_jsonl.read_text().splitlines()]
    read = [r for r in lines if "error" not in r]
    faces = [f for r in read for f in r["faces"]]
    group = [min(int(f["age"] // 5), 18) for f in faces]  # 5-year groups, 90+ the last
    pyramid = read_csv(report / "age_pyramid.csv")
    assert len(pyramid) == 19 and pyramid[0]["age_group"] == "0-4" and pyramid[-1]["age_group"] == "90+"
    for g in ("male", "female"):
        counts = Counter(i for i, f in zip(group, faces) if f["gender"] == g)
        assert [int(row[g]) for row in pyramid] == [counts[i] for i in range(19)], g
    per_image = Counter(min(len(r["faces"]), 10) for r in read)
    assert [int(row["images"]) for row in read_csv(report / "faces_per_image.csv")] == [per_image[n] for n in range(11)]
    assert per_image[4] == 1 and per_image[0] >= 1  # the photo of four faces; the grey image
    folders = {row["folder"]: row for row in read_csv(report / "folders.csv")}
    for name in {os.path.dirname(r["image"]) for r in lines}:
        here = [r for r in lines if os.path.dirname(r["image"]) == name]
        row = folders[name]
        assert int(row["images"]) == len(here) and int(row["errors"]) == sum("error" in r for r in here)
        assert int(row["faces"]) == sum(len(r["faces"]) for r in here)
        assert int(row["female"]) == sum(f["gender"] == "female" for r in here for f in r["faces"])
    assert int(folders[os.path.dirname(lines[-1]["image"])]["errors"]) == 4  # odd/: 3 bad files and the missing one
    scores = read_csv(report / "detector_scores.csv")
    assert sum(int(row["faces"]) for row in scores) == len(faces) and float(scores[-1]["score_to"]) == 1.0
    assert float(scores[0]["score_from"]) <= min(f["score"] for f in faces)
    confidence = read_csv(report / "gender_confidence.csv")
    low = Counter(i for i, f in zip(group, faces) if f["gender_probability"] < 0.75)
    assert [int(row["low_confidence"]) for row in confidence] == [low[i] for i in range(19)]
    summary = json.loads((report / "summary.json").read_text())
    assert (summary["images"], summary["errors"], summary["faces"]) == (len(lines), 4, len(faces))
    assert summary["low_confidence"] == sum(low.values()) and summary["models"] == []  # JSON lines name no model
    errors = read_csv(report / "errors.csv")
    assert len(errors) == 4 and all(row["image"] in row["error"] for row in errors)


def test_jsonl_and_parquet_give_the_same_report(reports):
    from_jsonl, from_parquet = reports
    for name in [f"{p}.csv" for p in PLOTS] + ["errors.csv"]:
        assert (from_jsonl / name).read_text() == (from_parquet / name).read_text(), name
    a, b = (json.loads((r / "summary.json").read_text()) for r in reports)
    assert b["models"] and b["models"][0].startswith("default sha256:")
    assert {k: v for k, v in a.items() if k not in ("results", "models")} == \
        {k: v for k, v in b.items() if k not in ("results", "models")}


def test_page_in_headless_chromium(reports):
    need_module("playwright.sync_api", "the dev extra has playwright")
    need_program(str(CHROMIUM), "apt-get install chromium; .ci/run installs it")
    from playwright.sync_api import sync_playwright

    report = reports[1]
    summary = json.loads((report / "summary.json").read_text())
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            requests, problems = [], []
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto((report / "index.html").as_uri())
            page.wait_for_load_state("load")
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])")
            facts = dict(page.eval_on_selector_all("td[data-fact]", "els => els.map(e => [e.dataset.fact, "
                                                   "e.textContent])"))
            links = page.eval_on_selector_all("a[href$='.csv']", "els => els.map(e => e.getAttribute('href'))")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "collection-report.png"), full_page=True)
        finally:
            browser.close()
    assert len(images) == 5 and all(done and width >= 600 for _, done, width in images), images
    assert facts["images"] == str(summary["images"]) and facts["faces"] == str(summary["faces"])
    assert facts["unreadable images"] == "4" and facts["model"].startswith("default sha256:")
    assert facts["women"] == f"{100 * summary['female_share']:.1f}%"
    assert sorted(links) == sorted([f"{p}.csv" for p in PLOTS] + ["errors.csv"])
    assert all((report / link).is_file() for link in links)
    assert requests == [(report / "index.html").as_uri()]  # the page loads nothing else (PNGs are inline)
    assert not problems, problems  # no script errors, no Content-Security-Policy violations
