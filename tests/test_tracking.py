"""IoU tracking: ids stable across frames of a moving face, expiry, no id reuse, smoothing, prediction."""

from __future__ import annotations

import numpy as np
import pytest

from affectlite.detectors import Detection, create_detector
from affectlite.errors import ConfigError
from affectlite.tracking import IoUTracker

MS = 1_000_000


def det(x: float, y: float, s: float = 80.0, score: float = 0.9) -> Detection:
    return Detection(x, y, s, s, score)


def moving_face_frames(n: int, step: int = 6) -> list[np.ndarray]:
    """Real face (the astronaut's) sliding right over a textured background, 320x240 frames."""
    skd = pytest.importorskip("skimage.data")
    face = skd.astronaut()[30:210, 140:310]  # 180x170 head and shoulders
    face = face[::2, ::2]  # 90x85
    rng = np.random.default_rng(3)
    bg = (rng.integers(90, 160, size=(240, 320, 1)) * np.ones((1, 1, 3))).astype(np.uint8)
    frames = []
    for i in range(n):
        f = bg.copy()
        x = 20 + i * step
        f[60:60 + face.shape[0], x:x + face.shape[1]] = face
        frames.append(f)
    return frames


def test_ids_stay_stable_on_a_moving_face_and_expire() -> None:
    pytest.importorskip("cv2")
    haar = create_detector("haar", min_size=30)
    tr = IoUTracker(iou_threshold=0.3, expiry_s=0.5)
    frames = moving_face_frames(12)
    ids = []
    xs = []
    for i, f in enumerate(frames):
        tracks = tr.update(haar.detect(f), i * 66 * MS)
        assert len(tracks) == 1, f"frame {i}: {tracks}"
        ids.append(tracks[0].track_id)
        xs.append(tracks[0].box.x)
    assert len(set(ids)) == 1  # one id across the whole motion
    assert xs[-1] - xs[0] == pytest.approx(11 * 6, abs=12)  # the box followed the face
    first = ids[0]
    empty = np.full_like(frames[0], 128)
    t = 12 * 66 * MS
    assert tr.update(haar.detect(empty), t) == []  # not seen: not active, but kept until expiry
    assert len(tr.tracks) == 1
    assert tr.update(haar.detect(empty), t + 600 * MS) == []
    assert tr.tracks == []  # expired
    back = tr.update(haar.detect(frames[0]), t + 700 * MS)
    assert len(back) == 1 and back[0].track_id > first  # a new id, never a reused one


def test_two_faces_keep_their_own_ids_and_largest_come_first() -> None:
    tr = IoUTracker(iou_threshold=0.3, expiry_s=1.0)
    a, b = tr.update([det(10, 10, 60), det(200, 20, 90)], 0)
    assert (a.box.w, b.box.w) == (90, 60)  # largest first
    ids = {round(t.box.x): t.track_id for t in (a, b)}
    for k in range(1, 6):
        out = tr.update([det(10 + 5 * k, 10, 60), det(200 - 5 * k, 20, 90)], k * 33 * MS)
        assert {t.track_id for t in out} == set(ids.values())
        by_w = {t.box.w: t.track_id for t in out}
        assert by_w[60] == ids[10] and by_w[90] == ids[200]


def test_max_tracks_keeps_the_largest_faces() -> None:
    tr = IoUTracker(max_tracks=2)
    out = tr.update([det(0, 0, 40), det(100, 0, 80), det(200, 0, 60)], 0)
    assert [t.box.w for t in out] == [80, 60]


def test_a_jump_beyond_iou_threshold_starts_a_new_track() -> None:
    tr = IoUTracker(iou_threshold=0.3)
    (a,) = tr.update([det(0, 0)], 0)
    (b,) = tr.update([det(200, 0)], 33 * MS)
    assert b.track_id != a.track_id


