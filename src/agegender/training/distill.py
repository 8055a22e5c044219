"""Knowledge distillation: a trained teacher's soft predictions on every training crop, computed once.

The student then learns from a mix of the true labels and the teacher's age distribution and P(female)
(`agegender train --teacher MODEL --distill W`). The teacher sees each stored crop (and its mirror image)
without augmentation; mild augmentation of the student's input leaves those targets valid.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..align import from_stored_crop
from ..fileio import sha256_of
from ..models.estimator import load_estimator, resolve_model_path
from ..types import Preprocessing
from .batches import CropSource, read_crop
from .init_weights import refuse_untrainable


def teacher_targets(teacher: str, src: CropSource, data_prep: Preprocessing, student_prep: Preprocessing,
                    batch_size: int = 256, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) age distributions over the student's K age classes and (N,) P(female) from `teacher` for the N
    crops of `src`.

    data_prep: how the dataset's crops were cut; the teacher must cut faces the same way (crop mode) with a
    margin no wider (it sees the centre of each crop at its own margin, as at inference), and predict ages
    within the student's range (e.g. a 0..99 teacher for a 0..100 student: age 100 gets probability 0),
    else ValueError.
    """
    est = load_estimator(teacher)
    refuse_untrainable("--teacher", teacher, est.config)
    tp = est.preprocessing
    if tp.crop != data_prep.crop or tp.margin > data_prep.margin + 1e-9:
        raise ValueError(f"teacher {teacher!r} expects {tp.crop} crops with margin {tp.margin}; this dataset "
                         f"holds {data_prep.crop} crops with margin {data_prep.margin} (a teacher's margin may be "
                         "narrower, never wider)")
    first = tp.age_min - student_prep.age_min  # the student's class of the teacher's youngest age
    if first < 0 or tp.age_max > student_prep.age_max:
        raise ValueError(f"teacher {teacher!r} predicts ages {tp.age_min}..{tp.age_max}; the student "
                         f"{student_prep.age_min}..{student_prep.age_max} (the teacher's range must lie within "
                         "the student's)")
    n = len(src)
    ages = np.zeros((n, student_prep.num_ages), np.float32)  # ages outside the teacher's range: probability 0
    female = np.empty(n, np.float32)
    for start in tqdm(range(0, n, batch_size), desc=f"teacher {est.name}", unit="batch", disable=not progress,
                      mininterval=1.0):
        stop = min(start + batch_size, n)
        if src.images is not None:
            crops = src.images[start:stop].cpu().numpy()
        else:
            crops = np.stack([read_crop(src.paths[i], src.size) for i in range(start, stop)])
        out = est.estimate(np.stack([from_stored_crop(c, data_prep, tp) for c in crops]), flip_tta=True)
        ages[start:stop, first:first + tp.num_ages], female[start:stop] = out.age_probs, out.p_female
    return torch.from_numpy(ages), torch.from_numpy(female)


def teacher_cache_key(teacher: str, paths: Sequence[str | os.PathLike[str]]) -> str:
    """What a teacher.npz answers for: the teacher file's content and the crops' paths, in order."""
    resolved = resolve_model_path(teacher)
    return hashlib.sha1("\n".join([sha256_of(resolved), *map(str, paths)]).encode()).hexdigest()


def rekey_teacher_cache(src: Path, dst: Path, teacher: str, old_paths: Sequence[str | os.PathLike[str]],
                        new_paths: Sequence[str | os.PathLike[str]]) -> None:
    """Copy the teacher answers in `src` (computed by `teacher` for the crops at `old_paths`) to `dst`, keyed
    for the same faces at `new_paths` (e.g. a repacked copy of the data, row for row), so that a run on the
    new copy reuses them. ValueError if `src` does not hold answers for `old_paths` from `teacher`, or the
    two path lists differ in length."""
    if len(old_paths) != len(new_paths):
        raise ValueError(f"{len(old_paths)} crops before and {len(new_paths)} after: not the same faces")
    ages, female = load_teacher_answers(src, teacher, old_paths)
    _save_answers(dst, teacher_cache_key(teacher, new_paths), ages, female)


def load_teacher_answers(src: Path, teacher: str,
                         paths: Sequence[str | os.PathLike[str]]) -> tuple[np.ndarray, np.ndarray]:
    """The answers in a teacher.npz: ages (N, K) distributions and female (N,) P(female), N = len(paths).
    ValueError if they are not `teacher`'s for the crops at `paths`, in that order (cheap: hashes the teacher
    file and the path list, reads no crop), so a caller can check them before costly work."""
    with np.load(src) as z:
        if str(z["key"]) != teacher_cache_key(teacher, paths):
            raise ValueError(f"{src}: not {teacher}'s answers for these {len(paths)} crops (the key differs)")
        ages, female = z["ages"], z["female"]
    if len(ages) != len(paths):
        raise ValueError(f"{src}: {len(ages)} answers for {len(paths)} crops")
    return ages, female


