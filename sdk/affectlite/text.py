"""Text emotion: a pure Python/numpy featuriser and the synchronous text classifier.

The featuriser turns a string into a hashed TF-IDF vector. It is the ONE implementation: the workstation
recipe (:mod:`affectlite_convert.recipes.text`) imports it to build the training matrix, and the device
uses it at run time, so training and inference compute exactly the same features. Its full spec lives in
the model card (``inputs[0].preprocessing``, input ``kind: "text_features"``)::

    {
      "featurizer": "hashed_tfidf", "version": 1,
      "hash": "crc32",                   # zlib.crc32 of UTF-8 "<block>\\x1f<gram>": stable across processes
      "unicode_normalization": "NFKC", "lowercase": true, "max_repeat": 3, "max_chars": 2000,
      "token_pattern": "...",            # Python ``re`` pattern for word tokens
      "blocks": [                        # each block owns its own slice of the vector, in this order
        {"name": "word", "analyzer": "word", "ngram_range": [1, 3], "n_features": 131072, "weight": 1.0},
        {"name": "char", "analyzer": "char_wb", "ngram_range": [1, 6], "n_features": 131072, "weight": 1.0}
        # optional blocks over the PREVIOUS turn of the conversation ("source": "context", own names so
        # their hashes never meet the text's), usually down-weighted; empty when there is no previous turn:
        # {"name": "ctx_word", "source": "context", "analyzer": "word", ...}
      ],
      "sublinear_tf": true,              # tf -> 1 + ln(tf)
      "idf_file": "text.idf.npy",        # float vector (n_features,), relative to the model's folder
      "idf_sha256": "<hex>",             # optional integrity check of the idf file
      "norm": "l2",                      # each block is L2-normalised, scaled by its weight, then the
                                         # whole vector is L2-normalised again
      "n_features": 262144
    }

Text itself is never stored in a result: :class:`~affectlite.results.TextResult` keeps only the
probabilities and the token count.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import io
import json
import math
import os
import re
import threading
import time
import unicodedata
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._io import sha256_bytes
from .errors import ConfigError, InputError, ModelCardError, ModelError, ModelLoadError
from .labels import LABELS, canonical_label, map_distribution
from .results import TextResult, uniform_probabilities

if TYPE_CHECKING:
    from .model import Model
    from .options import TextOptions

__all__ = [
    "COMMERCIAL_TEXT_MODEL",
    "DEFAULT_TEXT_MODEL",
    "GOEMOTIONS_LABELS",
    "TEXT_MODELS",
    "FeatureBlock",
    "TextClassifier",
    "TextFeaturizer",
    "classification_metrics",
    "default_text_spec",
    "detect_language",
    "eval_text_main",
    "evaluate_text",
    "goemotions_common_table",
    "read_goemotions_tsv",
    "shipped_text_models",
    "single_label_rows",
]

#: Default word-token pattern: runs of letters/digits with inner apostrophes, or any single other
#: non-space character (punctuation, emoji), which carries emotion ("!!", "?", ":)").
DEFAULT_TOKEN_PATTERN = r"[^\W_]+(?:['’][^\W_]+)*|[^\w\s]"

_MODELS_DIR = Path(__file__).resolve().parent / "models"

#: The commercially usable English text model (int8; GoEmotions data, Apache-2.0): ``text.commercial: true``.
#: Also the text model the shipped learned fusion head was trained with.
COMMERCIAL_TEXT_MODEL = _MODELS_DIR / "text.tflite"

#: Kept for compatibility: the GoEmotions-only model (see :data:`COMMERCIAL_TEXT_MODEL`).
DEFAULT_TEXT_MODEL = COMMERCIAL_TEXT_MODEL

#: The default text models by language (research / non-commercial training data; docs/text.md).
TEXT_MODELS: dict[str, Path] = {"en": _MODELS_DIR / "text-en-conv.tflite", "zh": _MODELS_DIR / "text-zh.tflite"}

_ANALYZERS = ("word", "char_wb")
_SOURCES = ("text", "context")
_SEP = "\x1f"
_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class FeatureBlock:
    """One group of hashed n-grams with its own slice of the feature vector.

    Attributes:
        name: Block name; part of every hashed key, so blocks never share a hash.
        analyzer: ``"word"`` (word n-grams over tokens) or ``"char_wb"`` (character n-grams inside each
            token padded with one space on each side).
        ngram_min: Smallest n.
        ngram_max: Largest n.
        n_features: Size of the block's slice (number of hash buckets).
        weight: Scale of the block after its own L2 normalisation.
        source: ``"text"`` (the utterance) or ``"context"`` (the previous turn of the conversation).
    """

    name: str
    analyzer: str
    ngram_min: int
    ngram_max: int
    n_features: int
    weight: float = 1.0
    source: str = "text"


def default_text_spec(n_word: int = 1 << 17, n_char: int = 1 << 17, word_ngrams: tuple[int, int] = (1, 3),
                      char_ngrams: tuple[int, int] = (1, 6)) -> dict[str, Any]:
    """The featuriser spec of the shipped model, without idf (see the module docstring)."""
    return {
        "featurizer": "hashed_tfidf",
        "version": 1,
        "hash": "crc32",
        "unicode_normalization": "NFKC",
        "lowercase": True,
        "max_repeat": 3,
        "max_chars": 2000,
        "token_pattern": DEFAULT_TOKEN_PATTERN,
        "blocks": [
            {"name": "word", "analyzer": "word", "ngram_range": list(word_ngrams), "n_features": n_word,
             "weight": 1.0},
            {"name": "char", "analyzer": "char_wb", "ngram_range": list(char_ngrams), "n_features": n_char,
             "weight": 1.0},
        ],
        "sublinear_tf": True,
        "norm": "l2",
        "n_features": n_word + n_char,
    }


def _spec_error(msg: str) -> ModelCardError:
    return ModelCardError(f"text featuriser spec (card inputs[0].preprocessing): {msg}")


class TextFeaturizer:
    """Hashed word/char n-gram TF-IDF features, in pure Python + numpy.

    Build it from a card spec with :meth:`from_spec`; :meth:`transform` gives dense ``float32`` rows,
    :meth:`transform_sparse` the same data in CSR form (used by the training recipe).

    Thread-safe: it holds no mutable state after construction.
    """

    def __init__(self, blocks: Sequence[FeatureBlock], *, idf: np.ndarray | None = None,
                 token_pattern: str = DEFAULT_TOKEN_PATTERN, lowercase: bool = True,
                 unicode_normalization: str | None = "NFKC", max_repeat: int = 3, max_chars: int = 2000,
                 sublinear_tf: bool = True, norm: str = "l2") -> None:
        """Create a featuriser.

        Args:
            blocks: Feature blocks, in vector order.
            idf: Per-feature inverse document frequency (``None``: all ones, i.e. plain TF).
            token_pattern: Python regular expression matching one word token.
            lowercase: Lower-case the text first.
            unicode_normalization: ``"NFKC"``, ``"NFC"``, ``"NFD"``, ``"NFKD"`` or ``None``.
            max_repeat: Collapse runs of one character longer than this (``"soooo"`` -> ``"sooo"``); 0 off.
            max_chars: Only the first ``max_chars`` characters are used (bounds the cost per text).
            sublinear_tf: Use ``1 + ln(tf)`` instead of the raw count.
            norm: ``"l2"`` or ``"none"``.

        Raises:
            ModelCardError: an inconsistent spec (unknown analyzer, bad n-gram range, idf size mismatch).
        """
        if not blocks:
            raise _spec_error("'blocks' must list at least one block")
        for b in blocks:
            if b.analyzer not in _ANALYZERS:
                raise _spec_error(f"block {b.name!r}: analyzer {b.analyzer!r} is not one of {_ANALYZERS}")
            if not 1 <= b.ngram_min <= b.ngram_max <= 8:
                raise _spec_error(f"block {b.name!r}: ngram_range [{b.ngram_min}, {b.ngram_max}] must satisfy "
                                  "1 <= min <= max <= 8")
            if b.n_features < 1:
                raise _spec_error(f"block {b.name!r}: n_features must be positive, got {b.n_features}")
            if not (math.isfinite(b.weight) and b.weight >= 0):
                raise _spec_error(f"block {b.name!r}: weight must be a finite number >= 0, got {b.weight}")
            if b.source not in _SOURCES:
                raise _spec_error(f"block {b.name!r}: source {b.source!r} is not one of {_SOURCES}")
        if len({b.name for b in blocks}) != len(blocks):
            raise _spec_error("block names must be distinct")
        if unicode_normalization not in (None, "NFC", "NFKC", "NFD", "NFKD"):
            raise _spec_error(f"unicode_normalization {unicode_normalization!r} is not NFC/NFKC/NFD/NFKD/null")
        if norm not in ("l2", "none"):
            raise _spec_error(f"norm {norm!r} is not 'l2' or 'none'")
        if max_chars < 1:
            raise _spec_error(f"max_chars must be positive, got {max_chars}")
        try:
            self._token_re = re.compile(token_pattern)
        except re.error as e:
            raise _spec_error(f"token_pattern {token_pattern!r} is not a valid regular expression: {e}") from None
        self.blocks = tuple(blocks)
        self.token_pattern = token_pattern
        self.lowercase = lowercase
        self.unicode_normalization = unicode_normalization
        self.max_repeat = int(max_repeat)
        self.max_chars = int(max_chars)
        self.sublinear_tf = sublinear_tf
        self.norm = norm
        offsets = [0]
        for b in self.blocks:
            offsets.append(offsets[-1] + b.n_features)
        self._offsets = tuple(offsets)
        self.dim = offsets[-1]
        if idf is not None:
            idf = np.asarray(idf, dtype=np.float32).reshape(-1)
            if idf.shape[0] != self.dim:
                raise _spec_error(f"idf has {idf.shape[0]} values but the blocks add up to {self.dim} features")
            if not np.all(np.isfinite(idf)) or np.any(idf < 0):
                raise _spec_error("idf values must be finite and >= 0")
        self.idf = idf
        self._repeat_re = re.compile(r"(.)\1{" + str(self.max_repeat) + ",}") if self.max_repeat > 0 else None

    # ------------------------------------------------------------------ construction from a card spec
    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], base_dir: Path | None = None) -> TextFeaturizer:
        """Build the featuriser a model card describes.

        Args:
            spec: The card's ``inputs[0].preprocessing`` (see the module docstring).
            base_dir: Folder that ``idf_file`` is relative to (the model's folder).

        Raises:
            ModelCardError: the spec is incomplete or inconsistent, or the idf file is missing, corrupt,
                or does not match ``idf_sha256``.
        """
        if not isinstance(spec, Mapping):
            raise _spec_error(f"must be an object, got {type(spec).__name__}")
        kind = spec.get("featurizer", "hashed_tfidf")
        if kind != "hashed_tfidf":
            raise _spec_error(f"featurizer {kind!r} is not supported (this affectlite knows 'hashed_tfidf')")
        if int(spec.get("version", 1)) != 1:
            raise _spec_error(f"version {spec.get('version')!r} is not supported (this affectlite reads 1)")
        if spec.get("hash", "crc32") != "crc32":
            raise _spec_error(f"hash {spec.get('hash')!r} is not supported (only 'crc32')")
        raw_blocks = spec.get("blocks")
        if not isinstance(raw_blocks, list) or not raw_blocks:
            raise _spec_error("'blocks' must be a non-empty list")
        blocks = []
        for i, b in enumerate(raw_blocks):
            if not isinstance(b, Mapping):
                raise _spec_error(f"blocks[{i}] must be an object")
            try:
                lo, hi = (int(v) for v in b["ngram_range"])
                blocks.append(FeatureBlock(name=str(b.get("name", f"b{i}")), analyzer=str(b["analyzer"]),
                                           ngram_min=lo, ngram_max=hi, n_features=int(b["n_features"]),
                                           weight=float(b.get("weight", 1.0)),
                                           source=str(b.get("source", "text"))))
            except (KeyError, TypeError, ValueError) as e:
                raise _spec_error(f"blocks[{i}] needs analyzer, ngram_range [min, max] and n_features "
                                  f"({type(e).__name__}: {e})") from None
        idf = None
        idf_file = spec.get("idf_file")
        if idf_file is not None:
            p = Path(str(idf_file))
            if not p.is_absolute():
                p = (base_dir or Path.cwd()) / p
            idf = _load_idf(p, spec.get("idf_sha256"))
        feat = cls(blocks, idf=idf,
                   token_pattern=str(spec.get("token_pattern", DEFAULT_TOKEN_PATTERN)),
                   lowercase=bool(spec.get("lowercase", True)),
                   unicode_normalization=spec.get("unicode_normalization", "NFKC"),
                   max_repeat=int(spec.get("max_repeat", 3)), max_chars=int(spec.get("max_chars", 2000)),
                   sublinear_tf=bool(spec.get("sublinear_tf", True)), norm=str(spec.get("norm", "l2")))
        n = spec.get("n_features")
        if n is not None and int(n) != feat.dim:
            raise _spec_error(f"n_features is {n} but the blocks add up to {feat.dim}")
        return feat

    def to_spec(self, idf_file: str | None = None, idf_sha256: str | None = None) -> dict[str, Any]:
        """The JSON-ready spec of this featuriser (for a model card)."""
        d: dict[str, Any] = {
            "featurizer": "hashed_tfidf", "version": 1, "hash": "crc32",
            "unicode_normalization": self.unicode_normalization, "lowercase": self.lowercase,
            "max_repeat": self.max_repeat, "max_chars": self.max_chars, "token_pattern": self.token_pattern,
            "blocks": [{"name": b.name, "analyzer": b.analyzer, "ngram_range": [b.ngram_min, b.ngram_max],
                        "n_features": b.n_features, "weight": b.weight,
                        **({"source": b.source} if b.source != "text" else {})} for b in self.blocks],
            "sublinear_tf": self.sublinear_tf, "norm": self.norm, "n_features": self.dim,
        }
        if idf_file is not None:
            d["idf_file"] = idf_file
        if idf_sha256 is not None:
            d["idf_sha256"] = idf_sha256
        return d

    def with_idf(self, idf: np.ndarray | None) -> TextFeaturizer:
        """A copy of this featuriser with another idf vector."""
        return TextFeaturizer(self.blocks, idf=idf, token_pattern=self.token_pattern, lowercase=self.lowercase,
                              unicode_normalization=self.unicode_normalization, max_repeat=self.max_repeat,
                              max_chars=self.max_chars, sublinear_tf=self.sublinear_tf, norm=self.norm)

    # ------------------------------------------------------------------ analysis
    def normalize(self, text: str) -> str:
        """Unicode-normalise, lower-case, truncate and collapse long character runs."""
        t = text[: self.max_chars]
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates (e.g. from surrogateescape): never crash deep inside
            t = _SURROGATES.sub("\ufffd", t)
        if self.unicode_normalization:
            t = unicodedata.normalize(self.unicode_normalization, t)  # type: ignore[arg-type]
        if self.lowercase:
            t = t.lower()
        if self._repeat_re is not None:
            t = self._repeat_re.sub(lambda m: m.group(1) * self.max_repeat, t)
        return t

    def tokenize(self, text: str) -> list[str]:
        """Word tokens of a text (after :meth:`normalize`)."""
        return self._token_re.findall(self.normalize(text))

    def _block_counts(self, tokens: Sequence[str], b: FeatureBlock) -> dict[int, int]:
        counts: dict[int, int] = {}
        seed = zlib.crc32((b.name + _SEP).encode("utf-8"))  # crc32(prefix + gram) == crc32(gram, seed)
        n_feat = b.n_features

        def add(gram: str) -> None:
            h = zlib.crc32(gram.encode("utf-8"), seed) % n_feat
            counts[h] = counts.get(h, 0) + 1

        if b.analyzer == "word":
            for n in range(b.ngram_min, b.ngram_max + 1):
                for i in range(len(tokens) - n + 1):
                    add(" ".join(tokens[i:i + n]))
        else:  # char_wb
            for tok in tokens:
                w = f" {tok} "
                for n in range(b.ngram_min, b.ngram_max + 1):
                    if n > len(w):
                        break
                    for i in range(len(w) - n + 1):
                        add(w[i:i + n])
        return counts

    @property
    def uses_context(self) -> bool:
        """Whether some block reads the previous turn (``source: "context"``)."""
        return any(b.source == "context" for b in self.blocks)

    def features(self, text: str, context: str | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """Sparse features of one text.

        Args:
            text: The utterance.
            context: The previous turn of the conversation, for ``source: "context"`` blocks (``None`` or
                ``""``: none; ignored by a featuriser without such blocks).

        Returns:
            ``(indices, values, n_tokens)``: sorted int32 feature indices, their float32 values (TF-IDF,
            normalised), and the number of word tokens of ``text`` (a run of Han or kana characters counts one
            per character: Chinese has no spaces). An empty or token-less text gives empty arrays, whatever
            the context.
        """
        tokens = self.tokenize(text)
        if not tokens:
            return np.zeros(0, np.int32), np.zeros(0, np.float32), 0
        ctx_tokens = self.tokenize(context) if context and self.uses_context else []
        idx_parts: list[np.ndarray] = []
        val_parts: list[np.ndarray] = []
        for off, b in zip(self._offsets, self.blocks, strict=False):
            counts = self._block_counts(ctx_tokens if b.source == "context" else tokens, b)
            if not counts:
                continue
            keys = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            order = np.argsort(keys)
            keys, tf = keys[order] + off, tf[order]
            if self.sublinear_tf:
                tf = 1.0 + np.log(tf)
            if self.idf is not None:
                tf = tf * self.idf[keys].astype(np.float64)
            if self.norm == "l2":
                nrm = float(np.sqrt(np.dot(tf, tf)))
                if nrm > 0:
                    tf = tf / nrm
            tf = tf * b.weight
            idx_parts.append(keys)
            val_parts.append(tf)
        if not idx_parts:
            return np.zeros(0, np.int32), np.zeros(0, np.float32), _count_tokens(tokens)
        idx = np.concatenate(idx_parts)
        val = np.concatenate(val_parts)
        if self.norm == "l2":
            nrm = float(np.sqrt(np.dot(val, val)))
            if nrm > 0:
                val = val / nrm
        keep = val != 0
        return idx[keep].astype(np.int32), val[keep].astype(np.float32), _count_tokens(tokens)

    def transform_sparse(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR form of :meth:`transform`: ``(indptr, indices, data)``; row ``i`` is
        ``indices[indptr[i]:indptr[i+1]]`` with values ``data[...]``.

        Raises:
            InputError: an item is not a string, or ``contexts`` has another length than ``texts``.
        """
        ctx = _check_contexts(texts, contexts)
        indptr = [0]
        idx_parts: list[np.ndarray] = []
        val_parts: list[np.ndarray] = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InputError(f"text item {i} must be a str, got {type(t).__name__}")
            idx, val, _ = self.features(t, ctx[i])
            idx_parts.append(idx)
            val_parts.append(val)
            indptr.append(indptr[-1] + len(idx))
        indices = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int32)
        data = np.concatenate(val_parts) if val_parts else np.zeros(0, np.float32)
        return np.asarray(indptr, dtype=np.int64), indices.astype(np.int32), data.astype(np.float32)

    def transform(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None) -> np.ndarray:
        """Dense features of several texts.

        Args:
            texts: Strings (a single ``str`` is refused, to avoid featurising its characters one by one).
            contexts: The previous turn of each text (``None``: none), for context blocks.

        Returns:
            ``float32`` array of shape ``(len(texts), dim)``.

        Raises:
            InputError: ``texts`` is a bare string, or an item is not a string.
        """
        if isinstance(texts, (str, bytes)):
            raise InputError("transform() takes a sequence of strings; wrap a single text as [text]")
        indptr, indices, data = self.transform_sparse(texts, contexts)
        out = np.zeros((len(indptr) - 1, self.dim), dtype=np.float32)
        rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        out[rows, indices] = data
        return out

    def document_frequency(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None
                           ) -> tuple[np.ndarray, int]:
        """Per-feature count of texts that contain the feature (for fitting idf).

        Returns:
            ``(df, n_texts)``.
        """
        ctx = _check_contexts(texts, contexts)
        plain = self.with_idf(None)
        df = np.zeros(self.dim, dtype=np.int64)
        for t, c in zip(texts, ctx, strict=True):
            idx, _, _ = plain.features(t, c)
            df[idx] += 1
        return df, len(texts)


