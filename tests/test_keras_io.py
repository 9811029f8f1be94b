"""Keras start-up: TensorFlow's Python warnings kept out of the server log, its errors kept in."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("tensorflow")


def test_import_keras_quiets_tensorflow_warnings_but_not_errors():
    """After a few CNN trainings in one server TensorFlow logged "triggered tf.function retracing"
    warnings: nothing a user can act on."""
    from fer_core.predictors.keras_io import import_keras

    import_keras()
    logger = logging.getLogger("tensorflow")
    assert not logger.isEnabledFor(logging.WARNING)
    assert logger.isEnabledFor(logging.ERROR)


def test_a_deferred_build_runs_with_garbage_collection_paused():
    """Garbage freed in the build thread could hold an h5py dataset whose release waits for h5py's
    lock, held by the thread waiting for the build: a Teachable load hung for good (seen after
    the CNN tests in one process). Garbage is collected before the thread, none inside it."""
    import gc

    from fer_core.predictors.keras_io import import_keras
    from fer_core.predictors.keras_safety import build_deferred

    keras = import_keras()
    seen = {}

    def build():
        seen["collecting"] = gc.isenabled()
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])

    model = build_deferred(build, lambda m: None, "test", "hint")
    assert seen == {"collecting": False} and gc.isenabled() and model.built
