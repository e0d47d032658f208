"""``affectlite convert`` and ``affectlite train``, registered into the ``affectlite`` command.

The runtime CLI (:mod:`affectlite.cli`) calls :func:`add_subcommands` when this package is installed.
Nothing heavy is imported here: TensorFlow loads only when a command runs.

Exit codes of ``convert``: 0 converted and within thresholds, 1 converted but a threshold failed (model,
card and report are written so you can inspect them), 2 bad input (unknown/corrupt model, too little
calibration data, wrong shapes, bad card) or conversion failure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from affectlite.errors import AffectliteError, ConversionError

__all__ = ["RECIPES", "add_subcommands", "cmd_convert", "cmd_train", "main", "register_convert",
           "register_train"]

RECIPES = ("face", "voice", "text", "fusion")


def register_convert(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``convert`` sub-command to an argparse sub-parsers object."""
    c = subparsers.add_parser(
        "convert", help="convert a trained model (.keras/.h5/SavedModel/.onnx) to int8 TFLite + card + report",
        description="Convert a float model to full-integer int8 TFLite, validate it against the float model "
                    "and write <output>.tflite, <output>.card.json and a report. Exit 0: ok; 1: a threshold "
                    "failed; 2: bad input.")
    c.add_argument("model", nargs="?", help="the float model: .keras, .h5, SavedModel folder or .onnx")
    c.add_argument("-o", "--output", help="the .tflite to write (card written next to it)")
    c.add_argument("--calib", "--representative", dest="calib",
                   help="calibration data: image folder, WAV/FLAC folder, .txt/.tsv sentences, .npy or .npz")
    c.add_argument("--card", help="partial model card JSON (name, task, labels, inputs[kind, preprocessing]...)")
    c.add_argument("--name", help="card name (overrides --card)")
    c.add_argument("--task", choices=["face", "voice", "text", "fusion", "generic"], help="card task")
    c.add_argument("--labels", help="comma-separated labels in output order (overrides --card)")
    c.add_argument("--validation", help="held-out labelled data (folder by class, .tsv, or .npz with y)")
    c.add_argument("--validation-split", help="words for the card's metrics.split, e.g. 'FER2013 public_test'")
    c.add_argument("--io-dtype", choices=["int8", "uint8", "float32"], default="int8",
                   help="input/output tensor type (default int8)")
    c.add_argument("--per-tensor", action="store_true", help="per-tensor weight quantisation (default per-channel)")
    c.add_argument("--min-samples", type=int, default=20, help="refuse fewer calibration samples (default 20)")
    c.add_argument("--recommended-samples", type=int, default=200, help="warn below this many (default 200)")
    c.add_argument("--max-calibration-samples", type=int, default=1000, help="use at most this many (1000)")
    c.add_argument("--min-agreement", type=float, default=0.90,
                   help="fail (exit 1) when top-1 agreement float vs int8 is below this fraction (0.90)")
    c.add_argument("--max-accuracy-drop", type=float, default=0.02,
                   help="fail (exit 1) when accuracy drops more than this fraction float -> int8 (0.02)")
    c.add_argument("--report-dir", help="write the JSON/Markdown report and confusion matrices here "
                                        "(default: next to the output)")
    c.add_argument("--no-float-ops", action="store_true",
                   help="fail instead of leaving ops without an int8 kernel in float")
    c.add_argument("--onnx-env", help="Python environment with onnx2tf (default: $AFFECTLITE_ONNX2TF_ENV or "
                                      "~/.cache/affectlite/onnx2tf-venv)")
    c.add_argument("--setup-onnx", action="store_true",
                   help="create the onnx2tf environment (network needed) and exit")
    c.add_argument("--threads", help="comma-separated interpreter thread counts to time (default 1,N; 0: skip)")
    c.add_argument("--json", action="store_true", help="print the report JSON on stdout")
    c.set_defaults(func=cmd_convert)
    return c  # type: ignore[no-any-return]


