"""Figures and downloadable tables, from plain data (no Streamlit): plotly charts and PIL overlays."""
