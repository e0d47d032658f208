#!/usr/bin/env python3
"""Run the shipped int8 models on fixed inputs and on sample media; compare two such runs.

Used by ``scripts/qemu_arm64_check.sh`` to show that an arm64 install gives the same results as x86-64::

    python3 scripts/model_probe.py run --models DIR [--media DIR] --out probe.json
    python3 scripts/model_probe.py compare x86.json arm64.json [--tol 0.03]

``run`` records, for every ``*.tflite`` in ``--models``:

* the raw int8 outputs of the interpreter for seeded inputs that fill each input tensor's whole
  quantised range (the same bytes on every platform, so only the kernels can differ), and
* when ``--media`` is given, the :class:`affectlite.EmotionClassifier` result (face, voice, text and fused
  probabilities) for each image (``.jpg``/``.png``), video (4 frames of ``.mp4``/``.avi``/``.mkv``), audio
  clip (``.wav``/``.flac``) and text line (``.txt``).

``compare`` checks raw outputs within ``--lsb`` quantisation steps and probabilities within ``--tol`` (end to
end, so it also absorbs OpenCV's face detector placing a box a few pixels differently on another CPU; the
largest box difference is reported as ``worst_face_box_px``), and that the labels agree unless the top two
classes are within ``--tol`` of each other. Exit status 0: match.
Runs on Python 3.10+ with numpy 1.24+ (no numpy-2-only APIs).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_EXT = (".mp4", ".avi", ".mkv", ".mov")
AUDIO_EXT = (".wav", ".flac")


def _skip(key: str) -> bool:
    """Keys that legitimately differ between runs (clocks, latencies, ephemeral ids)."""
    return key.endswith(("_ns", "_ms", "_s")) or "time" in key or "latency" in key or key == "track_id"


def _raw_outputs(path: Path, seeds: int) -> dict[str, Any]:
    import numpy as np

    from affectlite.interpreters import create_interpreter

    interp, backend = create_interpreter(path, backend="auto", num_threads=1)
    ins = interp.get_input_details()
    outs = interp.get_output_details()
    runs = []
    for seed in range(seeds):
        rng = np.random.default_rng(1234 + seed)
        for d in ins:
            dt = np.dtype(d["dtype"])
            shape = [max(1, int(s)) for s in d["shape"]]
            if dt.kind in "iu":
                info = np.iinfo(dt)
                scale = float(d.get("quantization", (0.0, 0))[0] or 0.0)
                hi = int(info.max) if scale else min(int(info.max), 99)
                x = rng.integers(int(info.min) if scale else 0, hi + 1, size=shape).astype(dt)
            else:
                x = rng.uniform(-1.0, 1.0, size=shape).astype(dt)
            interp.set_tensor(d["index"], x)
        interp.invoke()
        runs.append([
            {"dtype": np.dtype(o["dtype"]).name, "scale": float(o.get("quantization", (0.0, 0))[0] or 0.0),
             "values": interp.get_tensor(o["index"]).reshape(-1).astype(float).tolist()}
            for o in outs])
    return {"backend": backend, "runs": runs}


def _media_inputs(media: Path) -> list[tuple[str, dict[str, Any]]]:
    import numpy as np

    items: list[tuple[str, dict[str, Any]]] = []
    for p in sorted(media.rglob("*")):
        ext = p.suffix.lower()
        rel = str(p.relative_to(media))
        if ext in IMAGE_EXT or ext in VIDEO_EXT:
            import cv2

            if ext in IMAGE_EXT:
                bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if bgr is not None:
                    items.append((rel, {"image": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)}))
            else:
                cap = cv2.VideoCapture(str(p))
                n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
                for i, frac in enumerate((0.1, 0.35, 0.6, 0.85)):
                    if n > 0:
                        cap.set(cv2.CAP_PROP_POS_FRAMES, int(n * frac))
                    ok, bgr = cap.read()
                    if ok:
                        items.append((f"{rel}#frame{i}", {"image": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)}))
                cap.release()
        elif ext in AUDIO_EXT:
            try:
                import soundfile as sf

                data, sr = sf.read(str(p), dtype="float32", always_2d=True)
                audio = data.mean(axis=1)
            except ImportError:
                import wave

                with wave.open(str(p)) as w:
                    sr = w.getframerate()
                    raw = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
                    audio = raw.reshape(-1, w.getnchannels()).mean(axis=1) / 32768.0
            items.append((rel, {"audio": np.asarray(audio, dtype=np.float32), "sample_rate": int(sr)}))
        elif ext == ".txt":
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines()):
                if line.strip():
                    items.append((f"{rel}:{i + 1}", {"text": line.strip()}))
    return items


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    import affectlite

    t0 = time.time()
    report: dict[str, Any] = {
        "platform": {"machine": platform.machine(), "python": platform.python_version(),
                     "numpy": np.__version__, "affectlite": affectlite.__version__},
        "models": {}, "media": {}, "errors": [],
    }
    try:
        import cv2

        report["platform"]["opencv"] = cv2.__version__
    except ImportError:
        pass
    models = sorted(Path(args.models).glob("*.tflite"))
    if not models:
        print(f"no .tflite models in {args.models}", file=sys.stderr)
        return 3
    for m in models:
        try:
            report["models"][m.stem] = _raw_outputs(m, args.seeds)
        except Exception as e:  # recorded: a model that fails on one platform is a finding
            report["errors"].append(f"{m.name}: {type(e).__name__}: {e}")
    if args.media:
        clf = affectlite.EmotionClassifier.default()
        for name, kw in _media_inputs(Path(args.media)):
            try:
                r = clf.classify(**kw)
                report["media"][name] = r.to_json_dict()
            except Exception as e:
                report["errors"].append(f"{name}: {type(e).__name__}: {e}")
    report["seconds"] = round(time.time() - t0, 2)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    print(f"probe: {len(report['models'])} models, {len(report['media'])} media items, "
          f"{len(report['errors'])} errors, {report['seconds']} s on {report['platform']}")
    return 0


def _numbers(obj: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if _skip(str(k)):
                continue
            out.update(_numbers(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(_numbers(v, f"{prefix}[{i}]"))
    elif isinstance(obj, bool):
        pass
    elif isinstance(obj, (int, float)):
        out[prefix] = float(obj)
    return out


def _labels(obj: Any, prefix: str = "") -> dict[str, tuple[str, dict[str, float]]]:
    """Every ``label`` with the ``probabilities`` next to it."""
    out: dict[str, tuple[str, dict[str, float]]] = {}
    if isinstance(obj, dict):
        if isinstance(obj.get("label"), str):
            out[prefix or "."] = (obj["label"], dict(obj.get("probabilities") or {}))
        for k, v in obj.items():
            out.update(_labels(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(_labels(v, f"{prefix}[{i}]"))
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    a = json.loads(Path(args.a).read_text(encoding="utf-8"))
    b = json.loads(Path(args.b).read_text(encoding="utf-8"))
    problems: list[str] = []
    worst_lsb = 0.0
    worst_prob = 0.0
    worst_box = 0.0  # face boxes: informational (OpenCV's detector may differ by a few pixels per CPU)
    for name in sorted(set(a["models"]) | set(b["models"])):
        if name not in a["models"] or name not in b["models"]:
            problems.append(f"model {name}: only in {'A' if name in a['models'] else 'B'}")
            continue
        for r, (ra, rb) in enumerate(zip(a["models"][name]["runs"], b["models"][name]["runs"], strict=True)):
            for o, (oa, ob) in enumerate(zip(ra, rb, strict=True)):
                if len(oa["values"]) != len(ob["values"]):
                    problems.append(f"model {name} run {r} output {o}: sizes differ")
                    continue
                step = oa["scale"] if oa["scale"] else 1.0
                d = max((abs(x - y) for x, y in zip(oa["values"], ob["values"], strict=True)), default=0.0)
                lsb = d if oa["dtype"].startswith(("int", "uint")) else d / step
                worst_lsb = max(worst_lsb, lsb)
                if (oa["dtype"].startswith(("int", "uint")) and lsb > args.lsb) or (
                        not oa["dtype"].startswith(("int", "uint")) and d > args.tol):
                    problems.append(f"model {name} run {r} output {o}: max difference {d:g} "
                                    f"({lsb:g} steps) > tolerance")
    for item in sorted(set(a["media"]) | set(b["media"])):
        if item not in a["media"] or item not in b["media"]:
            problems.append(f"media {item}: only in {'A' if item in a['media'] else 'B'}")
            continue
        na, nb = _numbers(a["media"][item]), _numbers(b["media"][item])
        for key in sorted(set(na) | set(nb)):
            if key not in na or key not in nb:
                problems.append(f"media {item}: {key} only in {'A' if key in na else 'B'}")
                continue
            if ".box." in key or key.startswith("box."):
                worst_box = max(worst_box, abs(na[key] - nb[key]))
            if "probabilities" in key or key.endswith(("confidence", "valence", "arousal")):
                d = abs(na[key] - nb[key])
                worst_prob = max(worst_prob, d)
                if d > args.tol:
                    problems.append(f"media {item}: {key} {na[key]:.4f} vs {nb[key]:.4f}")
        la, lb = _labels(a["media"][item]), _labels(b["media"][item])
        for key in sorted(set(la) & set(lb)):
            (lab_a, pa), (lab_b, _) = la[key], lb[key]
            if lab_a != lab_b:
                top = sorted(pa.values(), reverse=True)
                tie = len(top) > 1 and top[0] - top[1] <= args.tol
                if not tie:
                    problems.append(f"media {item}: label at {key} {lab_a} vs {lab_b}")
    for side, rep in (("A", a), ("B", b)):
        problems.extend(f"errors in {side}: {e}" for e in rep.get("errors", []))
    summary = {
        "a": a["platform"], "b": b["platform"], "models": len(a["models"]), "media": len(a["media"]),
        "worst_raw_steps": worst_lsb, "worst_probability_diff": round(worst_prob, 5),
        "worst_face_box_px": worst_box,
        "tolerance": args.tol, "lsb": args.lsb, "problems": problems[:50], "match": not problems,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 0 if not problems else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--models", required=True)
    r.add_argument("--media")
    r.add_argument("--seeds", type=int, default=3)
    r.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--tol", type=float, default=0.05,
                   help="probability tolerance (end to end: includes face-detector box differences)")
    c.add_argument("--lsb", type=float, default=2.0, help="raw int8 tolerance in quantisation steps")
    c.add_argument("--out")
    args = ap.parse_args(argv)
    return cmd_run(args) if args.cmd == "run" else cmd_compare(args)


if __name__ == "__main__":
    raise SystemExit(main())