def _save_answers(path: Path, key: str, ages: np.ndarray, female: np.ndarray) -> None:
    """Write a teacher.npz atomically (ages: (N, K) distributions, female: (N,) P(female))."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, key=key, ages=ages, female=female)
    os.replace(tmp, path)


def cached_teacher_targets(path: Path, teacher: str, src: CropSource, data_prep: Preprocessing,
                           student_prep: Preprocessing, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """teacher_targets, kept in `path` (.npz in the run folder) so that --resume, and a rerun on the same
    crops with the same teacher file, do not compute them again."""
    key = teacher_cache_key(teacher, src.paths)
    if path.is_file():
        with np.load(path) as z:
            if str(z["key"]) == key:
                return torch.from_numpy(z["ages"]), torch.from_numpy(z["female"])
    ages, female = teacher_targets(teacher, src, data_prep, student_prep, progress=progress)
    _save_answers(path, key, ages.numpy(), female.numpy())
    return ages, female


def soft_targets(run: Path, teacher: str, src: CropSource, data_prep: Preprocessing, student_prep: Preprocessing,
                 temperature: float = 1.0, gender_teacher: str = "", progress: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """A run's distillation targets for the N crops of `src`: `teacher`'s (N, K) age distributions, sharpened or
    flattened at `temperature` (see `sharpen`), and (N,) P(female) from `gender_teacher` when one is given (`train
    --gender-teacher`), else from `teacher`. Each teacher's answers are kept in the run folder (teacher.npz,
    gender_teacher.npz) and reused by --resume and reruns."""
    check_temperature(temperature)
    ages, female = cached_teacher_targets(run / "teacher.npz", teacher, src, data_prep, student_prep, progress)
    if gender_teacher:
        female = cached_teacher_targets(run / "gender_teacher.npz", gender_teacher, src, data_prep, student_prep,
                                        progress)[1]
    return sharpen(ages, temperature), female


def check_temperature(temperature: float) -> None:
    """`train --teacher-temperature` must be > 0 (refused before the teacher's long pass)."""
    if temperature <= 0:
        raise ValueError(f"--teacher-temperature must be > 0, got {temperature}")


def sharpen(dist: torch.Tensor, temperature: float) -> torch.Tensor:
    """(N, K) probability rows -> rows proportional to dist ** (1 / temperature): below 1 sharper (the mass moves
    towards each row's mode), 1 unchanged, above 1 flatter. Classes with probability 0 stay at 0."""
    check_temperature(temperature)
    if temperature == 1.0:
        return dist
    logp = torch.log(dist.double().clamp_min(1e-300)) / temperature
    out = torch.softmax(logp, 1) * (dist > 0)
    return (out / out.sum(1, keepdim=True)).to(dist.dtype)


def parse_age_weights(spec: str) -> tuple[tuple[float, float], ...]:
    """'30:0.5' or '15:0.6,60:0.3' -> ((age_from, weight), ...) sorted by age: from each labelled age upward the
    age targets take that teacher weight (`train --distill-by-age`). '' -> (). Weights must lie within 0..1."""
    steps = []
    for part in filter(None, (x.strip() for x in spec.split(","))):
        try:
            age, weight = (float(v) for v in part.split(":"))
        except ValueError:
            raise ValueError(f"--distill-by-age takes AGE:WEIGHT[,AGE:WEIGHT...], got {spec!r}") from None
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"--distill-by-age weights must be within 0..1, got {weight} in {spec!r}")
        steps.append((age, weight))
    return tuple(sorted(steps))


def weight_by_age(ages: torch.Tensor, weight: float, steps: tuple[tuple[float, float], ...]) -> torch.Tensor | float:
    """The age targets' teacher weight per sample: `weight` below the first step's age, then each step's weight
    from its age upward. ages (B,) in years (NaN = unlabelled, which keeps `weight`); returns (B,), or `weight`
    itself when there are no steps."""
    if not steps:
        return weight
    w = torch.full_like(ages, weight, dtype=torch.float32)
    for age_from, step_weight in steps:
        w = torch.where(ages >= age_from, torch.as_tensor(step_weight, dtype=w.dtype, device=w.device), w)
    return w


def mix_targets(gender_t: torch.Tensor, age_dist: torch.Tensor, age_values: torch.Tensor, known_age: torch.Tensor,
                teacher_age: torch.Tensor, teacher_female: torch.Tensor, weight: float | torch.Tensor,
                age_min: int = 0, gender_weight: float | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blend label targets with the teacher's: weight 0 = labels only, 1 = teacher only.

    `weight` (a number, or (B,) per sample) blends the age targets and, unless `gender_weight` gives the gender
    targets their own, those too.

    gender_t (B, 2), age_dist (B, K), age_values (B,) as the loss takes them; known_age (B,) bool.
    Samples without a label (zero rows) take the teacher's targets alone; the L1 target stays the true
    age where there is one.
    """
    t_gender = torch.stack([1 - teacher_female, teacher_female], 1)
    g_known = (gender_t.sum(1) > 0).unsqueeze(1)
    w = weight.to(age_dist).unsqueeze(1) if isinstance(weight, torch.Tensor) else weight
    gw = w if gender_weight is None else gender_weight
    gender = torch.where(g_known, (1 - gw) * gender_t + gw * t_gender, t_gender)
    a_known = known_age.unsqueeze(1)
    dist = torch.where(a_known, (1 - w) * age_dist + w * teacher_age, teacher_age)
    grid = torch.arange(age_min, age_min + teacher_age.shape[1], device=teacher_age.device, dtype=torch.float32)
    values = torch.where(known_age, age_values, teacher_age @ grid)
    return gender, dist, values
