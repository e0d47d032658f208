"""Emotional-speech corpora: THE one place that reads labels, speakers and genders from file names.

Used by ``affectlite eval voice --data DIR`` (:func:`affectlite.voice.evaluate_voice`) and by the voice
training recipe (``affectlite_convert.recipes.voice``), so any corpus folder the recipe trains on can be
evaluated directly, with the same label mapping.

Conventions, tried in order (:data:`CONVENTIONS`):

=========  ==========================================  =======================================================
corpus     file name                                   labels -> :data:`affectlite.LABELS`
=========  ==========================================  =======================================================
ravdess    ``03-01-05-02-01-02-12.flac`` (7 fields,    01 neutral, 02 calm -> neutral, 03 happy, 04 sad,
           actor last; odd actor = male)               05 angry, 06 fearful -> fear, 07 disgust,
                                                       08 surprised -> surprise
tess       ``OAF_back_angry.ogg`` (speaker_word_       angry, disgust, fear, happy, neutral, ps (pleasant
           emotion; speakers OAF, YAF, both female)    surprise) -> surprise, sad
crema-d    ``1001_DFA_ANG_XX.wav`` (actor first)       ANG DIS FEA HAP NEU SAD
emodb      ``03a01Fa.wav`` (speaker first 2 digits)    W anger, E disgust, A fear, F happiness, T sadness,
                                                       N neutral; L boredom is skipped
ased       ``01Neutral/n1-01-01-01-01.ogg`` (letter+   label from the FOLDER (``01Neutral 02Fearful 03Happy
           folder no., sentence, repetition, gender    04Sad 05Angry``; the letter is wrong for one file);
           01 f / 02 m, speaker 01-65)                 speaker from the last field; gender: the speaker's
                                                       majority in :func:`list_speech_files` (the field is
                                                       wrong for a few files)
nemo       ``samples/KS0_anger_12.ogg`` (speaker_      anger, fear, happiness, neutral, sadness, surprised;
           emotion_n; genders of the 9 actors from     gender of the 9 actors from the corpus's data.tsv
           data.tsv)
turev      ``Angry/1157_kz_acik.ogg`` (speaker_code_   kz angry, sk calm -> neutral, mt happy, hl sad;
           word)                                       gender unknown
folder     ``angry/x.wav`` (parent folder = label)     synonyms accepted (``happiness``, ``fearful`` ...)
=========  ==========================================  =======================================================
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from .labels import canonical_label

__all__ = [
    "AUDIO_EXTENSIONS",
    "CONVENTIONS",
    "SpeechFile",
    "list_speech_files",
    "parse_speech_file",
]

#: Audio file suffixes read by :func:`list_speech_files` (Ogg/Opus needs soundfile >= 0.12).
AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".opus")

#: Naming conventions in the order they are tried.
CONVENTIONS = ("ravdess", "tess", "crema-d", "emodb", "ased", "nemo", "turev", "folder")

SKIP = "skip"
UNLABELLED = "unlabelled"

_RAVDESS = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_RAVDESS_EMO = {"01": "neutral", "02": "neutral", "03": "happy", "04": "sad", "05": "angry", "06": "fear",
                "07": "disgust", "08": "surprise"}
_TESS = re.compile(r"^(OAF|YAF|OA|YA)_([A-Za-z]+)_(angry|disgust|fear|happy|neutral|ps|sad)$", re.IGNORECASE)
_TESS_EMO = {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral",
             "ps": "surprise", "sad": "sad"}
_CREMA = re.compile(r"^(\d{4})_([A-Z]{3})_(ANG|DIS|FEA|HAP|NEU|SAD)_([A-Z]{1,2})$")
_CREMA_EMO = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_EMODB = re.compile(r"^(\d\d)([a-b])(\d\d)([WLEAFTN])([a-z])$")
_EMODB_EMO: dict[str, str | None] = {"W": "angry", "L": None, "E": "disgust", "A": "fear", "F": "happy",
                                     "T": "sad", "N": "neutral"}
# EmoDB speakers (Burkhardt et al. 2005): 03, 10, 11, 12, 15 male; 08, 09, 13, 14, 16 female
_EMODB_MALE = {"03", "10", "11", "12", "15"}
_ASED = re.compile(r"^([A-Za-z])(\d)-(\d\d)-(\d\d)-(0[12])-(\d\d)$")
_ASED_FOLDER = re.compile(r"^0([1-5])(Neutral|Fearful|Happy|Sad|Angry)$", re.IGNORECASE)
_NEMO = re.compile(r"^([A-Z]{2}\d)_(anger|fear|happiness|neutral|sadness|surprised)_(\d+)$")
_NEMO_EMO = {"anger": "angry", "fear": "fear", "happiness": "happy", "neutral": "neutral", "sadness": "sad",
             "surprised": "surprise"}
# nEMO's data.tsv: gender of its 9 actors
_NEMO_GENDER = {"EB0": "f", "IC0": "f", "KD0": "f", "MK0": "f", "KS0": "m", "MP0": "m", "SM0": "m", "TP0": "m",
                "WR0": "m"}
_TUREV = re.compile(r"^(\d{4})_(kz|sk|mt|hl)_(.+)$")
_TUREV_EMO = {"kz": "angry", "sk": "neutral", "mt": "happy", "hl": "sad"}
_SKIP_FOLDERS = ("contempt", "boredom", "bored", "calm_skip")


@dataclass(frozen=True)
class SpeechFile:
    """One labelled (or skipped) speech file.

    Attributes:
        path: The file.
        label: A common label of :data:`affectlite.LABELS`, or ``None`` (skipped or unlabelled).
        convention: Which naming convention gave it (:data:`CONVENTIONS`), ``"skip"`` (a known label without
            counterpart, e.g. boredom) or ``"unlabelled"``.
        speaker: ``"corpus:speaker"`` (``"ravdess:12"``, ``"tess:OAF"``), ``""`` when unknown.
        gender: ``"m"``, ``"f"`` or ``""`` when unknown.
    """

    path: Path
    label: str | None
    convention: str
    speaker: str = ""
    gender: str = ""

    @property
    def corpus(self) -> str:
        """The corpus (the convention, or ``"folder"``)."""
        return self.speaker.split(":", 1)[0] if self.speaker else self.convention


def parse_speech_file(path: str | os.PathLike[str]) -> SpeechFile:
    """Label, speaker and gender of a speech file from its name (see the module docstring)."""
    p = Path(path)
    stem = p.stem
    m = _RAVDESS.match(stem)
    if m and m.group(3) in _RAVDESS_EMO:
        actor = int(m.group(7))
        return SpeechFile(p, _RAVDESS_EMO[m.group(3)], "ravdess", f"ravdess:{actor:02d}", "m" if actor % 2 else "f")
    m = _TESS.match(stem)
    if m:
        spk = m.group(1).upper()
        spk = {"OA": "OAF", "YA": "YAF"}.get(spk, spk)  # one OAF file is named OA_bite_neutral
        return SpeechFile(p, _TESS_EMO[m.group(3).lower()], "tess", f"tess:{spk}", "f")
    m = _CREMA.match(stem)
    if m:
        return SpeechFile(p, _CREMA_EMO[m.group(3)], "crema-d", f"crema-d:{m.group(1)}", "")
    m = _EMODB.match(stem)
    if m:
        lab = _EMODB_EMO[m.group(4)]
        spk, gender = f"emodb:{m.group(1)}", ("m" if m.group(1) in _EMODB_MALE else "f")
        return SpeechFile(p, lab, "emodb" if lab else SKIP, spk if lab else "", gender if lab else "")
    m = _ASED.match(stem)
    fm = _ASED_FOLDER.match(p.parent.name)
    if m and fm:  # label from the folder: the letter is inconsistent for one speaker
        return SpeechFile(p, canonical_label(fm.group(2)), "ased", f"ased:{m.group(6)}",
                          "f" if m.group(5) == "01" else "m")
    m = _NEMO.match(stem)
    if m:
        return SpeechFile(p, _NEMO_EMO[m.group(2)], "nemo", f"nemo:{m.group(1)}", _NEMO_GENDER.get(m.group(1), ""))
    m = _TUREV.match(stem)
    if m:
        return SpeechFile(p, _TUREV_EMO[m.group(2)], "turev", f"turev:{m.group(1)}", "")
    folder = p.parent.name
    lab = canonical_label(folder)
    if lab is not None:
        return SpeechFile(p, lab, "folder")
    if folder.strip().lower() in _SKIP_FOLDERS:
        return SpeechFile(p, None, SKIP)
    return SpeechFile(p, None, UNLABELLED)


def list_speech_files(root: str | os.PathLike[str], *, labelled_only: bool = True) -> list[SpeechFile]:
    """Every audio file under ``root`` (recursively, sorted by path), parsed by :func:`parse_speech_file`.

    A speaker's gender is the majority of its files' genders (ASED's gender field is wrong for a few files).

    Args:
        root: A corpus folder.
        labelled_only: Leave out skipped and unlabelled files.
    """
    files = sorted(q for q in Path(root).rglob("*") if q.suffix.lower() in AUDIO_EXTENSIONS and q.is_file())
    out = [parse_speech_file(q) for q in files]
    votes: dict[str, Counter[str]] = {}
    for f in out:
        if f.speaker and f.gender:
            votes.setdefault(f.speaker, Counter())[f.gender] += 1
    major = {spk: c.most_common(1)[0][0] for spk, c in votes.items()}
    out = [replace(f, gender=major[f.speaker]) if f.speaker in major and f.gender != major[f.speaker] else f
           for f in out]
    return [f for f in out if f.label is not None] if labelled_only else out
