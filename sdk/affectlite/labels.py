"""The common label set and the tables that map dataset labels onto it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "LABELS",
    "UNKNOWN",
    "VALENCE_AROUSAL",
    "canonical_label",
    "map_distribution",
]

#: The common label set, in the order every probability vector of the SDK uses.
LABELS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")

#: Output-only label used when the fused confidence is below the threshold.
UNKNOWN = "unknown"

#: Synonyms seen in datasets and folder names -> common label. ``None`` means "no match: skip".
SYNONYMS: dict[str, str | None] = {
    "neutral": "neutral", "calm": "neutral", "neu": "neutral",
    "happy": "happy", "happiness": "happy", "joy": "happy", "hap": "happy",
    "sad": "sad", "sadness": "sad",
    "angry": "angry", "anger": "angry", "ang": "angry",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "fea": "fear",
    "disgust": "disgust", "disgusted": "disgust", "dis": "disgust",
    "surprise": "surprise", "surprised": "surprise", "sur": "surprise",
    "contempt": None, "boredom": None, "bored": None,
}

#: Approximate valence (-1..1) and arousal (0..1) of each common label (Russell's circumplex).
VALENCE_AROUSAL: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.2),
    "happy": (0.8, 0.6),
    "sad": (-0.7, 0.25),
    "angry": (-0.6, 0.85),
    "fear": (-0.7, 0.8),
    "disgust": (-0.65, 0.5),
    "surprise": (0.2, 0.9),
}


def canonical_label(name: str) -> str | None:
    """Map a dataset or folder label to the common label set.

    Args:
        name: A label such as ``"Happiness"``, ``"fearful"`` or ``"calm"`` (case-insensitive).

    Returns:
        The common label, or ``None`` when the label has no match (e.g. ``contempt``) or is unknown.
    """
    key = name.strip().lower().replace("-", "_")
    return SYNONYMS.get(key)


def map_distribution(labels: Iterable[str], probs: Iterable[float],
                     mapping: Mapping[str, str | None] | None = None) -> tuple[float, ...]:
    """Sum a model's per-label probabilities onto :data:`LABELS`.

    Args:
        labels: The model's labels in output order.
        probs: The model's probabilities, same order.
        mapping: Optional explicit model-label -> common-label table (``None`` drops a label);
            labels absent from it go through :func:`canonical_label`.

    Returns:
        A tuple aligned with :data:`LABELS`, renormalised to sum to 1 (all zeros if nothing mapped).
    """
    out = [0.0] * len(LABELS)
    for lab, p in zip(labels, probs, strict=True):
        target = mapping[lab] if mapping is not None and lab in mapping else canonical_label(lab)
        if target is None:
            continue
        out[LABELS.index(target)] += float(p)
    total = sum(out)
    if total > 0:
        out = [v / total for v in out]
    return tuple(out)
