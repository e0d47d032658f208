"""Interpreter backends: one module per backend and a small registry.

``"auto"`` tries ``litert`` (ai-edge-litert), then ``tflite_runtime``, then ``tf_lite`` (TensorFlow). An
explicit backend whose library is missing stays listed and fails with the pip command that fixes it.
LiteRT's ``invoke()`` releases the GIL but is not re-entrant: create one interpreter per thread.
"""

from __future__ import annotations

from ._registry import (
    BACKENDS,
    BackendInfo,
    Interpreter,
    InterpreterFactory,
    available_backends,
    create_interpreter,
    describe_backends,
    register_backend,
)

__all__ = [
    "BACKENDS",
    "BackendInfo",
    "Interpreter",
    "InterpreterFactory",
    "available_backends",
    "create_interpreter",
    "describe_backends",
    "register_backend",
]