def test_predict_moves_boxes_with_their_velocity() -> None:
    tr = IoUTracker()
    tr.update([det(100, 50)], 0)
    tr.update([det(110, 50)], 100 * MS)  # 100 px/s to the right
    (t,) = tr.predict(200 * MS)
    assert 100 < t.box.x - 0 < 125  # moved on by roughly v*dt (velocity is smoothed)
    assert t.box.y == pytest.approx(50)
    # the next detection still matches the moved track
    (u,) = tr.update([det(120, 50)], 200 * MS)
    assert u.track_id == t.track_id


def test_smoothing_is_an_ema_per_track() -> None:
    tr = IoUTracker(smoothing=0.5)
    (t,) = tr.update([det(0, 0)], 0)
    p1 = tr.smooth(t, [1.0, 0, 0, 0, 0, 0, 0])
    p2 = tr.smooth(t, [0, 1.0, 0, 0, 0, 0, 0])
    assert p1[0] == 1.0
    assert p2[0] == pytest.approx(0.5) and p2[1] == pytest.approx(0.5)
    none = IoUTracker(smoothing=0.0)
    (u,) = none.update([det(0, 0)], 0)
    none.smooth(u, [1.0, 0, 0, 0, 0, 0, 0])
    assert none.smooth(u, [0, 1.0, 0, 0, 0, 0, 0])[1] == 1.0


def test_new_tracks_are_tentative_until_min_hits_consecutive_passes() -> None:
    tr = IoUTracker(min_hits=3)
    assert tr.update([det(100, 50)], 0) == []
    assert len(tr.tracks) == 1 and not tr.tracks[0].confirmed  # kept and matched, not reported
    assert tr.predict(33 * MS) == []
    assert tr.update([det(102, 50)], 100 * MS) == []
    (t,) = tr.update([det(104, 50)], 200 * MS)  # third pass in a row: confirmed, same id
    assert t.confirmed and t.hits == 3 and t.track_id == tr.tracks[0].track_id
    assert [u.track_id for u in tr.predict(233 * MS)] == [t.track_id]
    assert tr.update([], 300 * MS) == []  # a confirmed face missed once stays confirmed
    (again,) = tr.update([det(106, 50)], 400 * MS)
    assert again.track_id == t.track_id


def test_sporadic_detections_never_become_a_reported_face() -> None:
    """A false positive that fires in every other detection pass (as Haar does on some background)."""
    tr = IoUTracker(min_hits=3, expiry_s=1.0)
    face, ghost = det(100, 50, 90), det(400, 160, 120, score=0.62)
    reported: set[int] = set()
    for k in range(30):
        dets = [face, ghost] if k % 2 else [face]
        reported |= {t.track_id for t in tr.update(dets, k * 100 * MS)}
    ghost_ids = {t.track_id for t in tr.tracks if t.box.x == 400}
    assert len(reported) == 1 and ghost_ids and not reported & ghost_ids
    # while a face with min_hits=1 would have been reported at its first detection
    assert IoUTracker(min_hits=1).update([ghost], 0)[0].confirmed


def test_tentative_tracks_do_not_push_confirmed_ones_out() -> None:
    tr = IoUTracker(min_hits=2, max_tracks=1)
    tr.update([det(0, 0, 40)], 0)
    (small,) = tr.update([det(0, 0, 40)], 100 * MS)
    # a bigger new box appears: it is tentative, the confirmed small face is still the one reported
    assert [t.track_id for t in tr.update([det(0, 0, 40), det(200, 0, 90)], 200 * MS)] == [small.track_id]
    out = tr.update([det(0, 0, 40), det(200, 0, 90)], 300 * MS)  # now both confirmed: largest wins
    assert [t.box.w for t in out] == [90]


@pytest.mark.parametrize("kw", [{"iou_threshold": 0.0}, {"expiry_s": -1}, {"smoothing": 1.0},
                                {"max_tracks": 0}, {"min_hits": 0}])
def test_bad_arguments_are_config_errors(kw: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        IoUTracker(**kw)  # type: ignore[arg-type]
