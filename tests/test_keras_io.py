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
