"""Eye alignment (issue 18): where the eyes sit in FER2013 crops, and what aligning buys the shipped model.

Usage::

    PYTHONPATH=sdk:converters python tests/benchmarks/face_alignment.py canonical [--n 2000]
    PYTHONPATH=sdk:converters python tests/benchmarks/face_alignment.py eval [--n 1200] [--angles 0,-10,10,-20,20]

``canonical``: BlazeFace over ``--n`` FER2013 ``train`` crops drawn with ``numpy.random.default_rng(0)``, each
padded by 24 px of grey 128 and upscaled 4x (cubic) to 384x384; prints the median eye positions, inter-ocular
distance and eye-line angle as fractions of the 48-px side. Result 2026-12-04 (n=2000, 1,964 found): right eye
(0.3127, 0.4009), left eye (0.6811, 0.3935), midpoint (0.4966, 0.3975), distance 0.3657 (IQR 0.319-0.397),
angle -1.1 deg (IQR -6.8..4.8): :data:`affectlite.preprocess.ALIGN_EYE_Y` / ``ALIGN_EYE_DISTANCE``.

``eval``: the shipped int8 model on ``--n`` FER2013 ``public_test`` crops (``default_rng(1)``):

- raw crops against the same crops through the recipe's ``align_crops`` (what ``--align`` training would see);
- each crop padded and upscaled as above, rotated by each angle, BlazeFace run on it, then the box crop
  (``face.align: false``, margin 0.1) against the eye-aligned crop (``face.align: true``), both through
  :func:`affectlite.preprocess.face_crop`; accuracy over the faces found.

Result 2026-12-04, n=1200 (the shipped model was trained on unaligned crops; not retrained):
raw 66.8% vs align_crops 62.0%; in frames, box vs aligned: 0 deg 63.3 vs 64.4, -10 deg 64.3 vs 63.1,
+10 deg 61.5 vs 62.1, -20 deg 60.7 vs 63.7, +20 deg 57.7 vs 64.3 (faces found 96.6-97.4%).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

DATA = os.path.join(os.environ.get("AFFECTLITE_DATASETS", "/work/shared/datasets"), "fer2013")


def _files(split: str, n: int, seed: int) -> list[str]:
    files = sorted(glob.glob(os.path.join(DATA, split, "*", "*.jpg")))
    if not files:
        sys.exit(f"no FER2013 images under {DATA}/{split} (set AFFECTLITE_DATASETS)")
    idx = np.random.default_rng(seed).choice(len(files), min(n, len(files)), replace=False)
    return [files[i] for i in sorted(idx)]


def _frame(g: np.ndarray, angle: float = 0.0) -> np.ndarray:
    import cv2

    big = cv2.copyMakeBorder(g, 24, 24, 24, 24, cv2.BORDER_CONSTANT, value=128)
    big = cv2.resize(big, (384, 384), interpolation=cv2.INTER_CUBIC)
    if angle:
        r = cv2.getRotationMatrix2D((192, 192), angle, 1.0)
        big = cv2.warpAffine(big, r, (384, 384), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=128)
    out: np.ndarray = np.repeat(big[:, :, None], 3, axis=2)
    return out


def canonical(n: int) -> None:
    import cv2

    from affectlite.detectors import create_detector

    det = create_detector("blazeface", score_threshold=0.5, min_size=1)
    det.tiles_enabled = False  # type: ignore[attr-defined]  # one whole face per image: no small-face tiles
    eyes = []
    files = _files("train", n, 0)
    for f in files:
        d = det.detect(_frame(cv2.imread(f, cv2.IMREAD_GRAYSCALE)))
        if d:
            (rx, ry), (lx, ly) = max(d, key=lambda q: q.score).landmarks[:2]
            eyes.append([(v / 4 - 24) / 48 for v in (rx, ry, lx, ly)])
    e = np.array(eyes)
    iod = np.hypot(e[:, 2] - e[:, 0], e[:, 3] - e[:, 1])
    ang = np.degrees(np.arctan2(e[:, 3] - e[:, 1], e[:, 2] - e[:, 0]))
    mid = (e[:, :2] + e[:, 2:]) / 2
    print(f"found {len(e)}/{len(files)}; median right eye {np.round(np.median(e[:, :2], 0), 4).tolist()}, left eye "
          f"{np.round(np.median(e[:, 2:], 0), 4).tolist()}, midpoint {np.round(np.median(mid, 0), 4).tolist()}, "
          f"distance {np.median(iod):.4f} (IQR {np.percentile(iod, 25):.3f}-{np.percentile(iod, 75):.3f}), angle "
          f"{np.median(ang):.2f} deg (IQR {np.percentile(ang, 25):.2f}..{np.percentile(ang, 75):.2f})")


def evaluate(n: int, angles: list[float]) -> None:
    import cv2

    from affectlite.detectors import create_detector
    from affectlite.face import FaceExpressionClassifier
    from affectlite.labels import LABELS, canonical_label
    from affectlite.preprocess import face_crop
    from affectlite_convert.recipes.face import align_crops

    files = _files("public_test", n, 1)
    x = np.stack([cv2.imread(f, cv2.IMREAD_GRAYSCALE) for f in files])
    y = np.array([LABELS.index(str(canonical_label(os.path.basename(os.path.dirname(f))))) for f in files])
    clf = FaceExpressionClassifier.create()

    def pred(imgs: list[np.ndarray] | np.ndarray) -> np.ndarray:
        return np.array([int(np.argmax(clf.classify_crops([im])[0])) for im in imgs])

    xa, found = align_crops(x)
    print(f"n={len(y)}: raw crops {np.mean(pred(x) == y):.4f}, align_crops {np.mean(pred(xa) == y):.4f} "
          f"(keypoints on {found.mean():.3f})")
    det = create_detector("blazeface", score_threshold=0.5, min_size=1)
    for ang in angles:
        box, al, ok = [], [], []
        for g in x:
            fr = _frame(g, ang)
            d = det.detect(fr)
            ok.append(bool(d))
            if not d:
                box.append(g)
                al.append(g)
                continue
            b = max(d, key=lambda q: q.score)
            bx = (b.x, b.y, b.w, b.h)
            box.append(face_crop(fr, bx, b.landmarks, margin=0.1, align=False))
            al.append(face_crop(fr, bx, b.landmarks, margin=0.1, align=True))
        m = np.array(ok)
        print(f"rotated {ang:+.0f} deg: found {m.mean():.3f}; box crop {np.mean(pred(box)[m] == y[m]):.4f}, "
              f"aligned {np.mean(pred(al)[m] == y[m]):.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["canonical", "eval"])
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--angles", default="0,-10,10,-20,20")
    a = p.parse_args()
    if a.what == "canonical":
        canonical(a.n or 2000)
    else:
        evaluate(a.n or 1200, [float(v) for v in a.angles.split(",")])


if __name__ == "__main__":
    main()
