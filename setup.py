"""affectlite: on-device emotion recognition SDK (runtime) and its workstation converter."""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
README = (HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else ""

EXTRAS = {
    "litert": ["ai-edge-litert==2.3.0"],
    "tflite": ["tflite-runtime==2.14.0", "numpy<2"],
    "opencv": ["opencv-python-headless>=4.8,<5"],
    "audio": ["soundfile>=0.12", "pyaudio>=0.2.13"],
    "files": ["soundfile>=0.12"],
    "yaml": ["PyYAML>=6"],
    "convert": ["tensorflow-cpu==2.21.0", "onnx>=1.16", "tqdm>=4.60", "soundfile>=0.12",
                "opencv-python-headless>=4.8,<5", "PyYAML>=6", "scipy>=1.10"],
    "dev": ["pytest>=8", "hypothesis>=6.100", "mypy>=1.10", "ruff>=0.5", "types-PyYAML", "build>=1.2",
            "scikit-image>=0.22", "psutil>=5.9", "pytest-benchmark>=4", "selenium>=4.20,<4.52", "paho-mqtt>=2",
            "jsonschema>=4.18"],
}
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
                                 "profiles/*.yaml", "data/*", "schemas/*.json"],
                  "affectlite_convert": ["py.typed", "templates/*"]},
    include_package_data=True,
    install_requires=["numpy>=1.24,<3", "PyYAML>=6"],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["affectlite=affectlite.cli:main"]},
)
