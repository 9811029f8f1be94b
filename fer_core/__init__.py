"""fer_core: faces -> Action Units -> explainable emotions, and model comparison (no UI here).

The data flow, one subpackage per step::

    measure/      faces in images -> AU measurements (MediaPipe, OpenFace CSV, OpenFace in Docker)
    au_table      the AU table every source produces, and which rows count
    predictors/   every model kind behind one contract, found through one registry
    pipeline      the faces every model sees (crop + AUs), decided once
    evaluation/   scores of one model, and the comparison of several on the same images
    figures/      charts and downloadable tables

The names below are imported on first use, so ``import fer_core`` stays fast (no MediaPipe,
scikit-learn or TensorFlow until needed).
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_EXPORTS = {
    "FerError": "fer_core.errors",
    "read_manifest": "fer_core.manifest",
    "ModelEntry": "fer_core.manifest",
    "Metrics": "fer_core.manifest",
    "load_predictor": "fer_core.predictors.registry",
    "save_and_register": "fer_core.predictors.registry",
    "register_kind": "fer_core.predictors.registry",
    "ModelKind": "fer_core.predictors.registry",
    "Predictor": "fer_core.predictors.base",
    "FaceInput": "fer_core.predictors.base",
    "Explanation": "fer_core.predictors.base",
    "AUContribution": "fer_core.predictors.base",
    "AUModel": "fer_core.predictors.au_models",
    "AUPredictor": "fer_core.predictors.au_models",
    "fit_au_model": "fer_core.predictors.au_models",
    "analyze_image": "fer_core.pipeline",
    "FaceResult": "fer_core.pipeline",
    "prepare_faces": "fer_core.pipeline",
    "extract_table": "fer_core.measure.extract",
    "close_workers": "fer_core.measure.workers",
    "list_images": "fer_core.images",
    "LabeledImage": "fer_core.images",
    "load_image": "fer_core.images",
    "evaluation_report": "fer_core.evaluation.metrics",
    "EvaluationReport": "fer_core.evaluation.metrics",
    "ClassScore": "fer_core.evaluation.metrics",
    "run_comparison": "fer_core.evaluation.compare",
    "Comparison": "fer_core.evaluation.compare",
    "evaluate_images": "fer_core.evaluation.compare",
    "evaluate_au_table": "fer_core.evaluation.compare",
    "explain_image": "fer_core.evaluation.compare",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fer_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__ + ["__version__"]