def _check_contexts(texts: Sequence[str], contexts: Sequence[str | None] | None) -> Sequence[str | None]:
    if contexts is None:
        return [None] * len(texts)
    if isinstance(contexts, (str, bytes)) or len(contexts) != len(texts):
        raise InputError(f"contexts must be a sequence with one previous turn (or None) per text: "
                         f"{len(texts)} texts")
    for i, c in enumerate(contexts):
        if c is not None and not isinstance(c, str):
            raise InputError(f"context item {i} must be a str or None, got {type(c).__name__}")
    return contexts


def _count_tokens(tokens: Sequence[str]) -> int:
    """Word count of a token list; a token of Han / kana characters counts one per character."""
    n = 0
    for t in tokens:
        n += len(t) if _script_of(t[0]) in ("Hani", "Kana") else 1
    return n


def smooth_idf(df: np.ndarray, n_docs: int, min_df: int = 1) -> np.ndarray:
    """Smoothed idf, ``ln((1 + n) / (1 + df)) + 1``; features seen in fewer than ``min_df`` texts get 0."""
    idf = np.log((1.0 + n_docs) / (1.0 + np.asarray(df, dtype=np.float64))) + 1.0
    idf[np.asarray(df) < min_df] = 0.0
    return idf.astype(np.float32)


