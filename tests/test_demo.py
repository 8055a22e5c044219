"""The live demo, headless: tracking and smoothing, video sources and writer, the CLI on a real clip made
from real portraits (a woman, then a cut to a man), bad inputs and broken frames."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from agegender.cli import main
from agegender.demo import FolderSource, Frame, Tracker, VideoError, VideoSource, VideoWriter, iou_matrix, run_demo
from agegender.demo.clip import write_portrait_clip
from agegender.demo.tracking import appearance_descriptor, greedy_match
from agegender.types import Detection

FRAMES, CUT = 40, 20  # clip length; the person changes at frame CUT


def det(x1: float, y1: float, x2: float, y2: float) -> Detection:
    return Detection(box=(x1, y1, x2, y2), score=0.9)


def count_frames(path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    n, size = 0, (0, 0)
    while True:
        ok, f = cap.read()
        if not ok:
            break
        n, size = n + 1, (f.shape[1], f.shape[0])
    cap.release()
    return n, size


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


# --- tracking (pure numpy) ---------------------------------------------------------------------------------


def test_iou_and_matching():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    b = np.array([[5, 0, 15, 10], [100, 100, 110, 110]])
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 2)
    assert iou[0, 0] == pytest.approx(50 / 150)
    assert iou[0, 1] == 0 and iou[1, 0] == 0 and iou[1, 1] == 0
    assert iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)
    assert greedy_match(np.array([[0.9, 0.8], [0.85, 0.1]]), 0.3) == [(0, 0)]
    assert greedy_match(np.array([[0.9, 0.8], [0.85, 0.4]]), 0.3) == [(0, 0), (1, 1)]


def test_tracker_follows_moving_faces_and_drops_lost_ones():
    tr = Tracker(max_missed=1)
    ids = []
    for i in range(10):  # one face moving right 8 px a frame, a second still one
        tracks = tr.update([det(10 + 8 * i, 10, 110 + 8 * i, 110), det(300, 10, 380, 90)], i)
        ids.append([t.id for t in tracks])
    assert all(x == ids[0] for x in ids) and ids[0][0] != ids[0][1]
    # constant-velocity prediction: 3 frames later the first face is expected 24 px further
    assert tr.tracks[0].predicted_box(12)[0] == pytest.approx(10 + 8 * 12)
    # the still face leaves; a face appears far away: new id; the lost track goes after max_missed rounds
    t = tr.update([det(10 + 8 * 10, 10, 110 + 8 * 10, 110), det(500, 300, 560, 360)], 10)
    assert t[0].id == ids[0][0] and t[1].id not in ids[0]
    tr.update([det(10 + 8 * 11, 10, 110 + 8 * 11, 110)], 11)
    assert ids[0][1] not in [x.id for x in tr.tracks]


def test_appearance_gate_splits_people_at_the_same_place():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    da, db = appearance_descriptor(a), appearance_descriptor(b)
    assert float(da @ da) == pytest.approx(1.0, abs=1e-5)
    tr = Tracker()
    first = tr.update([det(0, 0, 100, 100)], 0, [da])[0].id
    assert tr.update([det(2, 0, 102, 100)], 1, [da])[0].id == first
    assert tr.update([det(2, 0, 102, 100)], 2, [db])[0].id != first


def test_smoothing_is_the_mean_of_the_last_window_estimates():
    tr = Tracker(window=3)
    t = tr.update([det(0, 0, 50, 50)], 0)[0]
    assert t.face(0) is None
    for age, pf in [(20, 0.9), (30, 0.8), (40, 0.1), (50, 0.2)]:
        t.add_estimate(age, pf, (age - 5, age + 10))
    assert t.age == pytest.approx(40) and t.female_probability == pytest.approx(1.1 / 3)
    f = t.face(0)
    assert f is not None and f.gender.label == "male" and f.gender_probability == pytest.approx(1 - 1.1 / 3)
    assert f.age_range == pytest.approx((35, 50)) and t.age_range == f.age_range


def test_smoothed_range_needs_a_range_on_every_estimate_in_the_window():
    tr = Tracker(window=2)
    t = tr.update([det(0, 0, 50, 50)], 0)[0]
    t.add_estimate(30, 0.5, (25, 40))
    t.add_estimate(32, 0.5)  # e.g. a model without a calibration: no range rather than half of one
    assert t.age_range is None and t.face(0).age_range is None
    t.add_estimate(34, 0.5, (28, 44))
    t.add_estimate(36, 0.5, (30, 46))  # the range-less estimate has left the window
    assert t.age_range == pytest.approx((29, 45))


# --- the demo on a real clip --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(frl_images, tmp_path_factory):
    """A 640x480 mp4 of two real portraits: a young woman slides right, then a cut to a man (frame CUT)."""
    by_name = {p.stem: p for p in frl_images}
    path = tmp_path_factory.mktemp("demo") / "clip.mp4"
    assert write_portrait_clip([by_name["003f"], by_name["095m"]], path, frames=FRAMES) == FRAMES
    return path


@pytest.fixture(scope="module")
def demo_run(clip):
    out = clip.parent / "out"
    rc = main(["demo", "--video", str(clip), "--no-window", "--output", str(out / "annotated.mp4"),
               "--jsonl", str(out / "frames.jsonl"), "--no-progress"])
    return rc, out


def test_demo_processes_every_frame_and_writes_the_video(demo_run):
    rc, out = demo_run
    assert rc == 0
    rows = read_jsonl(out / "frames.jsonl")
    assert [r["frame"] for r in rows] == list(range(FRAMES))
    assert all(len(r["faces"]) == 1 and "error" not in r for r in rows)
    assert sum(r["detected"] for r in rows) >= FRAMES // 2  # detection every 2nd frame by default
    assert count_frames(out / "annotated.mp4") == (FRAMES, (640, 480))
    assert not list(out.glob(".*"))  # no temporary file left behind


def test_track_ids_stable_per_person_and_new_after_the_cut(demo_run):
    rows = read_jsonl(demo_run[1] / "frames.jsonl")
    ids = [r["faces"][0]["track"] for r in rows]
    first, second = ids[0], ids[-1]
    assert first != second
    assert all(i == first for i in ids[:CUT])
    assert all(i == second for i in ids[CUT + 1 :])  # at most one frame of the old reading after the cut
    genders = [r["faces"][0]["gender"] for r in rows]
    assert genders[:CUT].count("female") == CUT and genders[CUT + 1 :].count("male") == FRAMES - CUT - 1


def test_smoothed_age_varies_less_than_the_raw_one(demo_run):
    rows = read_jsonl(demo_run[1] / "frames.jsonl")
    for part in (rows[:CUT], rows[CUT + 1 :]):
        est = [r["faces"][0] for r in part if r["faces"][0]["raw_age"] is not None]
        assert len(est) >= 8
        raw_jumps = np.abs(np.diff([f["raw_age"] for f in est]))
        smooth_jumps = np.abs(np.diff([f["age"] for f in est]))
        assert smooth_jumps.mean() < raw_jumps.mean()
        assert smooth_jumps.max() <= raw_jumps.max()


def _check_smoothing(rows: list[dict], window: int) -> int:
    """Each frame's age and P(female) are the mean of the track's last `window` own estimates (raw_*, one
    decimal and four in the JSON); returns on how many frames that differs from the default window's mean
    (in age by more than the JSON's 0.1-year rounding, or in P(female) by more than its 1e-4)."""
    raws: dict[int, list[tuple[float, ...]]] = {}
    differs = 0
    for r in rows:
        for f in r["faces"]:
            if f["raw_age"] is not None:
                raws.setdefault(f["track"], []).append((f["raw_age"], f["raw_gender_probability"],
                                                        *f["raw_age_range"]))
            last = np.array(raws[f["track"]][-window:])
            p_female = f["gender_probability"] if f["gender"] == "female" else 1 - f["gender_probability"]
            assert abs(f["age"] - last[:, 0].mean()) <= 0.1 + 1e-6, (r["frame"], f, last)
            assert abs(p_female - last[:, 1].mean()) <= 2e-4, (r["frame"], f, last)
            assert np.abs(np.array(f["age_range"]) - last[:, 2:].mean(axis=0)).max() <= 0.1 + 1e-6, (r, last)
            assert f["age_range"][0] <= f["age"] <= f["age_range"][1]
            last10 = np.array(raws[f["track"]][-10:])
            differs += bool(abs(f["age"] - last10[:, 0].mean()) > 0.1 + 1e-6
                            or abs(p_female - last10[:, 1].mean()) > 2e-4)
    return differs


def test_demo_defaults_detect_every_2nd_frame_and_smooth_over_10(demo_run):
    rows = read_jsonl(demo_run[1] / "frames.jsonl")
    assert [r["detected"] for r in rows] == [i % 2 == 0 for i in range(FRAMES)]
    assert all((f["raw_age"] is not None) == r["detected"] for r in rows for f in r["faces"])
    _check_smoothing(rows, 10)


def test_demo_cli_flags_smooth_detect_every_max_side(clip, tmp_path):
    """--detect-every 3 --smooth 3 --max-side 640 reach the demo: the detector runs on frames 0, 3, 6, ...
    (the JSON's "detected"), each reading is the mean of the track's last 3 estimates, and the boxes of
    a detected frame are RetinaFace's at a 640-pixel input, not at the default 384."""
    out = tmp_path / "frames.jsonl"
    rc = main(["demo", "--video", str(clip), "--no-window", "--no-progress", "--jsonl", str(out),
               "--detect-every", "3", "--smooth", "3", "--max-side", "640"])
    rows = read_jsonl(out)
    assert rc == 0 and [r["frame"] for r in rows] == list(range(FRAMES))
    assert [r["detected"] for r in rows] == [i % 3 == 0 for i in range(FRAMES)]
    assert _check_smoothing(rows, 3) > 0  # and not the mean over the default 10
    from agegender.detectors import create_detector

    first = next(iter(VideoSource(str(clip)))).image
    (box,) = [f["box"] for f in rows[0]["faces"]]
    at = {side: create_detector("retinaface", max_side=side).detect(first)[0].box for side in (384, 640)}
    assert np.abs(np.array(box) - at[640]).max() <= 0.1
    assert np.abs(np.array(box) - at[384]).max() > 0.5


def test_detect_every_frame_with_reestimate(clip, predictor_1t, tmp_path):
    s = run_demo(VideoSource(str(clip)), predictor_1t, detect_every=1, window=False, progress=False,
                 jsonl=str(tmp_path / "f.jsonl"))
    rows = read_jsonl(tmp_path / "f.jsonl")
    assert s.frames == FRAMES and s.skipped == 0 and s.tracks == 2
    assert all(r["detected"] for r in rows)
    assert [r["faces"][0]["track"] for r in rows] == [1] * CUT + [2] * (FRAMES - CUT)
    s = run_demo(VideoSource(str(clip)), predictor_1t, detect_every=3, reestimate=True, window=False,
                 progress=False, jsonl=str(tmp_path / "g.jsonl"))
    rows = read_jsonl(tmp_path / "g.jsonl")
    assert s.frames == FRAMES and all(r["faces"][0]["raw_age"] is not None for r in rows)


@pytest.fixture(scope="module")
def predictor_1t():
    from agegender import Predictor

    return Predictor(threads=1)


# --- bad inputs and broken frames ----------------------------------------------------------------------------


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("agegender demo: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_unopenable_sources_give_one_line_errors(tmp_path, capsys):
    assert main(["demo", "--video", str(tmp_path / "missing.mp4"), "--no-window"]) == 1
    assert "no such file" in one_line_error(capsys)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all " * 100)
    assert main(["demo", "--video", str(junk), "--no-window"]) == 1
    assert "cannot open" in one_line_error(capsys)
    assert main(["demo", "--camera", "9", "--no-window"]) == 1
    assert "cannot open camera 9" in one_line_error(capsys)
    assert main(["demo", "--dir", str(tmp_path / "nothing"), "--no-window"]) == 1
    assert "no such folder" in one_line_error(capsys)


def test_window_without_display_is_a_clear_error(clip, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["demo", "--video", str(clip)]) == 1
    assert "--no-window" in one_line_error(capsys)


def test_bad_output_name_is_refused_before_running(clip, tmp_path, capsys):
    assert main(["demo", "--video", str(clip), "--no-window", "--output", str(tmp_path / "out.xyz")]) == 1
    assert "unsupported video type" in one_line_error(capsys)


def test_truncated_video_skips_undecodable_frames(clip, tmp_path, capsys):
    avi = tmp_path / "clip.avi"  # Motion JPEG: each frame on its own, so a cut file keeps its first frames
    cap = cv2.VideoCapture(str(clip))
    with VideoWriter(avi, 25) as w:
        while True:
            ok, f = cap.read()
            if not ok:
                break
            w.write(f[..., ::-1])
    data = avi.read_bytes()
    broken = tmp_path / "broken.avi"
    broken.write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "out.avi"
    rc = main(["demo", "--video", str(broken), "--no-window", "--no-progress", "--output", str(out),
               "--jsonl", str(tmp_path / "f.jsonl")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err and "could not be decoded; skipped" in err
    rows = read_jsonl(tmp_path / "f.jsonl")
    good = [r for r in rows if "error" not in r]
    assert len(rows) == FRAMES and 10 <= len(good) < FRAMES
    assert count_frames(out)[0] == len(good)


def test_a_failing_frame_in_the_middle_is_skipped(clip, predictor_1t, tmp_path):
    frames = list(VideoSource(str(clip)))[:6]
    frames[2] = Frame(2, 0.08, None, "clip", "frame 2 could not be decoded; skipped")
    frames[4] = Frame(4, 0.16, np.zeros((480, 640), np.uint8), "clip")  # wrong shape: fails in processing
    s = run_demo(frames, predictor_1t, window=False, progress=False, output=str(tmp_path / "o.mp4"),
                 jsonl=str(tmp_path / "f.jsonl"))
    rows = read_jsonl(tmp_path / "f.jsonl")
    assert s.frames == 4 and s.skipped == 2
    assert [("error" in r) for r in rows] == [False, False, True, False, True, False]
    assert "expected an (H, W, 3) uint8 RGB frame" in rows[4]["error"]
    assert len({r["faces"][0]["track"] for r in rows if "error" not in r}) == 1
    assert count_frames(tmp_path / "o.mp4")[0] == 4


def test_folder_of_images_one_result_each(frl_images, tmp_path):
    import shutil

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in frl_images[:2]:
        shutil.copy(p, folder / p.name)
    (folder / "zz_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    rc = main(["demo", "--dir", str(folder), "--no-window", "--no-progress", "--jsonl", str(tmp_path / "f.jsonl"),
               "--output", str(tmp_path / "o.avi")])
    rows = read_jsonl(tmp_path / "f.jsonl")
    assert rc == 1 and len(rows) == 3
    assert [len(r["faces"]) for r in rows[:2]] == [1, 1] and "error" in rows[2]
    assert rows[0]["image"].endswith(frl_images[0].name)
    assert count_frames(tmp_path / "o.avi")[0] == 2
    assert FolderSource(str(folder)).frame_count == 3
    with pytest.raises(VideoError):
        FolderSource(str(tmp_path / "empty_or_missing"))


def test_prefetch_keeps_order_passes_errors_and_stops_early():
    from agegender.demo.video import Prefetch

    frames = [Frame(i, i / 25, np.full((4, 4, 3), i, np.uint8)) for i in range(10)]
    assert [f.index for f in Prefetch(frames, depth=2)] == list(range(10))

    def failing():
        yield frames[0]
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(Prefetch(failing()))
    for f in Prefetch(iter(frames), depth=1):  # leaving early does not hang
        if f.index == 1:
            break


def test_interrupted_demo_keeps_whole_lines_under_the_final_name(clip, predictor_1t, tmp_path):
    """Ctrl-C after 4 frames of a real clip: frames.jsonl holds the 4 frames' lines, whole, and no partial
    file is left beside it (while the run goes on, the lines go to a hidden partial file)."""
    from agegender.demo.video import VideoSource

    def four_then_ctrl_c():
        for frame in VideoSource(str(clip)):
            if frame.index == 4:
                assert not (tmp_path / "frames.jsonl").exists()
                assert (tmp_path / ".frames.jsonl.partial").exists()
                raise KeyboardInterrupt
            yield frame

    with pytest.raises(KeyboardInterrupt):
        run_demo(four_then_ctrl_c(), predictor_1t, window=False, progress=False, jsonl=str(tmp_path / "frames.jsonl"))
    rows = read_jsonl(tmp_path / "frames.jsonl")
    assert [r["frame"] for r in rows] == [0, 1, 2, 3] and all(r["faces"] for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames.jsonl"]
