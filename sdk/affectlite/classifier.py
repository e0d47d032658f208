"""The synchronous API: one input in, one fused result out, with the same models and fusion as the pipeline."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ._boundary import check_sample_rate, clean_text
from .errors import InputError
from .options import PipelineOptions
from .results import EmotionResult

log = logging.getLogger("affectlite.classifier")

__all__ = ["EmotionClassifier"]


class EmotionClassifier:
    """Classify a still image, an audio clip and/or a text, and fuse what is given.

    Thread-safe: calls are serialised by an internal lock (the interpreters are not re-entrant). For
    parallel work, create one classifier per thread. Models load lazily, on the first call that needs them.

    Args:
        options: Pipeline options; only the ``face``, ``voice``, ``text`` and ``fusion`` sections are used.
    """

    def __init__(self, options: PipelineOptions | None = None) -> None:
        if options is not None and not isinstance(options, PipelineOptions):
            from .errors import ConfigError

            raise ConfigError(f"options must be a PipelineOptions (e.g. PipelineOptions.from_profile('rpi5')), got "
                              f"{type(options).__name__}")
        self.options = options or PipelineOptions()
        self._lock = threading.Lock()
        self._face: Any = None
        self._voice: Any = None
        self._text: Any = None
        self._head: Any = None

    @classmethod
    def default(cls, options: PipelineOptions | None = None) -> EmotionClassifier:
        """A classifier over the shipped int8 models."""
        return cls(options)

    def classify(self, image: np.ndarray | None = None, audio: np.ndarray | None = None, text: str | None = None,
                 *, sample_rate: int = 16000) -> EmotionResult:
        """Classify whatever is given and fuse it.

        Args:
            image: ``(H, W, 3)`` RGB uint8 photo (faces are detected) or a face crop such as a 48x48 grey image.
            audio: Mono samples (float -1..1 or int16) at ``sample_rate``; silence gives no voice evidence.
                Float peaks in (1, 2] are clipped with a warning; larger floats (e.g. on the int16 scale)
                are refused.
            text: A sentence; invalid code points (lone surrogates) are replaced by U+FFFD.
            sample_rate: Rate of ``audio`` in Hz, within 4000..192000.

        Returns:
            The fused :class:`EmotionResult` (an empty result, label ``unknown``, when nothing is recognised).

        Raises:
            InputError: nothing given, or an input of the wrong type, rank, dtype or content, or a sample rate
                outside 4 kHz .. 192 kHz.
        """
        if image is None and audio is None and text is None:
            raise InputError("classify() needs at least one of image=, audio=, text=")
        # the boundary: text cleaned (lone surrogates -> U+FFFD), the sample rate checked before any work
        if text is not None:
            text = clean_text(text, "text")
        if audio is not None:
            sample_rate = check_sample_rate(sample_rate, "sample_rate")
        def voice_of(va: Any) -> Any:
            return va.classify_clip(np.asarray(audio), sample_rate)

        return self._classify(image, voice_of if audio is not None else None, text)

    def classify_file(self, audio: str | os.PathLike[str], image: np.ndarray | None = None,
                      text: str | None = None) -> EmotionResult:
        """Like :meth:`classify` with the audio read from a WAV/FLAC file of any length.

        The file is read, resampled and analysed window by window: memory stays bounded (a 2 h recording
        needs no more than a 2 s one), and the result equals ``classify(audio=load_audio(path))``.

        Raises:
            SourceUnavailableError: the file does not exist or its format needs ``soundfile``.
            InputError: the file cannot be decoded, has no samples, NaN samples, or a rate outside
                4 kHz .. 192 kHz; or a bad ``image``/``text`` as in :meth:`classify`.
        """
        from ._audio_stream import open_audio_blocks
        from ._clip_stream import classify_clip_blocks

        if text is not None:
            text = clean_text(text, "text")
        if not isinstance(audio, (str, os.PathLike)):
            raise InputError(f"classify_file: audio must be a file path, got {type(audio).__name__} (for samples "
                             "use classify(audio=...))")
        blocks = open_audio_blocks(audio, 16000)  # opens and checks the file before any model loads

        def voice_of(va: Any) -> Any:
            try:
                return classify_clip_blocks(va, blocks)
            finally:
                blocks.close()

        return self._classify(image, voice_of, text)

    def _classify(self, image: np.ndarray | None, voice_of: Callable[[Any], Any] | None,
                  text: str | None) -> EmotionResult:
        from .fusion import face_reliability, fuse_once, primary_face, text_reliability, voice_reliability

        with self._lock:
            faces: tuple[Any, ...] = ()
            voice = None
            text_r = None
            if image is not None:
                if self._face is None:
                    from .face import FaceAnalyzer

                    self._face = FaceAnalyzer(self.options.face)
                faces = self._face.classify_image(np.asarray(image))
            if voice_of is not None:
                if self._voice is None:
                    from .voice import VoiceAnalyzer

                    self._voice = VoiceAnalyzer(self.options.voice)
                voice = voice_of(self._voice)
            if text is not None:
                if self._text is None:
                    from .text import TextClassifier

                    self._text = TextClassifier.create(self.options.text)
                text_r = self._text.classify(text, time.monotonic_ns())
            face = primary_face(faces, (int(np.asarray(image).shape[1]), int(np.asarray(image).shape[0]))
                                ) if faces and image is not None else None
            n_mod = sum(x is not None for x in (face, voice, text_r))
            if self.options.fusion.strategy == "learned" and n_mod >= 2 and self._head is None:
                from .fusion import FusionHead, head_model_mismatches

                self._head = FusionHead.load()  # once, not per call
                for msg in head_model_mismatches(self._head, self.options.model_paths()):
                    log.warning("%s", msg)
            result: EmotionResult = fuse_once(
                face_probs=face.probabilities if face is not None else None,
                voice_probs=voice.probabilities if voice is not None else None,
                text_probs=text_r.probabilities if text_r is not None else None,
                face_reliability=face_reliability(face) if face is not None else 1.0,
                voice_reliability=voice_reliability(voice) if voice is not None else 1.0,
                text_reliability=text_reliability(text_r) if text_r is not None else 1.0,
                options=self.options.fusion, head=self._head, faces=faces, voice=voice, text=text_r,
                track_id=face.track_id if face is not None else None, result_ns=time.monotonic_ns())
            return result

    def close(self) -> None:
        """Release the models (idempotent)."""
        with self._lock:
            for m in (self._face, self._voice, self._text, self._head):
                if m is not None and hasattr(m, "close"):
                    m.close()
            self._face = self._voice = self._text = self._head = None

    def __enter__(self) -> EmotionClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
