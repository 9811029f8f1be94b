"""Streamlit glue shared by the dashboard pages (the science lives in ``fer_core``)."""
