"""Text models run on the builtin TFLite kernels, without the default XNNPACK delegate (issue 25, RSS budget).

XNNPACK repacks the 262,144-input int8 dense layer of a text model into a second copy of its weights
(21.6 MB RSS per interpreter against 5.4 MB without it, and slower); the text classifier asks the
interpreter layer for no default delegates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from affectlite.interpreters import _registry
from affectlite.model import Model
from affectlite.text import COMMERCIAL_TEXT_MODEL, TEXT_MODELS, TextClassifier

litert = pytest.importorskip("ai_edge_litert.interpreter")


def _recording_backend(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Make backend 'litert' record the keyword arguments each interpreter is created with."""
    seen: list[dict[str, Any]] = []
    real_cls, real_load_delegate = _registry._litert()

    class Recording(real_cls):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: Any) -> None:
            seen.append(dict(kwargs))
            super().__init__(**kwargs)

    Recording.__module__ = real_cls.__module__  # where OpResolverType is looked up
    monkeypatch.setitem(_registry._REGISTRY, "litert", _registry._Backend(
        "litert", "ai_edge_litert", "", lambda: (Recording, real_load_delegate)))
    return seen


def test_text_models_are_created_without_default_delegates(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _recording_backend(monkeypatch)
    clf = TextClassifier.create()
    clf.classify("I can't believe you did that!")
    clf.classify("我今天非常生气")  # loads the Chinese model: the same switch
    clf.close()
    assert len(seen) == 2
    want = litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    assert all(kw.get("experimental_op_resolver_type") == want for kw in seen)
    seen.clear()
    Model.load(TEXT_MODELS["en"], backend="litert")  # other models keep the backend's default (XNNPACK)
    assert "experimental_op_resolver_type" not in seen[0]


def test_builtin_kernels_give_the_same_labels_as_xnnpack() -> None:
    feat = TextClassifier.from_model(COMMERCIAL_TEXT_MODEL).featurizer
    texts = ["Thank you so much, this is wonderful!", "I hate this, go away.", "Oh my God, you did what?!",
             "I miss her so much.", "That is disgusting.", "I'm scared of the dark.", "ok", "",
             "We are meeting at noon.", "What a lovely surprise!!!"]
    x = feat.transform(texts)
    a = Model.load(COMMERCIAL_TEXT_MODEL, backend="litert", num_threads=1).predict_proba(x)
    b = Model.load(COMMERCIAL_TEXT_MODEL, backend="litert", num_threads=1,
                   default_delegates=False).predict_proba(x)
    assert np.array_equal(a.argmax(1), b.argmax(1))
    assert float(np.abs(a - b).max()) < 0.05  # int8 requantisation rounding differs a little between kernels


def test_sparse_quantised_input_equals_the_dense_float_path() -> None:
    """The classifier fills the int8 input directly from the sparse features; the result is the dense path's."""
    clf = TextClassifier.from_model(TEXT_MODELS["en"])
    texts = ["Thank you so much, this is wonderful!", "you did WHAT?!", "Fine. Whatever.", "no way!!! :)",
             "I'm so sorry for your loss.", "Ugh, that smell is gross."]
    dense = clf.model.predict_proba(clf.featurizer.transform(texts))
    sparse, _ = clf.predict_proba(texts)
    np.testing.assert_allclose(sparse, dense, atol=1e-6)
    one = np.stack([clf.predict_proba([t])[0][0] for t in texts])  # batch size 1 resizes the interpreter back
    np.testing.assert_allclose(one, dense, atol=1e-6)
    clf.close()


def test_run_with_quantized_inputs_checks_the_dtype() -> None:
    from affectlite.errors import InputError

    m = Model.load(COMMERCIAL_TEXT_MODEL, default_delegates=False)
    det = m.input_details[0]
    with pytest.raises(InputError, match="already-quantised"):
        m.run(np.zeros(det["shape"], np.float32), quantized=True)
    q = np.full(det["shape"], int(det["quantization_parameters"]["zero_points"][0]), det["dtype"])
    np.testing.assert_allclose(m.run(q, quantized=True)[0], m.run(np.zeros(det["shape"], np.float32))[0])


def test_a_large_batch_runs_in_slices_with_the_same_result() -> None:
    clf = TextClassifier.from_model(TEXT_MODELS["en"])
    texts = [f"{w} number {i}!" for i, w in enumerate(["great", "awful", "what", "sad", "ok"] * 30)]  # 150 > 64
    big, n_tok = clf.predict_proba(texts)
    assert big.shape == (150, 7) and len(n_tok) == 150
    np.testing.assert_allclose(big[100:110], clf.predict_proba(texts[100:110])[0], atol=1e-6)
    clf.close()
