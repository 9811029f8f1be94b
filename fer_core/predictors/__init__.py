"""Predictors: every model kind behind one contract (``base``), found through one registry."""

from .base import AUContribution, Explanation, FaceInput, Predictor, predicted_labels
from .registry import ModelKind, find_entry, get_kind, kinds, load_predictor, register_kind, save_and_register

__all__ = ["AUContribution", "Explanation", "FaceInput", "ModelKind", "Predictor", "find_entry", "get_kind",
           "kinds", "load_predictor", "predicted_labels", "register_kind", "save_and_register"]