def register_train(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``train face|voice|text|fusion [recipe args...]``; each recipe parses its own arguments."""
    t = subparsers.add_parser(
        "train", help="train one of the default models with its recipe (affectlite train face --help)",
        description="Run a training recipe: affectlite_convert.recipes.<name>.main(args).")
    t.add_argument("recipe", choices=RECIPES)
    t.add_argument("recipe_args", nargs=argparse.REMAINDER, help="arguments passed to the recipe")
    t.set_defaults(func=cmd_train)
    return t  # type: ignore[no-any-return]


def add_subcommands(subparsers: Any) -> None:
    """Register ``convert`` and ``train`` into the ``affectlite`` command's sub-parsers."""
    register_convert(subparsers)
    register_train(subparsers)


def cmd_train(args: argparse.Namespace) -> int:
    """Run ``affectlite_convert.recipes.<recipe>.main(recipe_args)``."""
    try:
        mod = importlib.import_module(f"affectlite_convert.recipes.{args.recipe}")
    except ImportError as e:
        raise ConversionError(f"training recipe {args.recipe!r} is not available: {e}") from e
    if not hasattr(mod, "main"):
        raise ConversionError(f"affectlite_convert.recipes.{args.recipe} has no main(argv) function")
    rest = list(args.recipe_args or [])
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return int(mod.main(rest) or 0)


def _card_from_args(args: argparse.Namespace) -> dict[str, Any]:
    card: dict[str, Any] = {}
    if args.card:
        p = Path(args.card)
        try:
            card = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConversionError(f"card file {p} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConversionError(f"card file {p} is not readable JSON: {e}") from None
        if not isinstance(card, dict):
            raise ConversionError(f"card file {p} must hold a JSON object")
    if args.name:
        card["name"] = args.name
    if args.task:
        card["task"] = args.task
    if args.labels:
        card["labels"] = [s.strip() for s in args.labels.split(",") if s.strip()]
    if not card.get("labels"):
        raise ConversionError("the labels are needed: --labels a,b,c or a --card JSON with \"labels\"")
    return card


def cmd_convert(args: argparse.Namespace) -> int:
    """The ``convert`` command. Returns 0 (ok) or 1 (threshold failed); raises AffectliteError (exit 2)."""
    if args.setup_onnx:
        from .onnx_import import create_env, default_env_dir

        py = create_env(Path(args.onnx_env) if args.onnx_env else default_env_dir())
        print(f"onnx2tf environment ready: {py}")
        return 0
    if not args.model or not args.output or not args.calib:
        raise ConversionError("usage: affectlite convert MODEL -o OUTPUT.tflite --calib DATA "
                              "(--card CARD.json | --labels a,b,c)")
    card = _card_from_args(args)
    threads = None
    if args.threads is not None:
        try:
            threads = [int(t) for t in args.threads.split(",") if t.strip() and int(t) > 0]
        except ValueError:
            raise ConversionError(f"--threads: expected comma-separated integers, got {args.threads!r}") from None
    from . import convert

    out = Path(args.output)
    res = convert(args.model, out, args.calib, card, validation=args.validation,
                  validation_split=args.validation_split, io_dtype=args.io_dtype, per_channel=not args.per_tensor,
                  min_samples=args.min_samples, recommended_samples=args.recommended_samples,
                  max_calibration_samples=args.max_calibration_samples, min_agreement=args.min_agreement,
                  max_accuracy_drop=args.max_accuracy_drop,
                  report_dir=args.report_dir or out.parent, allow_float_ops=not args.no_float_ops,
                  onnx_env=args.onnx_env, latency_threads=threads)
    if args.json:
        print(json.dumps(res.report, indent=2, default=str))
    else:
        v = res.report["validation"]
        print(f"wrote {res.model_path} ({res.report['sizes']['int8_tflite_bytes']} bytes) and {res.card_path}")
        print(f"agreement float vs int8: {100 * v['agreement']:.2f}% on {v['n']} samples"
              + (" (calibration set)" if v["on_calibration_set"] else ""))
        if v["float"]:
            print(f"accuracy float {100 * v['float']['accuracy']:.2f}%, int8 {100 * v['int8']['accuracy']:.2f}%")
        if res.float_ops:
            print("ops that stay float: " + ", ".join(sorted({o["op"] for o in res.float_ops})))
        for w in res.warnings:
            print(f"warning: {w}", file=sys.stderr)
        if res.report_paths:
            print(f"report: {res.report_paths.get('markdown')}")
    if not res.passed:
        for f in res.failures:
            print(f"FAILED: {f}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m affectlite_convert.cli convert ...``) with the same exit codes."""
    p = argparse.ArgumentParser(prog="affectlite")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_subcommands(sub)
    args = p.parse_args(argv)
    try:
        return int(args.func(args))
    except AffectliteError as e:
        print(f"affectlite {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
