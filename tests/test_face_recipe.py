"""The face training recipe end to end on a small FER2013 slice: train, resume, convert, card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from affectlite.labels import LABELS

pytest.importorskip("tensorflow")
pytest.importorskip("cv2")


def _slice(src: Path, dst: Path, per_class: int) -> None:
    for split in ("train", "public_test"):
        for d in sorted((src / split).iterdir()):
            out = dst / split / d.name
            out.mkdir(parents=True)
            for f in sorted(d.iterdir())[:per_class]:
                shutil.copy(f, out / f.name)


@pytest.mark.slow
def test_recipe_trains_resumes_and_writes_an_int8_model_with_its_card(shared_datasets: Path,
                                                                      tmp_path: Path) -> None:
    from affectlite.card import load_card
    from affectlite.face import FaceExpressionClassifier
    from affectlite_convert.recipes import face as F

    data = tmp_path / "fer"
    _slice(shared_datasets / "fer2013", data, per_class=24)
    out = tmp_path / "run"
    st = F.train(str(data), str(out), epochs=2, width=4, batch_size=32, stop_after=1, threads=1)
    assert st["epoch"] == 1 and (out / "ckpt" / "last.keras").is_file()
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)  # a run stopped half-way, for the averaging check below
    st = F.train(str(data), str(out), epochs=2, width=4, batch_size=32, threads=1)  # resumes at epoch 2
    assert [h["epoch"] for h in st["history"]] == [1, 2]
    with pytest.raises(SystemExit, match="another config"):
        F.train(str(data), str(out), epochs=2, width=8, batch_size=32, threads=1)

    dest = F.convert_best(str(data), str(out), seed=1)
    card = load_card(dest.with_suffix(".card.json"))
    assert card.task == "face" and list(card.labels) == list(LABELS)
    assert "--width 4" in card.training["recipe"]
    assert "4-8-16-32 channels" in card.training["method"]
    assert card.metrics["int8"]["n"] == 7 * 24
    clf = FaceExpressionClassifier.create(str(dest))
    (p,) = clf.classify_crops([np.full((48, 48), 128, np.uint8)])
    assert len(p) == len(LABELS) and abs(sum(p) - 1.0) < 0.05
    state = json.loads((out / "state.json").read_text())
    assert state["config"]["width"] == 4
    # lengthen the finished run with a warm restart: recorded, and reproduced by the recipe commands
    st = F.train(str(data), str(out), epochs=3, width=4, batch_size=32, threads=1, restart_lr=1e-3)
    assert st["epoch"] == 3 and st["schedule_changes"][-1] == {"at_epoch": 2, "epochs": 3, "restart_lr": 1e-3}
    cmds = F._recipe_commands(st, 1)
    assert cmds.endswith("--epochs 3 --restart-lr 0.001") and "--epochs 2 --stop-after 2" in cmds

    # stochastic weight averaging after the finished run: resumable running mean, recorded, reproduced
    with pytest.raises(SystemExit, match="not finished"):
        F.swa(str(data), str(partial), epochs=2, lr=1e-3, batch_size=32, threads=1)
    st = F.swa(str(data), str(out), epochs=2, lr=1e-3, batch_size=32, threads=1, stop_after=1)
    assert st["swa"]["done"] == 1
    w1 = _weights(out / "ckpt" / "swa_last.keras")
    mean1 = _mean(out)
    assert all(np.allclose(m, w) for m, w in zip(mean1, w1, strict=True))
    st = F.swa(str(data), str(out), epochs=2, lr=1e-3, batch_size=32, threads=1)  # resumes
    w2 = _weights(out / "ckpt" / "swa_last.keras")
    assert [h["models_averaged"] for h in st["swa"]["history"]] == [1, 2]
    trained = [i for i, (a, b) in enumerate(zip(w1, w2, strict=True)) if not np.allclose(a, b)]
    assert trained, "the averaging epochs did not train"
    mean2 = _mean(out)
    assert all(np.allclose(m, (a + b) / 2, atol=1e-6) for m, a, b in zip(mean2, w1, w2, strict=True))
    with pytest.raises(SystemExit, match=r"averaging run at lr 0\.001"):
        F.swa(str(data), str(out), epochs=3, lr=2e-3, batch_size=32, threads=1)
    assert F.swa(str(data), str(out), epochs=1, lr=1e-3, batch_size=32, threads=1)["swa"]["done"] == 2  # no-op
    assert F._recipe_commands(st, 1).endswith("--restart-lr 0.001 --swa-epochs 2 --swa-lr 0.001")
    F.convert_best(str(data), str(out), seed=1)  # the best (averaged or not) still converts

    # knowledge distillation: fine-tune the run's best towards two "teachers" (the finished and the half run)
    teachers = [str(out / "best.keras"), str(partial / "ckpt" / "last.keras")]
    soft = F.teacher_targets(teachers, np.stack([np.full((48, 48), v, np.uint8) for v in (60, 200)]))
    assert soft.shape == (2, len(LABELS)) and np.allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    kd_out = tmp_path / "kd"
    st = F.distil(str(data), str(kd_out), teachers=teachers, init=teachers[0], epochs=2, lr=1e-3, alpha=0.4,
                  batch_size=32, threads=1, stop_after=1)
    assert st["epoch"] == 1 and 0.0 <= st["init_acc"] <= 1.0 and st["config"]["width"] == 4
    targets = np.load(kd_out / "teacher_targets.npy")
    xtr, _ = F.load_split(str(data), "train", str(kd_out / "cache"))
    assert targets.shape == (len(xtr), len(LABELS))
    assert np.allclose(targets, F.teacher_targets(teachers, xtr), atol=1e-5)  # image + mirror, 2 models
    st = F.distil(str(data), str(kd_out), teachers=teachers, init=teachers[0], epochs=2, lr=1e-3, alpha=0.4,
                  batch_size=32, threads=1)  # resumes
    assert [h["epoch"] for h in st["history"]] == [1, 2] and (kd_out / "best.keras").is_file()
    with pytest.raises(SystemExit, match="another config"):
        F.distil(str(data), str(kd_out), teachers=teachers[:1], init=teachers[0], epochs=2, lr=1e-3,
                 batch_size=32, threads=1)
    with pytest.raises(SystemExit, match="model not found"):
        F.distil(str(data), str(tmp_path / "kd2"), teachers=[str(tmp_path / "nope.keras")], init=teachers[0],
                 epochs=1, threads=1)
    dest = F.convert_best(str(data), str(kd_out), seed=1)
    card = load_card(dest.with_suffix(".card.json"))
    kd = card.training["distillation"]
    assert kd["alpha"] == 0.4 and [t["name"] for t in kd["teachers"]] == ["T1", "T2"]
    assert kd["teachers"][0]["recipe"] == F._recipe_commands(json.loads((out / "state.json").read_text()), 1)
    assert "--init INIT.keras --teacher T1.keras --teacher T2.keras --kd-alpha 0.4" in card.training["recipe"]
    assert "knowledge distillation" in card.training["method"] and "fine-tuned" in card.training["method"]
    # from scratch (no --init): a new model of --width, recorded as such
    scratch = tmp_path / "kd_scratch"
    st = F.distil(str(data), str(scratch), teachers=teachers, init=None, width=4, stage5=8, epochs=1, lr=3e-3,
                  batch_size=32, threads=1)
    assert st["config"]["distil"]["init"] is None and st["config"]["width"] == 4 and "init_acc" not in st
    assert st["config"]["stage5"] == 8
    assert F.distil(str(data), str(scratch), teachers=teachers, init=None, width=4, stage5=8, epochs=1, lr=3e-3,
                    batch_size=32, threads=1)["epoch"] == 1  # resumes (nothing left to do)
    for other in ({"width": 8, "stage5": 8}, {"width": 4, "stage5": 0}):
        with pytest.raises(SystemExit, match="another config"):
            F.distil(str(data), str(scratch), teachers=teachers, init=None, epochs=1, lr=3e-3,
                     batch_size=32, threads=1, **other)
    card = load_card(F.convert_best(str(data), str(scratch), seed=1).with_suffix(".card.json"))
    assert "--width 4 --stage5 8 --teacher T1.keras --teacher T2.keras" in card.training["recipe"]
    assert "4-8-16-32-8 channels" in card.training["method"]
    assert "trained from scratch" in card.training["method"] and card.training["distillation"]["init"] is None
    with pytest.raises(SystemExit, match="another config"):  # the family is part of the run's config
        F.distil(str(data), str(scratch), teachers=teachers, init=None, width=4, stage5=8, arch="dsr", epochs=1,
                 lr=3e-3, batch_size=32, threads=1)
    # the depthwise-separable family goes through the same converter into a model the runtime runs
    dsr = tmp_path / "kd_dsr"
    st = F.distil(str(data), str(dsr), teachers=teachers, init=None, width=4, stage5=8, arch="dsr", epochs=1,
                  lr=3e-3, batch_size=32, threads=1)
    assert st["config"]["arch"] == "dsr"
    dest = F.convert_best(str(data), str(dsr), seed=1)
    card = load_card(dest.with_suffix(".card.json"))
    assert "--width 4 --stage5 8 --arch dsr --teacher T1.keras" in card.training["recipe"]
    assert "depthwise-separable" in card.training["method"] and "4-8-32-64-8 channels" in card.training["method"]
    (p,) = FaceExpressionClassifier.create(str(dest)).classify_crops([np.full((48, 48), 128, np.uint8)])
    assert len(p) == len(LABELS) and abs(sum(p) - 1.0) < 0.05


def test_fifth_stage_adds_parameters_at_3x3_resolution() -> None:
    pytest.importorskip("keras")
    from affectlite_convert.recipes import face as F

    base, wide = F.build_model(20), F.build_model(20, stage5=256)
    conv = wide.get_layer("s5a_conv")
    assert tuple(conv.input.shape[1:]) == (3, 3, 160) and conv.filters == 256
    assert F._architecture(wide) == (20, 256, "vgg") and F._architecture(base) == (20, 0, "vgg")  # for cards
    # 3x3x160x256 kernel + BatchNorm (4 x 256) + the wider classifier (7 x (256 - 160))
    assert wide.count_params() - base.count_params() == 9 * 160 * 256 + 4 * 256 + 7 * (256 - 160)
    x = np.random.default_rng(0).normal(size=(2, 48, 48, 1)).astype(np.float32)
    p = wide.predict(x, verbose=0)
    assert p.shape == (2, len(LABELS)) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="stage5 must be >= 0"):
        F.build_model(20, stage5=-1)
    st = {"config": {"width": 20, "stage5": 256, "epochs": 30}}
    assert F._recipe_commands(st, 1).endswith("--width 20 --stage5 256 --epochs 30")


def test_depthwise_separable_family_is_wider_for_fewer_multiply_adds() -> None:
    pytest.importorskip("keras")
    from affectlite_convert.recipes import face as F

    vgg, dsr = F.build_model(20), F.build_model(20, stage5=512, arch="dsr")
    names = {layer.name for layer in dsr.layers}
    # stages 1-2 as in vgg; 3 blocks of 160 channels at 12x12, 2 of 320 at 6x6, 1 of 512 at 3x3
    assert {"s1a_conv", "s2a_conv", "s2b_conv"} <= names and "s3a_conv" not in names
    assert tuple(dsr.get_layer("s3a_dw").input.shape[1:]) == (12, 12, 40)
    assert dsr.get_layer("s3c_pw").filters == 160 and tuple(dsr.get_layer("s4b_pw").input.shape[1:3]) == (6, 6)
    assert tuple(dsr.get_layer("s5a_dw").input.shape[1:]) == (3, 3, 320) and dsr.get_layer("s5a_pw").filters == 512
    # residual connections exactly where the channels match
    assert {n for n in names if n.endswith("_add")} == {"s3b_add", "s3c_add", "s4b_add"}
    assert F._architecture(dsr) == (20, 512, "dsr")
    assert F._arch_config(*F._architecture(dsr)) == {"width": 20, "stage5": 512, "arch": "dsr"}
    assert F._arch_config(*F._architecture(vgg)) == {"width": 20}  # earlier runs' configs still match

    def macs(model: object) -> int:
        total = 0
        for layer in model.layers:  # type: ignore[attr-defined]
            if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D"):
                h, w, c = layer.output.shape[1:]
                k = int(np.prod(layer.kernel.shape[:-1])) if type(layer).__name__ == "Conv2D" else 9
                total += h * w * c * k
        return total

    assert macs(dsr) < macs(vgg)
    x = np.random.default_rng(0).normal(size=(2, 48, 48, 1)).astype(np.float32)
    p = dsr.predict(x, verbose=0)
    assert p.shape == (2, len(LABELS)) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="arch must be one of"):
        F.build_model(20, arch="resnet")
    st = {"config": {"width": 20, "stage5": 512, "arch": "dsr", "epochs": 26}}
    assert F._recipe_commands(st, 1).endswith("--width 20 --stage5 512 --arch dsr --epochs 26")


def test_cli_distillation_arguments_go_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from affectlite_convert.recipes import face as F

    for bad, why in ((["--stage5", "-1"], "--stage5 must be >= 0"),
                     (["--stage5", "64", "--init", "i.keras", "--teacher", "t.keras"], "drop one"),
                     (["--arch", "dsr", "--init", "i.keras", "--teacher", "t.keras"], "drop one"),
                     (["--arch", "resnet"], "invalid choice")):
        with pytest.raises(SystemExit):
            F.main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), *bad])
        assert why in capsys.readouterr().err

    with pytest.raises(SystemExit):  # --init without a teacher
        F.main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--init", "i.keras"])
    with pytest.raises(SystemExit):
        F.main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--teacher", "t.keras", "--init", "i.keras",
                "--kd-alpha", "1.5"])


def _weights(path: Path) -> list[np.ndarray]:
    import keras

    return [np.asarray(w) for w in keras.models.load_model(path, compile=False).get_weights()]


def _mean(out: Path) -> list[np.ndarray]:
    with np.load(out / "ckpt" / "swa_mean.npz") as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


@pytest.mark.slow
def test_recipe_on_ferplus_votes_writes_an_equalising_card_with_the_ferplus_figures(shared_datasets: Path,
                                                                                   tmp_path: Path) -> None:
    from affectlite.card import load_card
    from affectlite.face import FaceExpressionClassifier
    from affectlite.preprocess import equalize_hist
    from affectlite_convert.recipes import face as F

    data = tmp_path / "fer"
    _slice(shared_datasets / "fer2013", data, per_class=16)
    shutil.copy(shared_datasets / "fer2013" / "ferplus_votes.csv", data / "ferplus_votes.csv")
    out = tmp_path / "run"
    st = F.train(str(data), str(out), epochs=1, width=4, batch_size=32, threads=1, targets="ferplus-soft",
                 equalize=True)
    assert st["config"]["targets"] == "ferplus-soft" and st["config"]["equalize"] is True
    with pytest.raises(SystemExit, match="another config"):  # the targets are part of the run's config
        F.train(str(data), str(out), epochs=1, width=4, batch_size=32, threads=1, targets="ferplus-majority",
                equalize=True)
    assert F._recipe_commands(st, 1).endswith("--width 4 --targets ferplus-soft --epochs 1")
    d = F.load_data(str(data), str(out / "cache"), "ferplus-soft", equalize=True)
    assert d["soft"] is not None and np.allclose(d["soft"].sum(axis=1), 1.0, atol=1e-5)
    assert len(d["yva"]) == int(d["val_mask"].sum()) < 7 * 16 and (d["yva"] >= 0).all()
    raw = F.load_data(str(data), str(out / "cache"), "ferplus-soft", equalize=False)
    assert np.array_equal(d["xtr"][0], equalize_hist(raw["xtr"][0]))  # training sees the runtime's equalisation
    dest = F.convert_best(str(data), str(out), seed=1)
    card = load_card(dest.with_suffix(".card.json"))
    assert card.name == "affectlite-face-ferplus" and card.inputs[0].preprocessing["equalize"] == "histogram"
    assert "FER+ vote distribution" in card.training["method"] and "MIT" in card.training["terms"]
    assert card.metrics["int8"]["n"] == len(d["yva"])
    fp = card.metrics["ferplus"]
    assert fp["original_labels"]["n"] == 7 * 16 and len(fp["majority_int8"]["confusion"]) == len(LABELS)
    assert set(fp["contrast"]) == {"equalised (as stored)", "raw-like", "low contrast", "dark", "bright"}
    clf = FaceExpressionClassifier.create(str(dest))
    assert clf.spec.equalize == "histogram"
    (p,) = clf.classify_crops([np.full((48, 48), 128, np.uint8)])
    assert len(p) == len(LABELS) and abs(sum(p) - 1.0) < 0.05
    # the FER2013 recipe keeps its plain preprocessing
    plain = tmp_path / "plain"
    F.train(str(data), str(plain), epochs=1, width=4, batch_size=32, threads=1)
    card = load_card(F.convert_best(str(data), str(plain), seed=1).with_suffix(".card.json"))
    assert "equalize" not in card.inputs[0].preprocessing and card.name == "affectlite-face-fer2013"
    assert "ferplus" not in card.metrics
