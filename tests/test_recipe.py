"""The training recipe: settings checked in one line, the cosine schedule, EMA weights that are
picked and saved, soft labels and batch mixing in a real (tiny) Keras training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli import run_cli
from test_cnn import CLASSES, synthetic_face

from fer_core.errors import FerError
from fer_core.predictors.cnn import load_dataset, load_keras_file, read_cnn_metadata, train_cnn
from fer_core.predictors.recipe import COSINE_FLOOR, Recipe, cosine_schedule


def _folder(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for label, emotion in enumerate(CLASSES):
        (root / emotion).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(synthetic_face(label, rng)).save(root / emotion / f"{i:03d}.jpg", quality=95)
    return root


@pytest.mark.parametrize("settings, message", [
    ({"schedule": "step"}, "unknown learning-rate schedule 'step'"),
    ({"warmup_epochs": 2}, "need the cosine schedule"),
    ({"label_smoothing": 1.0}, "label smoothing"),
    ({"ema": 0.5}, "EMA momentum 0.5"),
    ({"mixup": 0.2, "cutmix": 1.0}, "mixup or cutmix, not both"),
    ({"mixup": -1.0}, "mixup alpha"),
    ({"erasing": 1.5}, "random erasing 1.5"),
])
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(FerError, match=message):
        Recipe(**settings)


def test_defaults_are_the_bundled_cnns_recipe_and_describe_says_what_is_on():
    assert Recipe().is_default and not Recipe().soft_labels and Recipe().describe() == "plateau"
    recipe = Recipe(schedule="cosine", warmup_epochs=1, label_smoothing=0.1, ema=0.999)
    assert recipe.describe() == "cosine (warm-up 1), label smoothing 0.1, EMA 0.999"
    assert recipe.soft_labels and Recipe(mixup=0.2).soft_labels and not Recipe(ema=0.99).soft_labels
    np.testing.assert_array_equal(recipe.labels(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(Recipe().labels(np.array([2, 0]), 3), [2, 0])


def test_cosine_schedule_warms_up_then_decays_to_its_floor():
    plain = cosine_schedule(1e-3, total_steps=100)
    assert float(plain(0)) == pytest.approx(1e-3) and float(plain(100)) == pytest.approx(COSINE_FLOOR * 1e-3)
    assert float(plain(50)) == pytest.approx(1e-3 * (COSINE_FLOOR + (1 - COSINE_FLOOR) / 2), rel=1e-3)
    warm = cosine_schedule(1e-3, total_steps=100, warmup_steps=10)
    assert float(warm(0)) == pytest.approx(1e-4) and float(warm(10)) == pytest.approx(1e-3)
    assert float(warm(5)) < float(warm(10)) > float(warm(60)) > float(warm(100))
    assert float(warm(100)) == pytest.approx(COSINE_FLOOR * 1e-3)


def test_ema_epoch_is_chosen_and_saved_on_the_averaged_weights(tmp_path):
    """With EMA the saved network is the averaged one whose validation loss picked the epoch: its
    loss on the val images is the logged one (raw weights would give another), and soft labels,
    mixup and erasing train without error."""
    import keras

    train = _folder(tmp_path / "train", 12, 0)
    val = _folder(tmp_path / "val", 4, 1)
    recipe = Recipe(schedule="cosine", label_smoothing=0.1, ema=0.9, mixup=0.2, erasing=0.5)
    result = train_cnn(train, val, classes=CLASSES, preset="tiny", epochs=3, batch_size=8,
                       out=tmp_path / "ema.keras", recipe=recipe, seed=0)
    meta = read_cnn_metadata(result.path)
    assert meta["recipe"] == recipe.to_dict() and meta["epochs_run"] == 3
    best = int(np.argmax(result.history["val_accuracy"]))
    saved = load_keras_file(result.path)
    saved.compile(loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    data = load_dataset(val, CLASSES)
    loss = saved.evaluate(data.x, recipe.labels(data.y, len(CLASSES)), batch_size=64, verbose=0)
    assert loss == pytest.approx(result.history["val_loss"][best], abs=1e-4)
    lr = result.history["learning_rate"]
    assert lr[0] > lr[1] > lr[2]  # the cosine schedule, not a constant rate


def test_cli_takes_the_recipe_and_refuses_a_bad_one(capsys, tmp_path):
    train = _folder(tmp_path / "train", 10, 0)
    code, _, err = run_cli(capsys, "train-cnn", "--data", train, "--out", tmp_path / "m.keras", "--preset", "tiny",
                           "--mixup", "0.2", "--cutmix", "1")
    assert code == 2 and err.strip().count("\n") == 0 and "mixup or cutmix, not both" in err
    code, out, err = run_cli(capsys, "train-cnn", "--data", train, "--out", tmp_path / "m.keras", "--preset", "tiny",
                           "--epochs", "1", "--batch-size", "8", "--schedule", "cosine", "--label-smoothing", "0.1",
                           "--cutmix", "1.0", "--classes", ",".join(CLASSES))
    assert code == 0, out + err
    assert read_cnn_metadata(tmp_path / "m.keras")["recipe"] == Recipe(schedule="cosine", label_smoothing=0.1,
                                                                      cutmix=1.0).to_dict()


def test_array_batches_cover_every_row_once_per_epoch_and_reshuffle():
    """The batches off the TensorFlow backend: each epoch is a new order over every row, targets and
    weights (dicts for the AU bottleneck) stay with their images, validation keeps its order."""
    import keras

    from fer_core.predictors.recipe import _array_batches

    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    targets = {"emotion": np.arange(10), "aus": np.arange(10, dtype=np.float32) * 10}
    weights = {"emotion": np.ones(10, np.float32), "aus": (np.arange(10) % 2).astype(np.float32)}
    batches = _array_batches(keras)(x, targets, weights, 4, 0, True, None, None, None)

    def epoch():
        rows = [batches[i] for i in range(len(batches))]
        for xb, tb, wb in rows:
            np.testing.assert_array_equal(xb.ravel(), tb["emotion"])
            np.testing.assert_array_equal(tb["aus"], tb["emotion"] * 10)
            np.testing.assert_array_equal(wb["aus"], tb["emotion"] % 2)
        return np.concatenate([tb["emotion"] for _, tb, _ in rows])

    assert len(batches) == 3
    first = epoch()
    batches.on_epoch_end()
    second = epoch()
    assert sorted(first) == sorted(second) == list(range(10)) and list(first) != list(second)
    val = _array_batches(keras)(x, targets["emotion"], None, 4, 0, False, None, None, None)
    assert np.concatenate([val[i][1] for i in range(len(val))]).tolist() == list(range(10))


NO_TENSORFLOW_TRAINING = """
import sys

