import pytest

from agegender.types import Gender, Preprocessing


def test_gender_parse_and_labels():
    assert Gender.parse("Female") is Gender.FEMALE
    assert Gender.parse("m") is Gender.MALE
    assert Gender.parse(0) is Gender.MALE and Gender.parse("1") is Gender.FEMALE
    assert Gender.FEMALE.label == "female" and Gender.MALE.short == "M"
    with pytest.raises(ValueError, match="unknown gender"):
        Gender.parse("x")


def test_preprocessing_round_trip_and_validation():
    p = Preprocessing(crop="box", margin=0.4, size=64, color="BGR", mean=(0, 0, 0), std=(1, 1, 1))
    assert Preprocessing.from_dict(p.to_dict()) == p
    assert p.num_ages == 101
    with pytest.raises(ValueError, match="newer"):
        Preprocessing.from_dict(dict(p.to_dict(), version=99))
    with pytest.raises(ValueError):
        Preprocessing(crop="circle")
