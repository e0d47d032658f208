"""tests/benchmarks/face_robustness.py (issue 18): the frame generator and the scoring, plus a tiny end-to-end run.

The generator and scoring tests use synthetic faces and need no dataset; the end-to-end run needs FER2013
under the shared datasets folder and skips cleanly without it. tests/benchmarks/peer_fer.py's pure parts
(command line, summary, table) are checked here too, without installing fer.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent / "benchmarks"
pytest.importorskip("cv2")


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


fr = _load("face_robustness")
peer = _load("peer_fer")


def _sample(i: int = 0, cx: float = 0.5, cy: float = 0.5, base: int = 160) -> object:
    return fr.Sample(i, "unused.jpg", 1, "brick", 1.2, 0.3, 0.7, False, base, cx, cy)


def _bar_face() -> np.ndarray:
    """48x48 black square with a white horizontal bar through the middle (orientation is measurable)."""
    f = np.zeros((48, 48), dtype=np.uint8)
    f[21:27, 4:44] = 255
    return f


def _orientation_deg(mask: np.ndarray) -> float:
    """Angle of the main axis of a binary blob, counter-clockwise on screen, in degrees."""
    ys, xs = np.nonzero(mask)
    x, y = xs - xs.mean(), -(ys - ys.mean())  # y up
    cov = np.cov(np.stack([x, y]))
    w, v = np.linalg.eigh(cov)
    major = v[:, int(np.argmax(w))]
    a = math.degrees(math.atan2(major[1], major[0]))
    return (a + 90.0) % 180.0 - 90.0


# ------------------------------------------------------------------------------------------------ generator
@pytest.mark.parametrize("size", fr.SIZES)
@pytest.mark.parametrize("corner", [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.5, 0.5)])
def test_face_and_its_rotated_corners_stay_inside_the_frame(size: int, corner: tuple[float, float]) -> None:
    s = _sample(cx=corner[0], cy=corner[1])
    cx, cy = fr.face_centre(s, size)
    for angle in fr.ANGLES:
        a = math.radians(angle)
        for dx, dy in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)):
            x = cx + size * (math.cos(a) * dx + math.sin(a) * dy)
            y = cy + size * (-math.sin(a) * dx + math.cos(a) * dy)
            assert 0 <= x < fr.FRAME_W and 0 <= y < fr.FRAME_H, (size, angle, corner)


def test_make_frame_shape_truth_and_face_at_the_recorded_box() -> None:
    v, u = np.mgrid[0:48, 0:48]
    face = np.rint(128 + 80 * np.sin(2 * np.pi * u / 20) * np.cos(2 * np.pi * v / 28)).astype(np.uint8)  # smooth
    bg = np.full((fr.FRAME_H, fr.FRAME_W), 7, dtype=np.uint8)
    cond = fr.Condition("size 96", "size", size=96)
    frame, truth = fr.make_frame(_sample(cx=0.2, cy=0.8), cond, face=face, background=bg)
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    assert (frame[..., 0] == frame[..., 1]).all() and (frame[..., 0] == frame[..., 2]).all()  # grey
    assert truth.box is not None and truth.size == 96 and truth.label == 1 and truth.angle == 0.0
    x, y, w, h = truth.box
    assert w == h == 96 and x >= 0 and x + w <= 640 and y >= 0 and y + h <= 480
    # inside the box (away from the feathered rim) the frame is the face scaled to the box
    import cv2

    x0, y0 = round(x), round(y)
    patch = frame[y0:y0 + 96, x0:x0 + 96, 0].astype(np.float64)
    want = cv2.resize(face, (96, 96), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    inner = slice(15, 81)
    assert np.abs(patch[inner, inner] - want[inner, inner]).mean() < 4.0
    # ... and the face really is there: a box shifted by half its side no longer matches
    shifted = frame[y0:y0 + 96, x0 + 48:x0 + 144, 0].astype(np.float64)
    assert np.abs(shifted[inner, inner] - want[inner, inner]).mean() > 30.0
    # outside the box the background is untouched
    outside = np.ones((480, 640), dtype=bool)
    outside[y0 - 2:y0 + 98, x0 - 2:x0 + 98] = False
    assert (frame[..., 0][outside] == 7).all()


@pytest.mark.parametrize("angle", [-30.0, -15.0, 15.0, 30.0])
def test_rotation_is_applied_counter_clockwise_about_the_centre(angle: float) -> None:
    bg = np.zeros((fr.FRAME_H, fr.FRAME_W), dtype=np.uint8)
    upright = fr.composite(bg, _bar_face(), (320.0, 240.0), 200, 0.0) > 128
    turned = fr.composite(bg, _bar_face(), (320.0, 240.0), 200, angle) > 128
    assert abs(_orientation_deg(upright)) < 1.0
    assert _orientation_deg(turned) == pytest.approx(angle, abs=1.0)
    ys, xs = np.nonzero(turned)
    assert xs.mean() == pytest.approx(320.0, abs=1.5) and ys.mean() == pytest.approx(240.0, abs=1.5)


def test_mask_leaves_no_hard_square_edge() -> None:
    """A white face on a black background: its rotated corners fade out instead of ending in a step."""
    bg = np.zeros((fr.FRAME_H, fr.FRAME_W), dtype=np.uint8)
    face = np.full((48, 48), 255, dtype=np.uint8)
    out = fr.composite(bg, face, (320.0, 240.0), 200, 30.0).astype(np.int64)
    assert out[240, 320] == 255
    row = out[240, 320:]  # along a ray from the centre: a ramp, not one jump from 255 to 0
    assert (np.diff(row) <= 0).all()
    assert np.abs(np.diff(row)).max() < 64
    corner = np.array([math.cos(math.radians(30.0)) * 0.5 + math.sin(math.radians(30.0)) * 0.5,
                       -math.sin(math.radians(30.0)) * 0.5 + math.cos(math.radians(30.0)) * 0.5]) * 200
    cx, cy = 320 + corner[0] * 0.97, 240 + corner[1] * 0.97  # just inside the rotated square's corner
    assert out[round(cy), round(cx)] < 30  # masked: the square's corner does not show


@pytest.mark.parametrize("angle", [-30.0, 0.0, 15.0])
def test_true_eyes_turn_with_the_face(angle: float) -> None:
    from affectlite import preprocess as pp

    t = fr.Truth((100.0, 50.0, 200.0, 200.0), 0, angle, 200)
    (rx, ry), (lx, ly) = fr.true_eyes(t)
    assert math.hypot(lx - rx, ly - ry) == pytest.approx(pp.ALIGN_EYE_DISTANCE * 200)
    assert math.degrees(math.atan2(-(ly - ry), lx - rx)) == pytest.approx(angle)  # counter-clockwise on screen
    mx, my = (rx + lx) / 2, (ry + ly) / 2
    a = math.radians(angle)  # the eye midpoint sits above the centre along the face's own vertical axis
    up = (0.5 - pp.ALIGN_EYE_Y) * 200
    assert (mx, my) == pytest.approx((200 - up * math.sin(a), 150 - up * math.cos(a)))
    with pytest.raises(ValueError):
        fr.true_eyes(fr.Truth(None, 0, 0.0, 0))


def test_lighting() -> None:
    img = np.array([[0, 128, 255]], dtype=np.uint8)
    assert (fr.apply_lighting(img, 1.0, 0.0) == img).all()
    assert fr.apply_lighting(img, 0.4, 0.0).tolist() == [[77, 128, 179]]
    assert fr.apply_lighting(img, 1.8, 0.0).tolist() == [[0, 128, 255]]
    assert fr.apply_lighting(img, 0.4, -77.0).max() < 110


def test_samples_and_frames_are_deterministic_given_the_seed(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    import cv2

    faces = []
    for k, lab in enumerate(("happy", "sad")):
        (tmp_path / lab).mkdir()
        for j in range(3):
            p = tmp_path / lab / f"{j}.png"
            cv2.imwrite(str(p), np.full((48, 48), 40 * (k + 1) + 10 * j, dtype=np.uint8))
    faces = fr.list_faces(tmp_path)
    assert len(faces) == 6 and {lab for _, lab in faces} == {1, 2}
    a, b, c = fr.make_samples(faces, 5, 3), fr.make_samples(faces, 5, 3), fr.make_samples(faces, 5, 4)
    assert a == b and a != c
    cond = fr.Condition("rot +15", "rotation", angle=15.0)
    f1, t1 = fr.make_frame(a[0], cond)
    f2, t2 = fr.make_frame(b[0], cond)
    assert (f1 == f2).all() and t1 == t2
    assert not (f1 == fr.make_frame(c[0], cond)[0]).all()
    bg_only, t = fr.make_frame(a[0], fr.Condition("background only", "background", face=False))
    assert t.box is None and bg_only.shape == (480, 640, 3)
    assert len({s.background for s in fr.make_samples(faces, 60, 0)}) > 5  # several photographs used


def test_conditions_cover_the_issue() -> None:
    names = [c.name for c in fr.default_conditions()]
    for n in ("size 48", "size 96", "size 160", "size 240", "rot -30", "rot -15", "rot 0", "rot +15", "rot +30",
              "dark", "bright", "low contrast", "high contrast", "background only"):
        assert n in names
    assert fr.parse_configs("haar,blazeface+align") == [fr.Config("haar", "haar", False),
                                                      fr.Config("blazeface+align", "blazeface", True)]
    with pytest.raises(SystemExit):
        fr.parse_configs("blazeface+tilt")


# ------------------------------------------------------------------------------------------------ scoring
def _onehot(label: int) -> tuple[float, ...]:
    p = [0.0] * 7
    p[label] = 1.0
    return tuple(p)


def test_scoring_on_hand_made_cases() -> None:
    truth = fr.Truth((100.0, 100.0, 100.0, 100.0), 3, 0.0, 100)
    none = fr.Truth(None, 0, 0.0, 0)
    oracle = fr.score_frame(truth, [((100.0, 100.0, 100.0, 100.0), _onehot(3))], 0.3)
    assert oracle == fr.FrameScore(True, True, True, 0, 1.0)
    wrong_label = fr.score_frame(truth, [((110.0, 90.0, 90.0, 110.0), _onehot(2))], 0.3)
    assert wrong_label.matched and not wrong_label.correct and wrong_label.false_positives == 0
    empty = fr.score_frame(truth, [], 0.3)
    assert empty == fr.FrameScore(True, False, False, 0, 0.0)
    off = fr.score_frame(truth, [((300.0, 300.0, 100.0, 100.0), _onehot(3))], 0.3)  # right label, wrong place
    assert not off.matched and not off.correct and off.false_positives == 1
    two = fr.score_frame(truth, [((400.0, 0.0, 50.0, 50.0), _onehot(3)), ((105.0, 95.0, 100.0, 100.0), _onehot(3))],
                         0.3)
    assert two.matched and two.correct and two.false_positives == 1
    assert fr.score_frame(none, [((1.0, 1.0, 9.0, 9.0), _onehot(0))] * 2, 0.3).false_positives == 2
    # IoU threshold: a box of half the side, centred, has IoU 0.25
    half = [((125.0, 125.0, 50.0, 50.0), _onehot(3))]
    assert not fr.score_frame(truth, half, 0.3).matched and fr.score_frame(truth, half, 0.2).matched

    perfect = fr.summarise([oracle] * 4 + [fr.score_frame(none, [], 0.3)])
    assert perfect["recall"] == 1.0 and perfect["accuracy_e2e"] == 1.0 and perfect["fp_per_frame"] == 0.0
    blind = fr.summarise([empty] * 4)
    assert blind["recall"] == 0.0 and blind["accuracy_e2e"] == 0.0 and blind["accuracy_detected"] is None
    mixed = fr.summarise([oracle, wrong_label, empty, off])
    assert mixed["recall"] == 0.5 and mixed["accuracy_e2e"] == 0.25 and mixed["accuracy_detected"] == 0.5
    assert mixed["fp_per_frame"] == 0.25 and mixed["frames_with_fp"] == 0.25
    drop = fr.paired_drop([oracle, oracle, oracle, empty], [oracle, empty, empty, empty])
    assert drop["drop_points"] == 50.0 and drop["se_points"] > 0


def test_evaluate_and_report_with_stub_detectors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An oracle detector scores recall 1 and the crop's label; an empty one 0; the report and table follow."""
    face = np.random.default_rng(1).integers(0, 255, size=(48, 48), dtype=np.uint8)
    bg = np.full((480, 640), 90, dtype=np.uint8)
    samples = [fr.Sample(i, "x", i % 7, "brick", 1.0, 0.1, 0.2, False, 150, 0.3, 0.6) for i in range(4)]
    conds = [fr.Condition("rot 0", "rotation"), fr.Condition("rot +30", "rotation", angle=30.0),
             fr.Condition("background only", "background", face=False)]
    truths: list[fr.Truth] = []
    real_make_frame = fr.make_frame

    def make_frame(s, cond, face=None, background=None):  # type: ignore[no-untyped-def]
        f, t = real_make_frame(s, cond, face=face, background=background)
        truths.append(t)
        return f, t

    monkeypatch.setattr(fr, "read_face", lambda p: face)
    monkeypatch.setattr(fr, "make_background", lambda s: bg)
    monkeypatch.setattr(fr, "make_frame", make_frame)

    def oracle(frame: np.ndarray) -> list[tuple[tuple[float, float, float, float], tuple[float, ...]]]:
        t = truths[-1]
        return [] if t.box is None else [(t.box, _onehot(t.label))]

    res = fr.evaluate(samples, conds, {"oracle": oracle, "blind": lambda f: []}, 0.3,
                      crop_classify=lambda c: _onehot(0))
    configs = [fr.Config("oracle", "x", False), fr.Config("blind", "x", False)]
    rep = fr.report(res, conds, configs)
    c = rep["conditions"]
    assert c["rot 0"]["oracle"]["recall"] == 1.0 and c["rot +30"]["oracle"]["accuracy_e2e"] == 1.0
    assert c["rot 0"]["blind"]["recall"] == 0.0 and c["rot 0"]["blind"]["accuracy_e2e"] == 0.0
    assert c["background only"]["oracle"]["fp_per_frame"] == 0.0
    assert c["rot 0"]["crop_accuracy"] == 0.25  # labels 0..3, the stub says 0
    assert c["rot +30"]["oracle_aligned_accuracy"] == 0.25 and "oracle_aligned_accuracy" not in c["background only"]
    assert rep["rotation_check"]["oracle"]["worst_drop_points"] == 0.0
    assert rep["rotation_check"]["oracle"]["within_5_points"] is True
    meta = {"n": 4, "seed": 0, "iou": 0.3, "profile": "x86_64", "machine": "test",
            "options": {"oracle": {"detect_width": 320, "min_face_size": 48}},
            "ms_per_frame": res["ms_per_frame"]}
    md = fr.markdown(rep, configs, meta)
    assert "| rot +30 | 100.0 / 0.00 | 0.0 / 0.00 |" in md
    assert "| oracle | 100.0 | +0.0 +- 0.0 |" not in md and "| oracle | 100.0 |" in md

    # the model card keeps a compact copy; the card stays valid and nothing else in it changes
    shipped = Path(fr.ROOT) / "sdk" / "affectlite" / "models" / "face.card.json"
    card = tmp_path / "face.card.json"
    card.write_text(shipped.read_text())
    meta["options"]["blind"] = meta["options"]["oracle"]
    fr.update_card(card, fr.card_summary(rep, meta))
    before, after = json.loads(shipped.read_text()), json.loads(card.read_text())
    rob = after["metrics"].pop("robustness")
    before["metrics"].pop("robustness", None)
    assert after == before
    assert rob["conditions"]["rot 0"]["oracle"]["recall"] == 1.0 and rob["rotation_check"]["blind"]
    from affectlite.card import load_card

    assert load_card(card).metrics["robustness"]["n_per_condition"] == 4


