"""Backend registry and the interpreter protocol shared by every backend."""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import BackendError, BackendNotInstalledError, ModelLoadError


@runtime_checkable
class Interpreter(Protocol):
    """The subset of the TFLite ``Interpreter`` API affectlite uses (LiteRT, tflite_runtime, tf.lite)."""

    def allocate_tensors(self) -> None: ...
    def get_input_details(self) -> list[dict[str, Any]]: ...
    def get_output_details(self) -> list[dict[str, Any]]: ...
    def set_tensor(self, tensor_index: int, value: np.ndarray) -> None: ...
    def invoke(self) -> None: ...
    def get_tensor(self, tensor_index: int) -> np.ndarray: ...
    def resize_tensor_input(self, input_index: int, tensor_size: Sequence[int], strict: bool = False) -> None: ...


#: A factory creates an interpreter: (model_path, model_content, num_threads, delegate_paths) -> Interpreter.
InterpreterFactory = Callable[[str | None, bytes | None, int | None, Sequence[str]], Interpreter]


@dataclass(frozen=True)
class BackendInfo:
    """One interpreter backend as listed by :func:`describe_backends`."""

    name: str
    module: str
    install_hint: str
    available: bool
    reason: str = ""


@dataclass
class _Backend:
    name: str
    module: str
    install_hint: str
    loader: Callable[[], tuple[type[Any], Callable[..., Any]]]  # -> (Interpreter class, load_delegate)


def _litert() -> tuple[type[Any], Callable[..., Any]]:
    m = importlib.import_module("ai_edge_litert.interpreter")
    return m.Interpreter, m.load_delegate


def _tflite_runtime() -> tuple[type[Any], Callable[..., Any]]:
    m = importlib.import_module("tflite_runtime.interpreter")
    return m.Interpreter, m.load_delegate


def _tf_lite() -> tuple[type[Any], Callable[..., Any]]:
    tf = importlib.import_module("tensorflow")
    return tf.lite.Interpreter, tf.lite.experimental.load_delegate


_REGISTRY: dict[str, _Backend] = {
    "litert": _Backend("litert", "ai_edge_litert", "pip install 'affectlite[litert]'  (ai-edge-litert==2.3.0)",
                       _litert),
    "tflite_runtime": _Backend("tflite_runtime", "tflite_runtime",
                               "pip install 'affectlite[tflite]'  (tflite-runtime==2.14.0, needs numpy<2)",
                               _tflite_runtime),
    "tf_lite": _Backend("tf_lite", "tensorflow", "pip install tensorflow-cpu==2.21.0  (heavy; last resort)",
                        _tf_lite),
}
_FACTORIES: dict[str, InterpreterFactory] = {}

#: Backend names in the order ``"auto"`` tries them.
BACKENDS: tuple[str, ...] = ("litert", "tflite_runtime", "tf_lite")


def register_backend(name: str, factory: InterpreterFactory) -> None:
    """Register a custom interpreter factory (e.g. :class:`affectlite.testing.FakeInterpreter`).

    Args:
        name: Backend name to pass as ``backend=``.
        factory: Called as ``factory(model_path, model_content, num_threads, delegate_paths)``.
    """
    _FACTORIES[name] = factory


def _probe(name: str) -> tuple[bool, str]:
    b = _REGISTRY[name]
    try:
        spec = importlib.util.find_spec(b.module)
    except (ImportError, ValueError) as e:
        return False, str(e)
    if spec is None:
        return False, f"module {b.module!r} is not installed; {b.install_hint}"
    return True, ""


def describe_backends() -> list[BackendInfo]:
    """List every known backend with whether it can be imported and, if not, how to install it."""
    out = []
    for name in BACKENDS:
        ok, why = _probe(name)
        b = _REGISTRY[name]
        out.append(BackendInfo(name, b.module, b.install_hint, ok, why))
    for name in _FACTORIES:
        out.append(BackendInfo(name, "<registered>", "", True, ""))
    return out


def available_backends() -> list[str]:
    """Names of the backends whose library is installed, in ``"auto"`` order."""
    return [b.name for b in describe_backends() if b.available]


def _load(name: str) -> tuple[type[Any], Callable[..., Any]]:
    if name not in _REGISTRY:
        known = ", ".join((*BACKENDS, *_FACTORIES))
        raise BackendError(f"unknown interpreter backend {name!r}; choose one of: auto, {known}")
    b = _REGISTRY[name]
    try:
        return b.loader()
    except ImportError as e:
        raise BackendNotInstalledError(
            f"interpreter backend {name!r} is not installed ({e}); install it with: {b.install_hint}") from None


