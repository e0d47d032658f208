"""Sample media shipped with affectlite, for trying the SDK on a machine without a camera or microphone.

Example: the sample video with its own soundtrack (PyAV, the ``media``/``files`` extra) and, beside it,
``sample.srt`` as the text (``affectlite run --sample`` does this)::

    import affectlite
    from affectlite.media import resolve_cues
    from affectlite.samples import sample_video

    video = str(sample_video())
    opts = affectlite.PipelineOptions().replace(**{
        "camera.backend": "media", "camera.device": video, "audio.backend": "media", "audio.device": video})
    cues, _ = resolve_cues(video)
    with affectlite.EmotionPipeline(opts, on_result=print, subtitles=[(c.start_ns, c.text) for c in cues]) as p:
        p.wait()

Without PyAV, the same speech is shipped as a WAV (:func:`sample_audio`) for the ``file`` audio backend.

or from a shell: ``affectlite run --video "$(python -m affectlite.samples video)" --audio ...``.
See ``affectlite/data/PROVENANCE.md`` for where the media come from.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import AffectliteError

__all__ = ["DATA_DIR", "sample_audio", "sample_paths", "sample_video"]

DATA_DIR = Path(__file__).resolve().parent / "data"
"""Folder holding ``sample.mp4`` (with its speech track), ``sample.srt``, ``sample.wav`` and ``PROVENANCE.md``."""


def _existing(name: str) -> Path:
    p = DATA_DIR / name
    if not p.is_file():
        raise AffectliteError(
            f"sample file {p} is missing; reinstall affectlite (pip install --force-reinstall affectlite) "
            "or regenerate it with scripts/make_sample_media.sh from a source checkout")
    return p


def sample_video() -> Path:
    """Path of the sample video: 640x480, 30 fps, 9.6 s, one smiling face (NASA public-domain portrait), with an
    AAC speech track (eSpeak NG) and ``sample.srt`` beside it.

    Raises:
        AffectliteError: the file is missing from the installation.
    """
    return _existing("sample.mp4")


def sample_audio() -> Path:
    """Path of the sample speech WAV: 16 kHz mono int16, 9.6 s, synthesised with eSpeak NG.

    Raises:
        AffectliteError: the file is missing from the installation.
    """
    return _existing("sample.wav")


def sample_paths() -> tuple[Path, Path]:
    """``(video, wav)``: the paths of the shipped sample video and speech WAV.

    Raises:
        AffectliteError: a file is missing from the installation.
    """
    return sample_video(), sample_audio()


def _main(argv: list[str]) -> int:
    which = argv[0] if argv else "both"
    if which not in ("video", "audio", "both"):
        print("usage: python -m affectlite.samples [video|audio|both]", file=sys.stderr)
        return 2
    video, wav = sample_paths()
    if which in ("video", "both"):
        print(video)
    if which in ("audio", "both"):
        print(wav)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
