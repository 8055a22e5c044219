"""Dataset readers against the real files."""

import csv
from collections import Counter

import numpy as np
import pytest

from agegender.data.csv_labels import read_labels_csv
from agegender.data.imdb_wiki import NoiseFilter, age_at_photo, load_mat, matlab_datenum_to_date, read_imdb_wiki
from agegender.data.utkface import parse_utkface_name, read_utkface
from agegender.types import Gender

from .conftest import UTK_DIR, UTK_SPLIT, WIKI_MAT, need


def test_utkface_names_and_split():
    samples = read_utkface(need(UTK_DIR), need(UTK_SPLIT))
    assert Counter(s.split for s in samples) == {"train": 18937, "val": 2380, "test": 2390}
    by_name = {s.path.split("/")[-1]: s for s in samples}
    s = by_name["100_0_0_20170112213500903.jpg.chip.jpg"]
    assert s.age == 100 and s.gender is Gender.MALE and s.extra["race"] == "white"
    # UTKFace gender code 1 is female
    female = next(s for n, s in by_name.items() if n.split("_")[1] == "1")
    assert female.gender is Gender.FEMALE
    assert parse_utkface_name("25_1_2_2017.jpg.chip.jpg") == (25, Gender.FEMALE, "asian")
    assert parse_utkface_name("39_1_20170116174525125.jpg.chip.jpg")[2] == "unknown"  # no race field
    with pytest.raises(ValueError):
        parse_utkface_name("garbage.jpg")


def test_wiki_mat_filter_counts_and_conversions():
    mat = load_mat(need(WIKI_MAT))
    assert len(mat["dob"]) == 62328
    assert matlab_datenum_to_date(723671).isoformat() == "1981-05-05"  # entry 0: 10000217_1981-05-05_2009.jpg
    assert age_at_photo(723671, 2009) == 28
    assert age_at_photo(matlab_datenum_to_date_inverse(1981, 7, 1), 2009) == 27  # born in July or later: minus one
    samples, report = read_imdb_wiki(WIKI_MAT)
    assert report.total == 62328
    assert report.kept == len(samples) == 38138
    assert dict(report.dropped) == {"no_face": 18016, "low_face_score": 1319, "second_face": 4070,
                                    "unknown_gender": 736, "age_out_of_range": 49}
    # IMDB-WIKI codes 1.0 = male; our enum 0 = male
    first = samples[0]
    assert first.path.endswith("17/10000217_1981-05-05_2009.jpg") and first.gender is Gender.MALE and first.age == 28
    genders = np.array([s.gender.value for s in samples])
    n_male_mat = int(np.nansum(mat["gender"] == 1.0))
    assert (genders == 0).sum() <= n_male_mat
    # thresholds are flags: a looser filter keeps more
    loose, _ = read_imdb_wiki(WIKI_MAT, flt=NoiseFilter(min_score=0.0, drop_second_face=False))
    assert len(loose) > len(samples)


def matlab_datenum_to_date_inverse(y: int, m: int, d: int) -> int:
    from datetime import date

    return date(y, m, d).toordinal() + 366


def test_csv_reader(tmp_path):
    p = tmp_path / "labels.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "age", "gender", "split", "note"])
        w.writerow(["a.jpg", "31", "female", "train", "x"])
        w.writerow(["/abs/b.jpg", "", "M", "", ""])
    s = read_labels_csv(p)
    assert s[0].path == str(tmp_path / "a.jpg") and s[0].age == 31 and s[0].gender is Gender.FEMALE
    assert s[0].extra == {"note": "x"}
    assert s[1].path == "/abs/b.jpg" and s[1].age is None and s[1].gender is Gender.MALE and s[1].split is None
    with open(p, "a") as f:
        f.write("c.jpg,12,alien,train,\n")
    with pytest.raises(ValueError, match="labels.csv:4"):
        read_labels_csv(p)


def test_aaf_labels_and_gender_words():
    from agegender.data import read_aaf

    from .conftest import AAF_DIR

    samples = read_aaf(need(AAF_DIR))
    assert Counter(s.split for s in samples) == {"train": 10302, "val": 1292}
    assert Counter(s.gender for s in samples) == {Gender.FEMALE: 6469, Gender.MALE: 5125}
    first = samples[0]
    assert first.path == str(AAF_DIR / "images" / "00001A02.jpg") and first.age == 2 and first.gender is Gender.FEMALE
    ages = np.array([s.age for s in samples])
    assert ages.min() == 2 and ages.max() == 80
    assert all(s.extra == {"dataset": "aaf"} for s in samples[:5])
