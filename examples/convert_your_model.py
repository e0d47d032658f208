"""Bring your own face-expression model: convert it to int8 TFLite, validate it, run it in the pipeline.

    # your Keras model (.keras, .h5 or a SavedModel folder) or ONNX model, calibration + validation images in
    # class folders (neutral/ happy/ sad/ ...), 48x48 grey input scaled to 0..1:
    python examples/convert_your_model.py --model my_face.keras --calib faces/train --val faces/val \\
        --out models/my_face.tflite

    # ONNX goes through onnx2tf in its own environment (see `affectlite convert --help`):
    affectlite convert --setup-onnx    # creates ~/.cache/affectlite/onnx2tf-venv, found without --onnx-env
    python examples/convert_your_model.py --model my_face.onnx ...

    # no model at hand? --demo trains a tiny Keras CNN first (on --data, e.g. a FER2013-style train/ folder,
    # or on generated images when --data is not given: then the model learns nothing useful, but every
    # step runs)
    python examples/convert_your_model.py --demo --out /tmp/demo_face.tflite

Steps: (1) describe the model in a partial model card (labels in output order, input preprocessing, what it
was trained on and its limitations); (2) ``affectlite_convert.convert`` quantises it to full-integer int8,
checks int8 against float on the validation data and writes ``<out>.tflite`` + ``<out>.card.json`` (and a
report with ``--report-dir``); (3) the runtime loads the pair with :meth:`affectlite.Model.load` and
classifies a face from the sample video; (4) the pipeline runs with ``face.model_path`` set to it.

Needs the workstation extra: ``pip install 'affectlite[convert]'`` (TensorFlow). The device needs only
``affectlite`` and the two written files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import affectlite
from affectlite.labels import LABELS


def partial_card(args: argparse.Namespace, labels: Sequence[str]) -> dict[str, Any]:
    """The card fields only you know; shapes, dtypes, metrics and hashes are filled in by the converter."""
    return {
        "name": args.name, "version": "0.1.0", "task": "face", "labels": list(labels),
        "inputs": [{"name": "image", "kind": "image",
                    "preprocessing": {"color": args.color, "size": [args.size, args.size], "scale": 1 / 255,
                                      "mean": 0.0, "std": 1.0, "crop_margin": 0.15}}],
        "outputs": [{"name": "probabilities", "kind": "probabilities"}],
        "training": {"data": args.training_data, "terms": args.training_terms, "split": args.split},
        "limitations": ["Estimates displayed facial expression, not felt emotion.",
                        "Not evaluated across age, skin tone, lighting or camera angle; check on your own data."],
    }


def demo_model(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """A tiny Keras CNN trained for a moment; returns ``(model, calibration, validation)``."""
    import keras

    keras.utils.set_random_seed(0)
    ch = 1 if args.color == "grey" else 3
    shape = (args.size, args.size, ch)
    if args.data:
        from affectlite_convert.calibration import load_data
        from affectlite_convert.quantize import InputInfo

        card = partial_card(args, LABELS)
        loaded = load_data(args.data, [InputInfo("image", (None, *shape), "float32")], card["inputs"],
                           list(LABELS), {}, limit=args.demo_samples, progress=False)
        x, y = loaded.arrays["image"], np.asarray(loaded.labels)
        print(f"demo: {len(x)} training images from {args.data}")
    else:  # generated images: class k gets a bright horizontal band at row k (learnable, meaningless)
        rng = np.random.default_rng(0)
        n = args.demo_samples
        y = np.arange(n) % len(LABELS)
        x = rng.uniform(0, 0.4, (n, *shape)).astype(np.float32)
        band = args.size // len(LABELS)
        for k in range(len(LABELS)):
            x[y == k, k * band:(k + 1) * band] += 0.5
        print(f"demo: {n} generated {args.size}x{args.size} images (no --data given)")
    idx = np.random.default_rng(1).permutation(len(x))
    x, y = x[idx], y[idx]
    cut = int(0.8 * len(x))
    model = keras.Sequential([
        keras.Input(shape, name="image"),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(len(LABELS), activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:cut], y[:cut], epochs=args.demo_epochs, batch_size=32, verbose=0)
    return model, x[:cut], (x[cut:], y[cut:])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help=".keras/.h5/SavedModel folder/.onnx face-expression model")
    src.add_argument("--demo", action="store_true", help="train a tiny demo model first")
    p.add_argument("--calib", help="calibration images in class folders (or .npy/.npz of preprocessed inputs)")
    p.add_argument("--val", help="held-out validation images in class folders")
    p.add_argument("--data", help="--demo: train on this image folder (class sub-folders) instead of generated data")
    p.add_argument("--demo-samples", type=int, default=350, help="--demo: training images")
    p.add_argument("--demo-epochs", type=int, default=3, help="--demo: epochs")
    p.add_argument("--labels", default=",".join(LABELS), help="class names in the model's output order")
    p.add_argument("--size", type=int, default=48, help="square input size in pixels")
    p.add_argument("--color", choices=("grey", "rgb"), default="grey", help="input colour")
    p.add_argument("--name", default="my-face", help="model name for the card")
    p.add_argument("--training-data", default="describe your training data here",
                   help="card: what the model was trained on")
    p.add_argument("--training-terms", default="state the data licence/terms here", help="card: data terms")
    p.add_argument("--split", default="describe the train/validation split", help="card: split method")
    p.add_argument("--onnx-env", help="Python environment with onnx2tf, for .onnx models")
    p.add_argument("--out", required=True, help="output .tflite (the card is written next to it)")
    p.add_argument("--report-dir", help="write the conversion report (JSON, Markdown, confusion PNGs) here")
    p.add_argument("--video", help="video for the pipeline run (default: the bundled sample)")
    p.add_argument("--duration", type=float, default=4.0, help="seconds of pipeline run")
    args = p.parse_args(argv)

    from affectlite_convert import convert  # the workstation package (TensorFlow)

    labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    # (1) the model and its data
    if args.demo:
        model, calib, validation = demo_model(args)
    else:
        if not args.calib:
            p.error("--calib is required with --model (images by class folder, or .npy/.npz)")
        model, calib, validation = args.model, args.calib, args.val

    # (2) convert + validate int8 against float
    t0 = time.perf_counter()
    res = convert(model, args.out, calib, partial_card(args, labels), validation=validation,
                  report_dir=args.report_dir, onnx_env=args.onnx_env, latency_threads=[1, 2], latency_runs=20,
                  min_samples=min(100, len(calib)) if isinstance(calib, np.ndarray) else 100, progress=False)
    m = res.card.metrics
    print(f"converted in {time.perf_counter() - t0:.1f} s -> {res.model_path} + {res.card_path.name}")
    print(f"  int8 agreement with float: {m['int8'].get('agreement_with_float')}, "
          f"accuracy float {m['float'].get('accuracy')} / int8 {m['int8'].get('accuracy')} on {m['split']}")
    print(f"  quantisation: {res.card.quantization.get('mode')}, sizes {res.card.quantization.get('sizes')}")
    for w in res.warnings:
        print(f"  warning: {w}")
    if not res.passed:
        print("  conversion checks FAILED: " + "; ".join(res.failures))

    # (3) the runtime loads the pair with no further arguments
    from affectlite.face import FaceAnalyzer
    from affectlite.samples import sample_video

    video = args.video or str(sample_video())
    loaded = affectlite.Model.load(res.model_path)
    print(f"runtime: loaded {loaded.card.name} {loaded.card.version} via {loaded.backend}, "
          f"input {loaded.input_details[0]['shape'].tolist()} {np.dtype(loaded.input_details[0]['dtype']).name}")
    analyzer = FaceAnalyzer(affectlite.FaceOptions(model_path=str(res.model_path)))
    first = _first_frame(video)
    faces = analyzer.classify_image(first)
    analyzer.close()
    if faces:
        print(f"  first frame of {Path(video).name}: {faces[0].label} {faces[0].confidence:.2f}")

    # (4) the live pipeline with your model
    opts = affectlite.PipelineOptions().replace(**{
        "face.model_path": str(res.model_path), "camera.backend": "opencv", "camera.device": video,
        "camera.realtime": False, "audio.enabled": False, "text.enabled": False})
    counts: Counter[str] = Counter()
    with affectlite.EmotionPipeline(opts) as pipe:
        deadline = time.monotonic() + args.duration
        for r in pipe:
            counts[r.label] += 1
            if time.monotonic() > deadline:
                break
        st = pipe.stats()
    print(f"pipeline: {sum(counts.values())} results at {st.fps.get('face', 0):.1f} frames/s, labels "
          f"{json.dumps(dict(counts.most_common()))}")
    return 0 if res.passed else 1


def _first_frame(video: str) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(video)
    ok, bgr = cap.read()
    cap.release()
    if not ok:
        raise SystemExit(f"cannot read {video}")
    rgb: np.ndarray = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return rgb


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