def _load_idf(path: Path, sha256: Any) -> np.ndarray:
    if not path.is_file():
        raise ModelCardError(f"text featuriser idf file {path} not found: it must sit next to the text model "
                             "(re-install affectlite or re-run `affectlite train text`)")
    data = path.read_bytes()  # read once: hashed, then parsed
    if isinstance(sha256, str):
        h = sha256_bytes(data)
        if h != sha256:
            raise ModelCardError(f"text featuriser idf file {path} has sha256 {h[:12]}..., the card expects "
                                 f"{sha256[:12]}...: the file was replaced; restore the file that came with "
                                 "the model")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ModelCardError(f"text featuriser idf file {path} cannot be read as .npy: {e}") from None
    return np.asarray(arr, dtype=np.float32)


# ---------------------------------------------------------------------------------------------- languages
#: Script ranges (first code point, last code point, ISO 15924 code), sorted; letters outside them are "Zzzz".
_SCRIPT_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x024F, "Latn"), (0x0370, 0x03FF, "Grek"), (0x0400, 0x052F, "Cyrl"), (0x0530, 0x058F, "Armn"),
    (0x0590, 0x05FF, "Hebr"), (0x0600, 0x06FF, "Arab"), (0x0750, 0x077F, "Arab"), (0x08A0, 0x08FF, "Arab"),
    (0x0900, 0x097F, "Deva"), (0x0980, 0x09FF, "Beng"), (0x0A00, 0x0A7F, "Guru"), (0x0A80, 0x0AFF, "Gujr"),
    (0x0B80, 0x0BFF, "Taml"), (0x0C00, 0x0C7F, "Telu"), (0x0C80, 0x0CFF, "Knda"), (0x0D00, 0x0D7F, "Mlym"),
    (0x0E00, 0x0E7F, "Thai"), (0x10A0, 0x10FF, "Geor"), (0x1100, 0x11FF, "Hang"), (0x1E00, 0x1EFF, "Latn"),
    (0x3040, 0x30FF, "Kana"), (0x3130, 0x318F, "Hang"), (0x31F0, 0x31FF, "Kana"), (0x3400, 0x4DBF, "Hani"),
    (0x4E00, 0x9FFF, "Hani"), (0xAC00, 0xD7AF, "Hang"), (0xF900, 0xFAFF, "Hani"), (0xFB50, 0xFDFF, "Arab"),
    (0xFE70, 0xFEFF, "Arab"), (0xFF21, 0xFF3A, "Latn"), (0xFF41, 0xFF5A, "Latn"), (0xFF66, 0xFF9F, "Kana"),
    (0x20000, 0x3FFFF, "Hani"),
)
_SCRIPT_STARTS = [r[0] for r in _SCRIPT_RANGES]
#: Scripts written without spaces: scored per character (a Han character ~ 0.7 English words).
_PER_CHAR = {"Hani": 0.7, "Kana": 0.7, "Thai": 0.2}
#: Script -> language the SDK routes by; other scripts give ``"und-<script>"``.
_SCRIPT_LANGUAGE = {"Latn": "en", "Hani": "zh", "Jpan": "ja", "Hang": "ko"}
#: Characters looked at by :func:`detect_language` (enough to decide; bounds the cost).
LANGUAGE_PROBE_CHARS = 600


