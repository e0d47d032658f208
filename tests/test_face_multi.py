"""Several faces in one frame (issue 18): every face gets its own track id and its own result, through the
analyzer and through the live pipeline. Frame: 5 FER2013 public_test faces on a brick photograph
(``tests/_multiface.py``); the cost per extra face is measured by ``tests/benchmarks/face_multi.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _multiface import multi_face_frame
from affectlite import EmotionResult, PipelineOptions
from affectlite.face import FaceAnalyzer
from affectlite.options import FaceOptions
from affectlite.results import FaceResult

pytest.importorskip("cv2")


@pytest.fixture(autouse=True)
def _blazeface_installed() -> None:
    from affectlite.detectors import blazeface

    if blazeface.model_source() is None:
        pytest.skip("BlazeFace model not installed")


def _owner(r: FaceResult, boxes: list[tuple[int, int, int]]) -> int:
    """Index of the placed face whose square holds the result's box centre (-1: none)."""
    cx, cy = r.box.x + r.box.w / 2, r.box.y + r.box.h / 2
    hits = [i for i, (x, y, s) in enumerate(boxes) if x <= cx <= x + s and y <= cy <= y + s]
    return hits[0] if len(hits) == 1 else -1


def test_each_face_is_tracked_with_its_own_id_and_result(shared_datasets: Path) -> None:
    fa = FaceAnalyzer(FaceOptions(detector="blazeface", max_faces=5, detect_every=1))
    ids_per_face: list[set[int]] = [set() for _ in range(5)]
    per_frame = []
    for i in range(10):  # the faces drift right by 3 px a frame; tracks confirm after 3 passes in a row
        frame, boxes = multi_face_frame(shared_datasets, 5, shift=(3 * i, 0))
        res = fa.process(frame, i * 33_000_000)
        per_frame.append(len(res))
        for r in res:
            k = _owner(r, boxes)
            assert k >= 0, f"frame {i}: a result box {r.box} on no face"
            ids_per_face[k].add(r.track_id)
            assert sum(r.probabilities) == pytest.approx(1.0) and r.label
        if len(res) == 5:
            assert len({r.track_id for r in res}) == 5, "one id per face"
            assert len({_owner(r, boxes) for r in res}) == 5, "one result per face"
    assert per_frame[:2] == [0, 0], "tentative until 3 detection passes in a row"
    # BlazeFace misses one of these pasted faces now and then (score near 0.5); a missed pass hides that face
    # until the next pass, but its track (and id) lives on until track_expiry_s
    assert min(per_frame[2:]) >= 4 and per_frame.count(5) >= 3, per_frame
    assert all(len(s) == 1 for s in ids_per_face), f"each face keeps one id: {ids_per_face}"
    assert len(set().union(*ids_per_face)) == 5, "five faces, five ids"
    fa.close()


def test_each_face_result_is_that_face_s_own(shared_datasets: Path) -> None:
    """A face among four others gets the same expression as when it is alone in the frame."""
    frame, boxes = multi_face_frame(shared_datasets, 5)
    fa = FaceAnalyzer(FaceOptions(detector="blazeface", max_faces=5))
    together = {_owner(r, boxes): r for r in fa.classify_image(frame)}
    assert sorted(together) == [0, 1, 2, 3, 4]
    labels = set()
    for k in range(5):
        alone = frame.copy()
        for j, (x, y, s) in enumerate(boxes):
            if j != k:  # paint the other faces over
                alone[y:y + s, x:x + s] = 128
        (r,) = fa.classify_image(alone)
        assert _owner(r, boxes) == k
        assert r.label == together[k].label
        # the detector's box moves by a few pixels with the other faces around: same label, close probabilities
        assert np.max(np.abs(np.subtract(r.probabilities, together[k].probabilities))) < 0.25
        labels.add(r.label)
    assert len(labels) >= 2, "different faces, different results"
    fa.close()


def test_the_pipeline_reports_every_face_with_its_own_id(shared_datasets: Path) -> None:
    from affectlite.pipeline import EmotionPipeline
    from affectlite.testing import FakeCamera

    frames = [multi_face_frame(shared_datasets, 4, shift=(2 * i, i))[0] for i in range(12)]
    o = PipelineOptions().replace(**{"privacy.offline_guard": False, "audio.enabled": False,
                                     "camera.every_frame": True, "face.max_faces": 5, "face.detect_every": 2,
                                     "face.detector": "blazeface"})
    got: list[EmotionResult] = []
    with EmotionPipeline(o, camera=FakeCamera.from_images(frames), on_result=got.append) as pipe:
        assert pipe.wait(timeout=60)
    full = [r for r in got if len(r.faces) == 4]
    assert len(full) >= 3, [len(r.faces) for r in got]
    ids = {f.track_id for r in got for f in r.faces}
    assert len(ids) == 4, f"four faces, four ids, kept across frames: {[[f.track_id for f in r.faces] for r in got]}"
    for r in full:
        assert len({round(f.box.x / 100) for f in r.faces} | {round(f.box.y / 200) for f in r.faces}) >= 3
        assert all(f.label and 0.0 < f.confidence <= 1.0 for f in r.faces)
    for r in got:  # results carry labels, scores, boxes and ids only
        d = r.to_json_dict() if hasattr(r, "to_json_dict") else {}
        assert "landmarks" not in str(d) and "keypoints" not in str(d)