def create_interpreter(model_path: str | os.PathLike[str] | None = None, *, model_content: bytes | None = None,
                       backend: str = "auto", num_threads: int | None = None,
                       delegates: Sequence[str] = (),
                       input_shapes: Sequence[Sequence[int]] | None = None,
                       default_delegates: bool = True) -> tuple[Interpreter, str]:
    """Create and allocate an interpreter.

    Args:
        model_path: Path of a ``.tflite`` file (or pass ``model_content``).
        model_content: The model bytes.
        backend: ``"auto"``, ``"litert"``, ``"tflite_runtime"``, ``"tf_lite"`` or a registered name.
        num_threads: Threads for this interpreter (``None``: the backend's default).
        delegates: Paths of delegate libraries (e.g. ``libedgetpu.so.1``, a GPU delegate ``.so``).
        input_shapes: Shapes the inputs are resized to before the first allocation, in input order (for
            models with dynamic inputs whose stored default shape cannot be allocated).
        default_delegates: Let the backend apply its default delegate (XNNPACK on LiteRT / tflite_runtime /
            tf.lite). ``False`` runs the builtin kernels only: for a model whose weights XNNPACK would repack
            into a second copy (the text models' 262,144-input dense layer: 21.6 MB -> 5.4 MB RSS per
            interpreter, and faster). Ignored by registered factories and by backends without the switch.

    Returns:
        ``(interpreter, backend_name)``.

    Raises:
        BackendNotInstalledError: the requested backend (or, for auto, every backend) is missing.
        BackendError: a delegate failed to load (message says which and what to try).
        ModelLoadError: the interpreter refused the model (corrupt or truncated file).
    """
    path = os.fspath(model_path) if model_path is not None else None
    if backend in _FACTORIES:
        try:
            interp = _FACTORIES[backend](path, model_content, num_threads, tuple(delegates))
            _resize_inputs(interp, input_shapes)
            interp.allocate_tensors()
            return interp, backend
        except (BackendError, ModelLoadError):
            raise
        except Exception as e:
            raise ModelLoadError(f"backend {backend!r} could not load {path or '<bytes>'}: {e}") from e
    if backend == "auto":
        errors = []
        for name in BACKENDS:
            try:
                cls, load_delegate = _load(name)
            except BackendNotInstalledError as e:
                errors.append(str(e))
                continue
            return _instantiate(name, cls, load_delegate, path, model_content, num_threads, delegates,
                                input_shapes, default_delegates), name
        raise BackendNotInstalledError(
            "no TFLite interpreter is installed; install one with: pip install 'affectlite[litert]' "
            "(or on numpy<2 systems: pip install 'affectlite[tflite]'). Tried: " + " | ".join(errors))
    cls, load_delegate = _load(backend)
    return _instantiate(backend, cls, load_delegate, path, model_content, num_threads, delegates,
                        input_shapes, default_delegates), backend


def _resize_inputs(interp: Any, input_shapes: Sequence[Sequence[int]] | None) -> None:
    for i, shape in enumerate(input_shapes or ()):
        interp.resize_tensor_input(int(interp.get_input_details()[i]["index"]), [int(v) for v in shape],
                                   strict=False)


def _no_default_delegates(cls: type[Any]) -> Any:
    """The backend's ``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``, or ``None`` if it has none."""
    try:  # the interpreter's own module (ai_edge_litert.interpreter, tensorflow.lite.python.interpreter...)
        types = getattr(importlib.import_module(cls.__module__), "OpResolverType", None)
    except ImportError:
        return None
    return getattr(types, "BUILTIN_WITHOUT_DEFAULT_DELEGATES", None)


def _instantiate(name: str, cls: type[Any], load_delegate: Callable[..., Any], path: str | None,
                 content: bytes | None, num_threads: int | None, delegates: Sequence[str],
                 input_shapes: Sequence[Sequence[int]] | None = None,
                 default_delegates: bool = True) -> Interpreter:
    if path is None and content is None:
        raise ModelLoadError("no model given: pass a .tflite path or model_content bytes")
    if path is not None and not os.path.isfile(path):
        raise ModelLoadError(f"model file {path} does not exist")
    loaded = []
    for d in delegates:
        try:
            loaded.append(load_delegate(d))
        except (ValueError, OSError, RuntimeError) as e:
            hint = ""
            if "edgetpu" in d.lower():
                hint = (" - no Edge TPU found or libedgetpu missing: plug in the Coral device and install "
                        "libedgetpu1-std, or remove the delegate to use the CPU")
            elif "gpu" in d.lower():
                hint = " - the GPU delegate needs OpenCL/OpenGL drivers; remove the delegate to use the CPU"
            raise BackendError(f"delegate {d!r} failed to load with backend {name!r}: {e}{hint}") from None
    kwargs: dict[str, Any] = {"num_threads": num_threads}
    if loaded:
        kwargs["experimental_delegates"] = loaded
    if not default_delegates:
        resolver = _no_default_delegates(cls)
        if resolver is not None:
            kwargs["experimental_op_resolver_type"] = resolver
    try:
        if path is not None:
            interp = cls(model_path=path, **kwargs)
        else:
            interp = cls(model_content=content, **kwargs)
        _resize_inputs(interp, input_shapes)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ModelLoadError(f"{name} could not load model {path or '<bytes>'}: {str(e).strip()[:300]} - the "
                             "file is corrupt, truncated or not a TFLite flatbuffer; re-export it with "
                             "`affectlite convert`") from None
    return interp  # type: ignore[no-any-return]
