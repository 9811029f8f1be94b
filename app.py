"""Entry point and home page of the explainable facial-emotion workbench (``streamlit run app.py``).

Kept light on purpose: no MediaPipe, scikit-learn or TensorFlow import here, so the dashboard
opens in a few seconds; the pages load what they need when they are visited. ``st.navigation``
lists the files in ``pages/`` under readable titles (the sidebar would otherwise say "app").
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from fer_core import config
from fer_core.i18n import install_browser_font, t
from ui.common import (
    DATA_LAYOUT_HELP,
    HOME_ICON,
    PAGES,
    choose_language,
    derived_tables,
    env_summary,
    manifest_entries,
    page_setup,
    run_page,
)


def _models_frame(entries) -> pd.DataFrame:
    rows = [{"model": e.name, "kind": e.kind, "origin": e.origin_label, "emotions": ", ".join(e.classes),
             "accuracy": e.metrics.accuracy, "macro F1": e.metrics.macro_f1,
             "measured on": e.metrics.evaluated_on, "file": e.path} for e in entries]
    return pd.DataFrame(rows)


def main() -> None:
    st.title("Explainable facial-emotion workbench")
    st.markdown(
        "This workbench reads a face as **facial Action Units** (AUs: muscle movements such as "
        "*AU12 lip corner puller* or *AU04 brow lowerer*) and predicts one of six basic emotions "
        "with a logistic regression over those AUs, so every prediction comes with a reason a "
        "person can check. You can explore a dataset's class balance and AU profiles, train and "
        "inspect the AU model, and try it on your own photos. A CNN trained on FER2013 and models "
        "imported from Teachable Machine are compared with it emotion by emotion, on the same images.")

    st.subheader("Pages")
    for path, label, icon in PAGES:
        st.page_link(path, label=t(label), icon=icon)
    st.caption("Dataset explorer: class balance, sample images and AU profiles · "
               "AU model: train, evaluate and read the AU × emotion weights · "
               "Try it: upload photos or use the camera · CNN: train or evaluate a pixel model · "
               "Teachable Machine: import an export · Compare: all models on one test set · "
               "Masks: every model with and without a mask, beside people.")

    st.subheader("Models")
    entries = manifest_entries()
    if not entries:
        st.warning("No models are registered in models/manifest.json yet. Train one on the "
                   "AU model page (the bundled FER2013 AU table needs no images), or run `make au-model`.")
    else:
        st.dataframe(_models_frame(entries), hide_index=True, column_config={
            "accuracy": st.column_config.NumberColumn(format="percent", help="on the data named in 'measured on'"),
            "macro F1": st.column_config.NumberColumn(format="%.3f"),
        })
        st.caption("Accuracy and macro-F1 as recorded when each model was made, on the data named in "
                   "'measured on' (see each model's page for the confusion matrix). Compare scores models "
                   "on the same images.")

    st.subheader("Data")
    for what, where in env_summary().items():
        st.markdown(f"- **{what}**: `{where}`")
    fer_root = config.datasets_dir() / "fer2013"
    if fer_root.is_dir():
        splits = sorted(p.name for p in fer_root.iterdir() if p.is_dir())
        st.success(f"FER2013 images found at `{fer_root}` (splits: {', '.join(splits) or 'none'}).")
    else:
        st.info(f"No image dataset at `{fer_root}`: the pages that need images will say so. "
                f"Put FER2013 there or set FER_DATA_DIR. {DATA_LAYOUT_HELP} "
                "Everything else works on the bundled AU tables: "
                + ", ".join(f"`{n}`" for n in derived_tables()) + ".")


def home() -> None:
    page_setup("nav.home", HOME_ICON)
    run_page(main)


install_browser_font(Path(__file__).parent / "static")
choose_language()
st.navigation([st.Page(home, title=t("nav.home"), icon=HOME_ICON, default=True)]
              + [st.Page(path, title=t(label), icon=icon) for path, label, icon in PAGES]).run()