class NoTensorFlow:  # a machine without TensorFlow (a GPU box with only JAX)
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "ai_edge_litert"):
            raise ImportError("no " + name)

sys.meta_path.insert(0, NoTensorFlow())
import numpy as np
from fer_core.cli import main
from fer_core.predictors.cnn import load_dataset, load_keras_file
from fer_core.predictors.keras_io import predict_views

train, val, out = sys.argv[1:4]
code = main(["train-cnn", "--data", train, "--val", val, "--out", out, "--preset", "tiny", "--epochs", "2",
             "--batch-size", "8", "--classes", "happy,sad,surprise", "--mixup", "0.2", "--erasing", "0.5"])
assert code == 0, code
data = load_dataset(val, ("happy", "sad", "surprise"))
np.save(out + ".proba.npy", predict_views(load_keras_file(out), data.x, "mirror"))
print("modules", sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))
"""


def test_trains_on_jax_without_tensorflow_and_the_file_predicts_the_same_on_tensorflow(tmp_path):
    """KERAS_BACKEND=jax with TensorFlow unimportable: train-cnn (mixup and erasing on) saves the
    network and its sidecar, says there is no Lite twin yet; back on TensorFlow the same file gives the
    same probabilities and export-lite makes its twin."""
    import os
    import subprocess
    import sys

    from fer_core.cli import main
    from fer_core.predictors.keras_io import predict_views
    from fer_core.predictors.lite import lite_path

    repo = Path(__file__).resolve().parents[1]
    jax_site = repo / ".venv" / "jax-site"
    if not (jax_site / "jax").is_dir():
        pytest.skip("JAX is not in .venv/jax-site (`make dev-venv` installs it there from requirements-jax.txt)")
    train = _folder(tmp_path / "train", 8, 0)
    val = _folder(tmp_path / "val", 4, 1)
    out = tmp_path / "jax.keras"
    env = {**os.environ, "KERAS_BACKEND": "jax", "OMP_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(jax_site), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", NO_TENSORFLOW_TRAINING, str(train), str(val), str(out)],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "modules []" in done.stdout
    assert "no TensorFlow Lite twin" in done.stderr and "run export-lite where TensorFlow is installed" in done.stderr
    meta = read_cnn_metadata(out)
    assert meta["status"] == "done" and meta["keras_backend"] == "jax" and meta["epochs_run"] == 2
    assert meta["recipe"] == Recipe(mixup=0.2, erasing=0.5).to_dict() and not lite_path(out).exists()

    data = load_dataset(val, CLASSES)
    on_jax = np.load(str(out) + ".proba.npy")
    assert np.abs(predict_views(load_keras_file(out), data.x, "mirror") - on_jax).max() < 1e-4
    assert main(["export-lite", "--model", str(out)]) == 0 and lite_path(out).is_file()
