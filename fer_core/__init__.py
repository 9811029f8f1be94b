"""fer_core: faces -> Action Units -> explainable emotions, and model comparison (no UI here)."""

__version__ = "0.1.0"