def test_end_to_end_tiny_run(shared_datasets: Path, tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    data = shared_datasets / "fer2013" / "public_test"
    if not data.is_dir():
        pytest.skip(f"{data} not found")
    rc = fr.main(["--data", str(data), "--n", "3", "--conditions", "size 160,rot 0,rot +30,background only",
                  "--configs", "haar,blazeface+align", "--out", str(tmp_path)])
    assert rc == 0
    rep = json.loads((tmp_path / "face_robustness.json").read_text())
    assert rep["schema"] == fr.SCHEMA and set(rep["conditions"]) == {"size 160", "rot 0", "rot +30",
                                                                       "background only"}
    row = rep["conditions"]["rot 0"]
    for cfg in ("haar", "blazeface+align"):
        assert row[cfg]["faces"] == 3 and 0.0 <= row[cfg]["recall"] <= 1.0
        assert rep["meta"]["options"][cfg]["detector"] == cfg.split("+")[0]
    assert rep["meta"]["options"]["blazeface+align"]["align"] is True
    assert set(rep["rotation_check"]) == {"haar", "blazeface+align"}
    assert "| rot +30 |" in (tmp_path / "face_robustness.md").read_text()


# ------------------------------------------------------------------------------------------------ peer_fer
def test_peer_command_line_and_summary() -> None:
    argv = peer.affectlite_argv(Path("v.mp4"), 9.6, 2, [])
    assert argv[1:4] == ["-m", "affectlite.bench", "--what"] and "--no-audio" in argv
    assert argv[argv.index("--pace") + 1] == "fast" and "face.detect_every=2" in argv
    assert "face.detect_every=2" not in peer.affectlite_argv(Path("v.mp4"), 5, 1, ["face.detect_every=1"])
    fer_runs = [{"fps": 10.0, "cpu_ms_per_frame": 100.0, "call_ms_p95": 90.0, "peak_rss_mb": 700.0, "load_s": 3.0,
                 "frames_with_face": 1.0, "fer": "25.10.3"},
                {"fps": 14.0, "cpu_ms_per_frame": 80.0, "call_ms_p95": 80.0, "peak_rss_mb": 710.0, "load_s": 4.0,
                 "frames_with_face": 1.0, "fer": "25.10.3"}]
    al_runs = [{"fps": 120.0, "cpu_ms_per_frame": 9.0, "latency_ms_p95": 30.0, "latency_ms_p50": 10.0,
                "peak_rss_mb": 120.0, "startup_s": 0.2, "import_s": 0.1, "frames_with_face": 1.0, "detect_every": 2,
                "detector": "blazeface"}]
    s = peer.summarise(fer_runs, al_runs)
    assert s["fer"]["fps"] == 12.0 and s["fps_ratio"] == 10.0 and s["cpu_ratio"] == 10.0
    assert s["goals"]["fps_ratio"]["met"] is True and s["goals"]["latency_ms_p95"]["met"] is True
    slow = peer.summarise(fer_runs, [{**al_runs[0], "fps": 60.0, "peak_rss_mb": 200.0, "detect_every": 3}])
    assert slow["goals"]["fps_ratio"]["met"] is False and slow["goals"]["peak_rss_mb"]["met"] is False
    assert slow["goals"]["detect_every"]["met"] is False
    meta = {"video": {"width": 640, "height": 480, "frames": 288}, "video_name": "sample.mp4", "repeat": 2,
            "fer_version": "25.10.3", "affectlite_detector": "blazeface", "detect_every": 2, "load_avg_start": 0.5,
            "machine": {"cpu": "cpu", "usable_cores": 2, "platform": "linux", "python": "3.11"}}
    md = peer.markdown(s, meta)
    assert "**10.00x**" in md and "| fps_ratio >= 10 | 10.00 | yes |" in md


def test_peer_venv_is_outside_the_repository(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AFFECTLITE_BENCH_CACHE", raising=False)
    assert peer.ROOT not in peer.default_venv().parents
    monkeypatch.setenv("AFFECTLITE_BENCH_CACHE", str(tmp_path))
    assert peer.default_venv() == tmp_path / "fer-venv"
    with pytest.raises(SystemExit, match="no fer"):
        peer.ensure_fer(tmp_path / "none", install=False)
