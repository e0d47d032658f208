"""ONNX import: ``onnx2tf`` run in its own Python environment, producing a SavedModel.

``onnx2tf`` pins its own TensorFlow (and numpy, onnx...) versions, which clash with the converter's, so
it lives in a separate virtual environment and runs as a subprocess. The environment is found, in order:

1. the ``env`` argument / ``affectlite convert --onnx-env PATH``;
2. the ``AFFECTLITE_ONNX2TF_ENV`` environment variable;
3. ``~/.cache/affectlite/onnx2tf-venv`` (``AFFECTLITE_CACHE`` replaces ``~/.cache/affectlite``).

A path may be the environment folder or its ``python`` executable. When none works, the error message
has the exact commands to create one (:func:`setup_commands`), or call :func:`create_env`.

onnx2tf turns NCHW image inputs into NHWC; :func:`affectlite_convert.convert` transposes NCHW calibration
arrays to match and says so in the report.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from affectlite.errors import ConversionError

__all__ = [
    "ENV_VAR",
    "ONNX2TF_VERSION",
    "check_onnx",
    "create_env",
    "default_env_dir",
    "find_env",
    "onnx2tf_version",
    "onnx_to_saved_model",
    "setup_commands",
]

ENV_VAR = "AFFECTLITE_ONNX2TF_ENV"
ONNX2TF_VERSION = "1.29.24"


def default_env_dir() -> Path:
    """``$AFFECTLITE_CACHE/onnx2tf-venv`` (default ``~/.cache/affectlite/onnx2tf-venv``)."""
    cache = os.environ.get("AFFECTLITE_CACHE")
    base = Path(cache) if cache else Path.home() / ".cache" / "affectlite"
    return base / "onnx2tf-venv"


def _python_of(path: Path) -> Path:
    if path.is_file():
        return path
    for cand in (path / "bin" / "python", path / "bin" / "python3", path / "Scripts" / "python.exe"):
        if cand.is_file():
            return cand
    return path / "bin" / "python"


def setup_commands(env_dir: Path | None = None) -> str:
    """The shell commands that create the onnx2tf environment."""
    d = env_dir or default_env_dir()
    q = shlex.quote(str(d))
    return (f"python3 -m venv {q} && {q}/bin/pip install --upgrade pip && "
            f"{q}/bin/pip install onnx2tf=={ONNX2TF_VERSION}")


def onnx2tf_version(python: Path) -> str | None:
    """The onnx2tf version importable by ``python`` (``None`` when it is not)."""
    try:
        r = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('onnx2tf'))"],
                           capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return (r.stdout.strip() or None) if r.returncode == 0 else None


def find_env(env: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """Find a Python with onnx2tf.

    Returns:
        ``(python executable, onnx2tf version)``.

    Raises:
        ConversionError: no usable environment; the message says how to create one.
    """
    tried: list[str] = []
    cands: list[Path] = []
    if env is not None:
        cands.append(Path(env))
    elif os.environ.get(ENV_VAR):
        cands.append(Path(os.environ[ENV_VAR]))
    else:
        cands.append(default_env_dir())
    for c in cands:
        py = _python_of(c)
        if not py.is_file():
            tried.append(f"{c} (no python there)")
            continue
        ver = onnx2tf_version(py)
        if ver:
            return py, ver
        tried.append(f"{py} (onnx2tf not importable)")
    target = cands[0] if env is not None else default_env_dir()
    raise ConversionError(
        "ONNX models are converted with onnx2tf, which needs its own Python environment (it pins its own "
        f"TensorFlow). Tried: {'; '.join(tried)}. Create it with:\n    {setup_commands(target)}\n"
        f"or point {ENV_VAR} (or --onnx-env) at an environment where `import onnx2tf` works")


def create_env(env_dir: Path | None = None, *, quiet: bool = False) -> Path:
    """Create the onnx2tf environment (``python -m venv`` + ``pip install onnx2tf``). Needs network access.

    Returns:
        The environment's python.

    Raises:
        ConversionError: venv or pip failed (the output is in the message).
    """
    d = env_dir or default_env_dir()
    d.parent.mkdir(parents=True, exist_ok=True)
    steps = [[sys.executable, "-m", "venv", str(d)],
             [str(_python_of(d)), "-m", "pip", "install", "--upgrade", "pip"],
             [str(_python_of(d)), "-m", "pip", "install", f"onnx2tf=={ONNX2TF_VERSION}"]]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=quiet, text=True, check=False)
        if r.returncode != 0:
            raise ConversionError(f"creating the onnx2tf environment failed at `{shlex.join(cmd)}`:\n"
                                  f"{(r.stderr or '')[-2000:]}")
    return _python_of(d)


def check_onnx(path: Path) -> None:
    """Check that ``path`` is a loadable, valid ONNX model (in this environment; fast, clear errors).

    Raises:
        ConversionError: not an ONNX protobuf, or fails the ONNX checker.
    """
    try:
        import onnx
    except ImportError:
        return  # onnx2tf will report problems itself
    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise ConversionError(f"{path} is not a readable ONNX model (corrupt or truncated?): "
                              f"{type(e).__name__}: {str(e)[:200]}") from e
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise ConversionError(f"{path} fails the ONNX checker: {str(e)[:300]}") from e
    if not model.graph.input:
        raise ConversionError(f"{path} has no graph inputs")


def onnx_to_saved_model(path: Path, out_dir: Path, *, env: str | os.PathLike[str] | None = None,
                        timeout_s: float = 1800.0) -> tuple[Path, str]:
    """Convert an ONNX model to a float SavedModel with onnx2tf (in its own environment).

    Args:
        path: The ``.onnx`` file.
        out_dir: Output folder (created).
        env: The onnx2tf environment (see the module docstring).
        timeout_s: Give up after this long.

    Returns:
        ``(SavedModel folder (= out_dir), onnx2tf version)``.

    Raises:
        ConversionError: invalid ONNX, no onnx2tf environment (with the commands to create one), or
            onnx2tf failed (with the end of its output).
    """
    check_onnx(path)
    python, ver = find_env(env)
    out_dir.mkdir(parents=True, exist_ok=True)
    # a converter never writes to its source: onnx2tf simplifies and saves over its input, so it gets a copy
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="affectlite-onnx-") as tmp:
        work = Path(tmp) / path.name
        shutil.copyfile(path, work)
        return _run_onnx2tf(python, ver, work, path, out_dir, timeout_s)


def _run_onnx2tf(python: Path, ver: str, work: Path, path: Path, out_dir: Path,
                 timeout_s: float) -> tuple[Path, str]:
    cmd = [str(python), "-m", "onnx2tf", "-i", str(work), "-o", str(out_dir), "-osd", "-b", "1", "-n"]
    envvars = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    envvars["TF_CPP_MIN_LOG_LEVEL"] = "2"
    envvars.setdefault("CUDA_VISIBLE_DEVICES", "")
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=envvars, check=False)
    except subprocess.TimeoutExpired:
        raise ConversionError(f"onnx2tf did not finish within {timeout_s:.0f} s on {path}") from None
    if r.returncode != 0 or not (out_dir / "saved_model.pb").is_file():
        tail = "\n".join((r.stdout + "\n" + r.stderr).strip().splitlines()[-25:])
        raise ConversionError(f"onnx2tf failed on {path} (exit {r.returncode}); command: {shlex.join(cmd)}\n"
                              f"{tail}")
    return out_dir, ver
