"""Scoring models on labelled faces: metrics for one model, and the comparison of several on the
same images (used by the CLI and the dashboard alike)."""
