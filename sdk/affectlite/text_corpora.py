"""Emotion-labelled text corpora: THE one place that reads their files and maps their labels.

Used by ``affectlite eval text --data PATH`` (:func:`affectlite.text.evaluate_text`) and by the text training
recipes (``affectlite_convert.recipes.text``, ``affectlite_convert.recipes.text_conv``), so every corpus a
recipe trains on can be evaluated directly, with the same label mapping.

=============  ===============================================  ==============================================
format         file(s)                                          labels -> :data:`affectlite.LABELS`
=============  ===============================================  ==============================================
goemotions     ``*.tsv``: text, label ids, comment id           Ekman mapping; multi-label rows whose labels
                                                                map to more than one label are skipped
meld           ``*_sent_emo.csv`` (``Utterance``, ``Emotion``,  anger, disgust, fear, joy, neutral, sadness,
               ``Dialogue_ID``)                                 surprise (one to one)
emorynlp       ``emorynlp_*.csv`` (``Utterance``, ``Emotion``,  Neutral, Joyful, Scared, Mad, Sad; Peaceful
               ``Season``, ``Episode``, ``Scene_ID``)           and Powerful have no counterpart (skipped)
dailydialog    ``dialogues_<split>.txt`` + ``dialogues_emotion  0 neutral, 1 anger, 2 disgust, 3 fear,
               _<split>.txt`` (``__eou__``-separated turns)     4 happiness, 5 sadness, 6 surprise
xdailydialog   ``dialogues_text_Zh.txt`` (or ``_En``) +         as dailydialog; dialogues whose turn and
               ``dialogues_emotion.txt``; ``zh_dev_human.txt``  label counts differ are skipped
               (tab-separated dialogue, topic, acts, emotions)
smp2020        JSON array of ``{id, content, label}``           neutral, happy, angry, sad, fear, surprise
cped           ``*.csv`` with ``Dialogue_ID``, ``Emotion``,     happy, neutral, anger, sadness, depress -> sad,
               ``Utterance`` (UTF-8 with BOM)                   fear, astonished -> surprise, disgust; the
                                                                other five are skipped
=============  ===============================================  ==============================================

A folder is read through its evaluation split (GoEmotions ``dev.tsv``, MELD ``dev_sent_emo.csv``, EmoryNLP
``emorynlp_dev_final.csv``, DailyDialog ``validation``, XDailyDialog ``zh_dev_human.txt``, SMP2020
``usual_eval_labeled.txt``, CPED ``valid_split.csv``).

Each utterance keeps a ``group`` (dialogue, scene or post id) so that splits can be made by dialogue, and its
``context``: the previous turn of its dialogue as the file has it (also when that turn's label was skipped;
``""`` for a dialogue's first turn and for GoEmotions / SMP2020 posts).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .labels import LABELS, canonical_label

__all__ = [
    "FORMATS",
    "TextCorpus",
    "dedupe_corpus",
    "detect_format",
    "read_text_corpus",
]

#: Formats :func:`read_text_corpus` knows.
FORMATS = ("goemotions", "meld", "emorynlp", "dailydialog", "xdailydialog", "smp2020", "cped")

_EMORY: dict[str, str | None] = {"neutral": "neutral", "joyful": "happy", "scared": "fear", "mad": "angry",
                                 "sad": "sad", "peaceful": None, "powerful": None}
_DD_CODES: dict[str, str] = {"0": "neutral", "1": "angry", "2": "disgust", "3": "fear", "4": "happy", "5": "sad",
                             "6": "surprise"}
_DD_NAMES: dict[str, str | None] = {"no emotion": "neutral", "anger": "angry", "disgust": "disgust",
                                    "fear": "fear", "happiness": "happy", "sadness": "sad",
                                    "surprise": "surprise"}
_CPED: dict[str, str | None] = {"happy": "happy", "neutral": "neutral", "anger": "angry", "sadness": "sad",
                                "depress": "sad", "fear": "fear", "astonished": "surprise", "disgust": "disgust",
                                "positive-other": None, "negative-other": None, "worried": None, "relaxed": None,
                                "grateful": None}
_SMP: dict[str, str | None] = {"neutral": "neutral", "happy": "happy", "angry": "angry", "sad": "sad",
                               "fear": "fear", "surprise": "surprise"}

#: The evaluation file of each corpus folder, tried in order.
_FOLDER_EVAL = ("dev.tsv", "dev_sent_emo.csv", "emorynlp_dev_final.csv", "dialogues_validation.txt",
                "zh_dev_human.txt", "usual_eval_labeled.txt", "valid_split.csv")


@dataclass
class TextCorpus:
    """Labelled utterances of one file.

    Attributes:
        name: Format and file (``"meld:dev_sent_emo.csv"``).
        format: One of :data:`FORMATS`.
        texts: The utterances.
        y: Index into :data:`LABELS` per utterance.
        groups: Dialogue / scene / post id per utterance (split by these).
        n_skipped: Utterances whose label has no counterpart in :data:`LABELS` (or that are multi-label).
        skipped_labels: Count per skipped source label.
        contexts: The previous turn of each utterance's dialogue (``""``: none); empty list: not known.
    """

    name: str
    format: str
    texts: list[str]
    y: np.ndarray
    groups: list[str]
    n_skipped: int = 0
    skipped_labels: dict[str, int] = field(default_factory=dict)
    contexts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, keep: np.ndarray | list[int]) -> TextCorpus:
        """The utterances at the given indices (same name and format)."""
        idx = [int(i) for i in np.asarray(keep).reshape(-1)]
        return TextCorpus(self.name, self.format, [self.texts[i] for i in idx], self.y[idx].copy(),
                          [self.groups[i] for i in idx], self.n_skipped, dict(self.skipped_labels),
                          [self.contexts[i] for i in idx] if self.contexts else [])

    def context_list(self) -> list[str]:
        """:attr:`contexts`, or ``""`` for every utterance when they are not known."""
        return list(self.contexts) if self.contexts else [""] * len(self.texts)

    def class_counts(self) -> dict[str, int]:
        """Utterances per label."""
        return dict(zip(LABELS, np.bincount(self.y, minlength=len(LABELS)).tolist(), strict=True))


class _Builder:
    def __init__(self, name: str, fmt: str) -> None:
        self.name, self.fmt = name, fmt
        self.texts: list[str] = []
        self.y: list[int] = []
        self.groups: list[str] = []
        self.contexts: list[str] = []
        self.skipped: dict[str, int] = {}
        self._last: dict[str, str] = {}  # group -> its latest turn (labelled or not)

    def add(self, text: str, label: str | None, source_label: str, group: str) -> None:
        context = self._last.get(group, "")
        self._last[group] = text
        if label is None:
            self.skipped[source_label] = self.skipped.get(source_label, 0) + 1
            return
        self.texts.append(text)
        self.y.append(LABELS.index(label))
        self.groups.append(group)
        self.contexts.append(context)

    def build(self) -> TextCorpus:
        return TextCorpus(self.name, self.fmt, self.texts, np.asarray(self.y, np.int64), self.groups,
                          sum(self.skipped.values()), dict(sorted(self.skipped.items())), self.contexts)


def _read_text(p: Path) -> str:
    """File text as UTF-8 (BOM dropped); bytes that are not UTF-8 are read as cp1252 (MELD's 0x92)."""
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {p}: {e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return _mixed_decode(raw)


def _mixed_decode(raw: bytes) -> str:
    """Decode line by line: UTF-8 where it is valid, cp1252 otherwise (never raises)."""
    out = []
    for line in raw.split(b"\n"):
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(line.decode("cp1252", errors="replace"))
    return "\n".join(out).lstrip("\ufeff")


def _fix_cp1252_ghosts(text: str) -> str:
    # MELD texts decoded from UTF-8 sometimes hold C1 control characters where cp1252 punctuation was meant
    return text.translate({0x92: "\u2019", 0x91: "\u2018", 0x93: "\u201c", 0x94: "\u201d", 0x85: "\u2026",
                           0x96: "\u2013", 0x97: "\u2014"})


def detect_format(path: str | os.PathLike[str]) -> str:
    """The corpus format of a file (see the module table).

    Raises:
        InputError: the file is missing or its format is not recognised.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p} is not a file")
    name = p.name.lower()
    if name.endswith(".tsv"):
        return "goemotions"
    if name == "zh_dev_human.txt" or re.fullmatch(r"dialogues_text_[a-z]+\.txt", name):
        return "xdailydialog"
    if re.fullmatch(r"dialogues_(?!emotion|act)[a-z]+\.txt", name):
        return "dailydialog"
    if name.endswith(".csv"):
        head = _read_text(p).split("\n", 1)[0]
        cols = {c.strip().strip('"') for c in next(csv.reader([head]))}
        if {"Utterance", "Emotion", "Dialogue_ID"} <= cols and "Sentiment" in cols and "TV_ID" in cols:
            return "cped"
        if {"Utterance", "Emotion", "Dialogue_ID"} <= cols:
            return "meld"
        if {"Utterance", "Emotion", "Scene_ID"} <= cols:
            return "emorynlp"
        raise InputError(f"{p}: CSV columns {sorted(cols)} match no known corpus (MELD, EmoryNLP, CPED need "
                         "Utterance and Emotion with Dialogue_ID or Scene_ID)")
    start = p.read_bytes()[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith(b"["):
        return "smp2020"
    raise InputError(f"{p}: unknown text corpus format; known: {', '.join(FORMATS)} (see affectlite.text_corpora)")


def read_text_corpus(path: str | os.PathLike[str], fmt: str | None = None) -> TextCorpus:
    """Read an emotion-labelled text file (or a corpus folder's evaluation split).

    Args:
        path: A file of one of :data:`FORMATS`, or a corpus folder (its evaluation split is read).
        fmt: Force a format instead of detecting it.

    Returns:
        The utterances whose label maps to :data:`LABELS`.

    Raises:
        InputError: missing or unreadable file, unknown format, or a malformed row.
    """
    p = Path(path)
    if p.is_dir():
        for f in _FOLDER_EVAL:
            if (p / f).is_file():
                p = p / f
                break
        else:
            raise InputError(f"{p} is a folder without a known evaluation file ({', '.join(_FOLDER_EVAL)}); "
                             "pass a file")
    if not p.exists():
        raise InputError(f"{p} not found")
    fmt = fmt or detect_format(p)
    readers = {"goemotions": _read_goemotions, "meld": _read_meld, "emorynlp": _read_emorynlp,
               "dailydialog": _read_dailydialog, "xdailydialog": _read_xdailydialog, "smp2020": _read_smp,
               "cped": _read_cped}
    if fmt not in readers:
        raise InputError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    return readers[fmt](p)


def _csv_rows(p: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(_read_text(p), newline="")))


def _need(row: dict[str, str], cols: tuple[str, ...], p: Path, i: int) -> None:
    for c in cols:
        if row.get(c) is None:
            raise InputError(f"{p}: row {i + 2} has no {c!r} column")


def _read_goemotions(p: Path) -> TextCorpus:
    from .text import goemotions_common_table, read_goemotions_tsv

    table = goemotions_common_table(p.parent)
    b = _Builder(f"goemotions:{p.name}", "goemotions")
    with open(p, newline="", encoding="utf-8") as fh:
        ids = [rec[2] if len(rec) > 2 else str(i) for i, rec in enumerate(csv.reader(fh, delimiter="\t")) if rec]
    rows = read_goemotions_tsv(p, names=list(table))
    for i, (text, labs) in enumerate(rows):
        common = {table.get(lab) or canonical_label(lab) for lab in labs}
        if None in common:
            raise InputError(f"{p}: label(s) {labs} map to no common label")
        group = ids[i] if i < len(ids) else str(i)
        if len(common) != 1:
            b.add(text, None, "multi-label", group)
        else:
            b.add(text, common.pop(), labs[0], group)
    return b.build()


def _read_meld(p: Path) -> TextCorpus:
    b = _Builder(f"meld:{p.name}", "meld")
    for i, r in enumerate(_csv_rows(p)):
        _need(r, ("Utterance", "Emotion", "Dialogue_ID"), p, i)
        emo = r["Emotion"].strip().lower()
        b.add(_fix_cp1252_ghosts(r["Utterance"]), canonical_label(emo), emo, r["Dialogue_ID"].strip())
    return b.build()


def _read_emorynlp(p: Path) -> TextCorpus:
    b = _Builder(f"emorynlp:{p.name}", "emorynlp")
    for i, r in enumerate(_csv_rows(p)):
        _need(r, ("Utterance", "Emotion", "Scene_ID"), p, i)
        emo = r["Emotion"].strip().lower()
        if emo not in _EMORY:
            raise InputError(f"{p}: row {i + 2}: unknown EmoryNLP emotion {r['Emotion']!r}")
        group = f"s{r.get('Season', '').strip()}e{r.get('Episode', '').strip()}c{r['Scene_ID'].strip()}"
        b.add(r["Utterance"], _EMORY[emo], emo, group)
    return b.build()


def _dd_turns(line: str) -> list[str]:
    parts = [t.strip() for t in line.split("__eou__")]
    if parts and not parts[-1]:
        parts.pop()
    return parts


def _read_dialogues(p: Path, label_file: Path, fmt: str) -> TextCorpus:
    if not label_file.is_file():
        raise InputError(f"{p}: the labels file {label_file.name} is missing next to it")
    texts = [ln for ln in _read_text(p).split("\n") if ln.strip()]
    labels = [ln for ln in _read_text(label_file).split("\n") if ln.strip()]
    if len(texts) != len(labels):
        raise InputError(f"{p} has {len(texts)} dialogues but {label_file.name} has {len(labels)} label lines")
    b = _Builder(f"{fmt}:{p.name}", fmt)
    for d, (tl, ll) in enumerate(zip(texts, labels, strict=True)):
        turns, codes = _dd_turns(tl), ll.split()
        if len(turns) != len(codes):
            b.skipped["turn/label count mismatch"] = b.skipped.get("turn/label count mismatch", 0) + len(turns)
            continue
        for t, c in zip(turns, codes, strict=True):
            if c not in _DD_CODES:
                raise InputError(f"{label_file}: dialogue {d + 1}: emotion code {c!r} is not 0-6")
            b.add(t, _DD_CODES[c], c, f"{p.stem}:{d}")
    return b.build()


def _read_dailydialog(p: Path) -> TextCorpus:
    split = p.stem.split("_", 1)[1]
    return _read_dialogues(p, p.with_name(f"dialogues_emotion_{split}.txt"), "dailydialog")


def _read_xdailydialog(p: Path) -> TextCorpus:
    if p.name != "zh_dev_human.txt":
        return _read_dialogues(p, p.with_name("dialogues_emotion.txt"), "xdailydialog")
    b = _Builder(f"xdailydialog:{p.name}", "xdailydialog")
    for d, line in enumerate(_read_text(p).split("\n")):
        if not line.strip():
            continue
        cols = line.rstrip("\r").split("\t")
        if len(cols) < 4:
            raise InputError(f"{p}: line {d + 1} has {len(cols)} tab-separated columns; expected dialogue, "
                             "topic, acts, emotions")
        turns, codes = _dd_turns(cols[0]), cols[3].split()
        if len(turns) != len(codes):
            b.skipped["turn/label count mismatch"] = b.skipped.get("turn/label count mismatch", 0) + len(turns)
            continue
        for t, c in zip(turns, codes, strict=True):
            lab = _DD_CODES.get(c) or _DD_NAMES.get(c.lower().replace("_", " "))
            if lab is None:
                raise InputError(f"{p}: line {d + 1}: emotion {c!r} is not a DailyDialog code (0-6)")
            b.add(t, lab, c, f"zh_dev_human:{d}")
    return b.build()


def _read_smp(p: Path) -> TextCorpus:
    try:
        data = json.loads(_read_text(p))
    except ValueError as e:
        raise InputError(f"{p}: not a JSON array of {{id, content, label}} ({e})") from None
    if not isinstance(data, list):
        raise InputError(f"{p}: expected a JSON array of {{id, content, label}}")
    b = _Builder(f"smp2020:{p.name}", "smp2020")
    for i, r in enumerate(data):
        if not isinstance(r, dict) or not isinstance(r.get("content"), str) or not isinstance(r.get("label"), str):
            raise InputError(f"{p}: item {i} is not an object with string content and label")
        lab = r["label"].strip().lower()
        if lab not in _SMP:
            raise InputError(f"{p}: item {i}: unknown label {r['label']!r}")
        b.add(r["content"], _SMP[lab], lab, f"{p.stem}:{r.get('id', i)}")
    return b.build()


def _read_cped(p: Path) -> TextCorpus:
    b = _Builder(f"cped:{p.name}", "cped")
    for i, r in enumerate(_csv_rows(p)):
        _need(r, ("Utterance", "Emotion", "Dialogue_ID"), p, i)
        emo = r["Emotion"].strip().lower()
        if emo not in _CPED:
            raise InputError(f"{p}: row {i + 2}: unknown CPED emotion {r['Emotion']!r}")
        b.add(r["Utterance"], _CPED[emo], emo, r["Dialogue_ID"].strip())
    return b.build()


def dedupe_corpus(c: TextCorpus) -> tuple[TextCorpus, int]:
    """Keep each distinct (text, label) pair once (texts compared after stripping and case-folding).

    Returns:
        ``(deduplicated corpus, number of rows removed)``.
    """
    seen: set[tuple[str, int]] = set()
    keep: list[int] = []
    for i, (t, lab) in enumerate(zip(c.texts, c.y.tolist(), strict=True)):
        key = (" ".join(t.split()).casefold(), int(lab))
        if key in seen:
            continue
        seen.add(key)
        keep.append(i)
    return c.subset(keep), len(c) - len(keep)