def _script_of(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    o = ord(ch)
    i = bisect.bisect_right(_SCRIPT_STARTS, o) - 1
    if i >= 0 and o <= _SCRIPT_RANGES[i][1]:
        return _SCRIPT_RANGES[i][2]
    return "Zzzz"


def detect_language(text: str) -> str:
    """The language a text is routed by, from its writing system (no dictionary, no model).

    Every letter of the first :data:`LANGUAGE_PROBE_CHARS` characters is assigned a script; scripts written
    with spaces score one per word, Han and kana 0.7 per character (about one English word per 1.4
    characters), Thai 0.2 per character; the highest score wins. Text with kana making up a quarter or more of
    its Han + kana characters is Japanese.

    Args:
        text: Any string (lone surrogates and other odd code points are fine).

    Returns:
        ``"en"`` (Latin script: English is the only Latin-script language a model covers, so French or
        German text is also ``"en"``), ``"zh"`` (Han), ``"ja"``, ``"ko"``, ``"und-<ISO 15924 script>"``
        for other scripts (``"und-Cyrl"``, ``"und-Arab"``...), or ``"und"`` when the text has no letters
        (emoji, digits, punctuation).

    Raises:
        InputError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise InputError(f"text must be a str, got {type(text).__name__}")
    score: dict[str, float] = {}
    prev: str | None = None
    for ch in text[:LANGUAGE_PROBE_CHARS]:
        s = _script_of(ch)
        if s is None:
            prev = None
            continue
        w = _PER_CHAR.get(s)
        if w is not None:
            score[s] = score.get(s, 0.0) + w
        elif s != prev:
            score[s] = score.get(s, 0.0) + 1.0
        prev = s
    if not score:
        return "und"
    kana = score.pop("Kana", 0.0)
    if kana:
        han = score.get("Hani", 0.0)
        if kana >= 0.25 * (kana + han):
            score["Jpan"] = kana + score.pop("Hani", 0.0)
    if not score:  # a few kana inside Chinese text only
        return "und-Kana"
    best = max(score, key=lambda k: (score[k], k == "Latn"))
    return _SCRIPT_LANGUAGE.get(best, f"und-{best}")


# ---------------------------------------------------------------------------------------------- classifier
#: Texts per interpreter call: a larger batch of predict_proba() runs in slices of this many.
_MAX_BATCH = 64


class _Head:
    """One loaded text model with its featuriser (a language's model)."""

    def __init__(self, model: Model, featurizer: TextFeaturizer) -> None:
        self.model: Model | None = model
        self.featurizer = featurizer
        self.labels = model.card.labels
        self.mapping = {lab: model.card.common_label(lab) for lab in self.labels}
        self.name = model.card.name
        in_shape = model.card.inputs[0].shape
        if in_shape[-1] != -1 and in_shape[-1] != featurizer.dim:
            raise ModelCardError(f"{model.card.source or model.card.name}: model input has {in_shape[-1]} "
                                 f"features but the featuriser spec produces {featurizer.dim}")

    def predict_sparse(self, rows: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Probabilities of sparse feature rows ``(indices, values)``.

        The input is filled in the model's own input dtype directly (the quantised zero everywhere, the few
        non-zero features quantised by :func:`affectlite.model.quantize`): quantising the dense 262,144-wide
        row cost more than the model itself.
        """
        from .model import quantize

        if len(rows) > _MAX_BATCH:  # bounds the dense input (64 x 262,144 bytes) and the interpreter's size
            return np.concatenate([self.predict_sparse(rows[i:i + _MAX_BATCH])
                                   for i in range(0, len(rows), _MAX_BATCH)])
        model = self.model
        if model is None:
            raise ModelError("this TextClassifier is closed; create a new one (TextClassifier.create())")
        det = model.input_details[0]
        x = np.full((len(rows), self.featurizer.dim), quantize(np.zeros(1, np.float32), det)[0])
        for r, (idx, val) in enumerate(rows):
            x[r, idx] = quantize(val, det)
        return model.predict_proba(x, quantized=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str], backend: str, num_threads: int | None) -> _Head:
        from .model import Model

        # no XNNPACK: it repacks the 262,144-input dense layer into a second copy (21.6 -> 5.4 MB RSS per model)
        # and is slower on it (0.64 -> 0.50 ms per call, one thread); see docs/research/2026-12-07-text.md
        model = Model.load(path, backend=backend, num_threads=num_threads, expected_task="text",
                           default_delegates=False)
        spec_holder = model.card.inputs[0]
        if spec_holder.kind != "text_features":
            raise ModelCardError(f"{model.card.source or model.card.name}: inputs[0].kind is "
                                 f"{spec_holder.kind!r}; a text model needs 'text_features'")
        feat = TextFeaturizer.from_spec(spec_holder.preprocessing, base_dir=Path(path).resolve().parent)
        return cls(model, feat)


def shipped_text_models(commercial: bool = False) -> dict[str, Path]:
    """The shipped text models by language.

    Args:
        commercial: Only models trained on commercially usable data (the GoEmotions-only English model).

    Returns:
        ``{"en": path, "zh": path}`` (research / non-commercial data), or ``{"en": path}`` with
        ``commercial=True``.
    """
    return {"en": COMMERCIAL_TEXT_MODEL} if commercial else dict(TEXT_MODELS)


class TextClassifier:
    """Synchronous text emotion classifier: each text goes to the model of its language.

    The shipped configuration (:meth:`create`) detects each text's language from its script
    (:func:`detect_language`) and routes English to the English model and Chinese to the Chinese model
    (loaded on the first Chinese text). A text in a language no loaded model covers gets uniform
    probabilities with ``n_tokens=0`` (fusion gives it no weight) and its ``language`` set. A classifier built
    from one model (:meth:`from_model`, ``TextOptions(model_path=...)``) sends every text to that model.

    Calls are serialised by an internal lock (safe to share between threads, no parallel speed-up); create
    one per worker thread for parallelism.

    Example:
        >>> clf = TextClassifier.create()            # doctest: +SKIP
        >>> clf.classify("thank you so much!").label  # doctest: +SKIP
        'happy'
        >>> clf.classify("我今天非常生气").language     # doctest: +SKIP
        'zh'
    """

    def __init__(self, model: Model, featurizer: TextFeaturizer, *, language: str | None = None,
                 others: Mapping[str, str | os.PathLike[str]] | None = None, force_language: str | None = None,
                 backend: str = "auto", num_threads: int | None = 1) -> None:
        """Wrap a loaded text model (use :meth:`create` or :meth:`from_model`).

        Args:
            model: The primary model.
            featurizer: Its featuriser.
            language: The primary model's language; ``None``: it takes every text (no routing).
            others: Further models by language, loaded on first use.
            force_language: Route every text to this language's model (``None``: detect per text).
            backend: Interpreter backend for the other models.
            num_threads: Interpreter threads for the other models.
        """
        head = _Head(model, featurizer)
        self.model = model
        self.featurizer = featurizer
        self._lock = threading.Lock()
        self._name = head.name
        self._primary = language
        self._heads: dict[str, _Head | Path] = {language or "*": head}
        for lang, p in (others or {}).items():
            self._heads[lang] = Path(p)
        self._force = force_language
        self._backend, self._threads = backend, num_threads
        self._closed = False

    @classmethod
    def from_model(cls, path: str | os.PathLike[str], *, backend: str = "auto",
                   num_threads: int | None = 1) -> TextClassifier:
        """Load one text model (``.tflite`` with its ``.card.json`` and idf file); every text goes to it.

        Raises:
            ModelLoadError: the model file is missing or corrupt.
            ModelCardError: the card is missing, not a text model, or its featuriser spec is broken.
        """
        head = _Head.load(path, backend, num_threads)
        assert head.model is not None
        return cls(head.model, head.featurizer)

    @classmethod
    def create(cls, options: TextOptions | None = None) -> TextClassifier:
        """The classifier the options ask for.

        ``model_path=None``: the shipped int8 models routed by language (``language``, ``commercial``);
        otherwise that one model for every text.

        Raises:
            ModelLoadError: a shipped model is missing (a broken install).
            ConfigError: ``language`` names a language no selected model covers (``zh`` with
                ``commercial: true``).
        """
        from .options import TextOptions

        opts = options if options is not None else TextOptions()
        backend, threads = opts.backend, opts.num_threads
        if opts.model_path is not None:
            c = cls.from_model(opts.model_path, backend=backend, num_threads=threads)
            c._force = None if opts.language == "auto" else opts.language
            return c
        models = shipped_text_models(opts.commercial)
        for lang, p in models.items():
            if not p.is_file():
                raise ModelLoadError(f"the shipped {lang} text model {p} is missing: re-install affectlite, or "
                                     "pass TextOptions(model_path=...)")
        force = None if opts.language == "auto" else opts.language
        if force is not None and force not in models:
            raise ConfigError(f"text.language is {force!r} but no selected model covers it (commercial: "
                              f"{opts.commercial} gives {', '.join(models)}); set text.commercial: false or "
                              "text.language: auto")
        primary = force or "en"
        head = _Head.load(models[primary], backend, threads)
        assert head.model is not None
        return cls(head.model, head.featurizer, language=primary,
                   others={k: v for k, v in models.items() if k != primary}, force_language=force,
                   backend=backend, num_threads=threads)

    @property
    def name(self) -> str:
        """The primary model card's name."""
        return self._name

    @property
    def languages(self) -> tuple[str, ...]:
        """Languages with a model (``("*",)`` for a single model that takes every text)."""
        return tuple(self._heads)

    def language_of(self, text: str) -> str:
        """The language :meth:`classify` reports for ``text`` (the forced one, or :func:`detect_language`)."""
        return self._force if self._force is not None else detect_language(text)

    def close(self) -> None:
        """Release the interpreters and their model files (idempotent); later calls raise :class:`ModelError`."""
        with self._lock:
            self._closed = True
            for h in self._heads.values():
                if isinstance(h, _Head):
                    h.model = None
            self.model = None  # type: ignore[assignment]

    def _check_open(self) -> None:
        if self._closed:
            raise ModelError("this TextClassifier is closed; create a new one (TextClassifier.create())")

    def _head_for(self, language: str) -> _Head | None:
        key = "*" if "*" in self._heads else language
        if key not in self._heads:
            if language != "und" or self._primary is None:
                return None
            key = self._primary  # no letters (emoji, "!!", digits): the primary model reads the symbols
        h = self._heads[key]
        if isinstance(h, _Head):
            return h
        with self._lock:  # first text of this language: load its model
            h = self._heads[key]
            if not isinstance(h, _Head):
                self._check_open()
                h = _Head.load(h, self._backend, self._threads)
                self._heads[key] = h
        return h

    def _run(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None
             ) -> tuple[np.ndarray, list[int], list[str], list[str]]:
        if isinstance(texts, (str, bytes)):
            raise InputError("predict_proba() takes a sequence of strings; use classify() for one text")
        ctx = _check_contexts(texts, contexts)
        self._check_open()
        n = len(texts)
        out = np.tile(np.asarray(uniform_probabilities(), np.float32), (n, 1))
        n_tokens = [0] * n
        langs = [""] * n
        names = [""] * n
        groups: dict[int, tuple[_Head, list[int], list[tuple[np.ndarray, np.ndarray]]]] = {}
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InputError(f"text must be a str, got {type(t).__name__} (item {i}); decode bytes first")
            langs[i] = self.language_of(t)
            head = self._head_for(langs[i])
            if head is None:
                continue  # no model for this language: uniform, 0 tokens -> no weight in fusion
            names[i] = head.name
            idx, val, nt = head.featurizer.features(t, ctx[i])
            n_tokens[i] = nt
            if len(idx) == 0:
                continue
            g = groups.setdefault(id(head), (head, [], []))
            g[1].append(i)
            g[2].append((idx, val))
        for head, which, rows in groups.values():
            with self._lock:
                self._check_open()
                p = head.predict_sparse(rows)
            for r, i in enumerate(which):
                out[i] = map_distribution(head.labels, p[r], head.mapping)
        return out, n_tokens, langs, names

    @property
    def uses_context(self) -> bool:
        """Whether a loaded model reads the previous turn (``context``); models not yet loaded are not asked."""
        return any(isinstance(h, _Head) and h.featurizer.uses_context for h in self._heads.values())

    def predict_proba(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None
                      ) -> tuple[np.ndarray, list[int]]:
        """Calibrated probabilities over :data:`affectlite.LABELS` for several texts (routed by language).

        Args:
            texts: The texts.
            contexts: The previous turn of each text's conversation (``None`` items: none), used by models
                whose featuriser has context blocks and ignored by the others.

        Returns:
            ``(probs, n_tokens)``: ``float32`` ``(n, len(LABELS))`` and the token count of each text. A text
            without tokens, or in a language no model covers, gets the uniform distribution (and, for the
            latter, ``n_tokens`` 0).

        Raises:
            InputError: ``texts`` is a bare string or contains a non-string, or ``contexts`` does not have
                one item (a string or ``None``) per text.
            ModelError: the classifier was closed.
        """
        probs, n_tokens, _, _ = self._run(texts, contexts)
        return probs, n_tokens

    def classify(self, text: str, timestamp_ns: int = 0, context: str | None = None) -> TextResult:
        """Classify one text.

        Args:
            text: Any string; only its first ``max_chars`` characters are used. An empty or whitespace-only
                text (no tokens) gives a low-confidence result: uniform probabilities (label ``neutral``,
                confidence 1/7) with ``n_tokens=0``, which fusion weights at zero. So does a text in a
                language no model covers (``language`` says which).
            timestamp_ns: When the text was produced (``time.monotonic_ns()``); 0 means now.
            context: The previous turn of the same conversation (any speaker), or ``None``. A model whose card
                has context blocks reads it (down-weighted, in its own hash space); other models ignore it.
                The language is detected from ``text`` alone. It is not stored.

        Raises:
            InputError: ``text`` is not a ``str``, or ``context`` is neither a ``str`` nor ``None``.
        """
        if not isinstance(text, str):
            raise InputError(f"text must be a str, got {type(text).__name__}; decode bytes first "
                             "(e.g. data.decode('utf-8'))")
        if context is not None and not isinstance(context, str):
            raise InputError(f"context must be a str or None, got {type(context).__name__}")
        probs, n_tokens, langs, names = self._run([text], [context])
        ts = timestamp_ns if timestamp_ns else time.monotonic_ns()
        return TextResult(probabilities=tuple(float(v) for v in probs[0]), n_tokens=n_tokens[0], timestamp_ns=ts,
                          language=langs[0], model=names[0])


# ---------------------------------------------------------------------------------------------- GoEmotions
#: The 28 GoEmotions labels in the order of the dataset's ``emotions.txt`` (label ids 0-27).
GOEMOTIONS_LABELS: tuple[str, ...] = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity", "desire",
    "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear", "gratitude", "grief",
    "joy", "love", "nervousness", "optimism", "pride", "realization", "relief", "remorse", "sadness",
    "surprise", "neutral",
)

#: GoEmotions' Ekman grouping (the dataset's ``ekman_mapping.json``), Ekman names as in that file.
_EKMAN: dict[str, tuple[str, ...]] = {
    "anger": ("anger", "annoyance", "disapproval"),
    "disgust": ("disgust",),
    "fear": ("fear", "nervousness"),
    "joy": ("joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism", "relief", "pride",
            "admiration", "desire", "caring"),
    "sadness": ("sadness", "disappointment", "embarrassment", "grief", "remorse"),
    "surprise": ("surprise", "realization", "confusion", "curiosity"),
}


def goemotions_common_table(dataset_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """GoEmotions label -> common label, through the Ekman mapping (joy -> happy, anger -> angry, ...).

    Args:
        dataset_dir: A GoEmotions folder; when it holds ``emotions.txt`` and ``ekman_mapping.json`` these
            files are used (and must cover every label), otherwise the built-in copy of the mapping.

    Raises:
        InputError: the folder's files are unreadable or do not cover every emotion.
    """
    names: Sequence[str] = GOEMOTIONS_LABELS
    ekman: Mapping[str, Sequence[str]] = _EKMAN
    if dataset_dir is not None:
        d = Path(dataset_dir)
        try:
            if (d / "emotions.txt").is_file():
                names = [ln.strip() for ln in (d / "emotions.txt").read_text(encoding="utf-8").splitlines()
                         if ln.strip()]
            if (d / "ekman_mapping.json").is_file():
                ekman = json.loads((d / "ekman_mapping.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read the GoEmotions label files in {d}: {e}") from None
    table: dict[str, str] = {}
    for group, members in ekman.items():
        common = canonical_label(group)
        if common is None:
            raise InputError(f"Ekman group {group!r} has no common label")
        for m in members:
            table[m] = common
    table["neutral"] = "neutral"
    missing = [n for n in names if n not in table]
    if missing:
        raise InputError(f"the Ekman mapping does not cover {', '.join(missing)}")
    return {n: table[n] for n in names}


def read_goemotions_tsv(path: str | os.PathLike[str],
                        names: Sequence[str] = GOEMOTIONS_LABELS) -> list[tuple[str, tuple[str, ...]]]:
    """Read a GoEmotions-format TSV: ``text<TAB>label ids<TAB>comment id`` (no header).

    Labels are comma-separated ids into ``names`` (``"8,20"``) or label names (``"joy"``, ``"happy"``).
    Quoted fields (``""``) are handled by the csv reader.

    Returns:
        ``[(text, (label names...)), ...]``.

    Raises:
        InputError: the file is missing, or a row has no label column or an unknown label.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"TSV file {p} not found (expected GoEmotions format: text<TAB>label ids<TAB>id)")
    try:
        return _read_tsv_rows(p, names)
    except UnicodeDecodeError as e:
        raise InputError(f"{p} is not UTF-8 text (byte {e.start}: {e.reason}); convert it to UTF-8") from None
    except csv.Error as e:  # e.g. a field over the csv module's limit (an unclosed quote swallowing lines)
        raise InputError(f"{p}: not a readable TSV ({e}); check for an unclosed quote") from None


def _read_tsv_rows(p: Path, names: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    rows: list[tuple[str, tuple[str, ...]]] = []
    with open(p, newline="", encoding="utf-8") as fh:
        for lineno, rec in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if not rec or (len(rec) == 1 and not rec[0].strip()):
                continue
            if len(rec) < 2:
                raise InputError(f"{p}:{lineno}: expected text<TAB>labels, got one column")
            labs = []
            for tok in rec[1].split(","):
                tok = tok.strip()
                if tok.isdigit():
                    i = int(tok)
                    if not 0 <= i < len(names):
                        raise InputError(f"{p}:{lineno}: label id {i} is outside 0..{len(names) - 1}")
                    labs.append(names[i])
                elif tok:
                    labs.append(tok)
            if not labs:
                raise InputError(f"{p}:{lineno}: empty label column")
            rows.append((rec[0], tuple(labs)))
    return rows


def single_label_rows(rows: Sequence[tuple[str, Sequence[str]]], table: Mapping[str, str] | None = None
                      ) -> tuple[list[str], np.ndarray, int]:
    """Keep the rows whose labels map to exactly one common label.

    ``"joy,amusement"`` (both happy) is kept as happy; ``"neutral,joy"`` or ``"anger,sadness"`` are dropped.
    Labels unknown to ``table`` go through :func:`affectlite.labels.canonical_label` (so a TSV may also use
    the common names).

    Returns:
        ``(texts, y, n_dropped)`` with ``y`` the indices into :data:`LABELS`.

    Raises:
        InputError: a label maps to nothing.
    """
    tab = table if table is not None else goemotions_common_table()
    texts: list[str] = []
    ys: list[int] = []
    dropped = 0
    for text, labs in rows:
        common = set()
        for lab in labs:
            c = tab.get(lab) or canonical_label(lab)
            if c is None:
                raise InputError(f"label {lab!r} maps to no common label ({', '.join(LABELS)})")
            common.add(c)
        if len(common) != 1:
            dropped += 1
            continue
        texts.append(text)
        ys.append(LABELS.index(common.pop()))
    return texts, np.asarray(ys, dtype=np.int64), dropped


def classification_metrics(y_true: Any, y_pred: Any, labels: Sequence[str] = LABELS) -> dict[str, Any]:
    """Accuracy, macro-F1 (over classes present in ``y_true`` or predicted), macro-F1 over the classes present
    in ``y_true`` only (a corpus's own label set, e.g. SMP2020 without disgust), weighted-F1 (per-class F1
    weighted by true support), micro-F1 over the emotions (``neutral`` excluded from both the predictions and
    the truths counted, as DailyDialog papers report it), per-class recall/F1 and the confusion matrix
    (rows: true, columns: predicted)."""
    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    k = len(labels)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (yt, yp), 1)
    f1s: dict[str, float] = {}
    recall: dict[str, float] = {}
    for c in range(k):
        tp = int(cm[c, c])
        fn = int(cm[c].sum()) - tp
        fp = int(cm[:, c].sum()) - tp
        if tp + fn + fp == 0:
            continue
        f1s[labels[c]] = 2 * tp / (2 * tp + fp + fn)
        if tp + fn:
            recall[labels[c]] = tp / (tp + fn)
    n = len(yt)
    support = cm.sum(axis=1)
    weighted = sum(f1s.get(labels[c], 0.0) * int(support[c]) for c in range(k)) / n if n else 0.0
    # micro-F1 over the emotions only (neutral excluded), as DailyDialog papers report it
    emo = [c for c in range(k) if labels[c] != "neutral"]
    tp_e = int(sum(cm[c, c] for c in emo))
    pred_e = int(cm[:, emo].sum())
    true_e = int(cm[emo, :].sum())
    micro_e = 2 * tp_e / (pred_e + true_e) if pred_e + true_e else 0.0
    return {
        "n": n,
        "accuracy": float(np.trace(cm) / n) if n else 0.0,
        "macro_f1": float(np.mean(list(f1s.values()))) if f1s else 0.0,
        "weighted_f1": float(weighted),
        "macro_f1_true_labels": float(np.mean([f1s.get(labels[c], 0.0) for c in range(k) if support[c]]))
        if n else 0.0,
        "micro_f1_emotions": float(micro_e),
        "per_class_recall": {k_: round(v, 4) for k_, v in recall.items()},
        "per_class_f1": {k_: round(v, 4) for k_, v in f1s.items()},
        "labels": list(labels),
        "confusion": cm.tolist(),
    }


def evaluate_text(model_path: str | os.PathLike[str] | None, tsv_path: str | os.PathLike[str], *,
                  limit: int | None = None, batch_size: int = 64, dedupe: bool = False,
                  options: TextOptions | None = None) -> dict[str, Any]:
    """Evaluate text models on a labelled corpus file (any format of :mod:`affectlite.text_corpora`).

    Args:
        model_path: A text ``.tflite`` (with card and idf file) for every text, or ``None`` for the shipped
            models routed by language (as ``options`` selects).
        tsv_path: A corpus file or folder: GoEmotions TSV, MELD / EmoryNLP / CPED CSV, DailyDialog or
            XDailyDialog text, SMP2020 JSON (a folder: its evaluation split). Utterances whose label has no
            counterpart in :data:`LABELS` (and GoEmotions rows mapping to two labels) are skipped.
        limit: Evaluate at most this many rows.
        batch_size: Texts per interpreter call.
        dedupe: Count each distinct (text, label) pair once (``"Yeah."`` repeats in dialogue corpora).
        options: Text options for the shipped models (``language``, ``commercial``); ignored with
            ``model_path``.

    Returns:
        ``{"n", "accuracy", "macro_f1", "weighted_f1", "micro_f1_emotions", "per_class_recall",
        "per_class_f1", "labels", "confusion", "n_skipped", "skipped_labels", "n_skipped_multilabel",
        "n_duplicates_removed", "languages", "models", "format", "model", "data"}``.

    Raises:
        InputError: unreadable or unknown data, or nothing to evaluate.
    """
    from .options import TextOptions
    from .text_corpora import dedupe_corpus, read_text_corpus

    opts = options if options is not None else TextOptions()
    if model_path is not None:
        import msgspec

        opts = msgspec.structs.replace(opts, model_path=os.fspath(model_path))
    clf = TextClassifier.create(opts)
    try:
        corpus = read_text_corpus(tsv_path)
        removed = 0
        if dedupe:
            corpus, removed = dedupe_corpus(corpus)
        texts, y = corpus.texts, corpus.y
        if limit is not None:
            texts, y = texts[:limit], y[:limit]
        if not texts:
            raise InputError(f"{tsv_path}: no utterance maps to exactly one label; nothing to evaluate")
        preds = []
        langs: dict[str, int] = {}
        models: dict[str, int] = {}
        for i in range(0, len(texts), batch_size):
            probs, _, lg, nm = clf._run(texts[i:i + batch_size])
            preds.append(np.argmax(probs, axis=1))
            for v in lg:
                langs[v] = langs.get(v, 0) + 1
            for v in nm:
                key = v or "(none: no model for the language)"
                models[key] = models.get(key, 0) + 1
    finally:
        clf.close()
    out = classification_metrics(y, np.concatenate(preds))
    out.update({"n_skipped": corpus.n_skipped, "skipped_labels": corpus.skipped_labels,
                "n_skipped_multilabel": corpus.skipped_labels.get("multi-label", 0),
                "n_duplicates_removed": removed, "languages": langs, "models": models, "format": corpus.format,
                "model": clf.name, "data": os.fspath(tsv_path)})
    return out


def eval_text_main(args: argparse.Namespace) -> int:
    """``affectlite eval text --data PATH [--model PATH] [--limit N] [--dedupe]``: print the metrics as JSON."""
    res = evaluate_text(getattr(args, "model", None), args.data, limit=getattr(args, "limit", None),
                        dedupe=bool(getattr(args, "dedupe", False)))
    print(json.dumps(res, indent=2))
    return 0
