"""Teachable Machine: import an image model export, fix its label -> emotion mapping, try it, save it."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import streamlit as st

from fer_core.emotions import SEVEN_EMOTIONS
from fer_core.errors import FerError
from fer_core.figures import plots
from fer_core.predictors.teachable import TeachableImport, TeachableUpload, sort_upload
from ui.common import (
    IMAGE_TYPES,
    digest,
    load_teachable_upload,
    manifest_entries,
    page_setup,
    run_page,
    show_error,
)

page_setup("nav.teachable", ":material/school:")

IGNORE = "ignore"  # the mapping choice that drops a Teachable Machine class
CHOICES = list(SEVEN_EMOTIONS) + [IGNORE]
HOW_TO_EXPORT = (
    "In [Teachable Machine](https://teachablemachine.withgoogle.com/) train an **Image Project** with one "
    "class per emotion (name them *angry*, *happy*, … or map them below), then **Export Model → "
    "Tensorflow → Keras → Download my model**. Upload the downloaded zip here, or its two files "
    "`keras_model.h5` and `labels.txt` together. The model is rebuilt from its description without "
    "running any code from the file.")


def choose_upload() -> tuple[TeachableUpload, str] | None:
    files = st.file_uploader("Teachable Machine export: the zip, or keras_model.h5 together with labels.txt",
                             type=["zip", "h5", "txt"], accept_multiple_files=True, key="tm_upload")
    if not files:
        st.info(HOW_TO_EXPORT)
        return None
    upload = sort_upload([(f.name, f.getvalue()) for f in files])
    return upload, digest(upload.model_bytes + b"\0" + (upload.labels_bytes or b""))


def mapping_editor(base, key: str) -> dict[str, str | None]:
    """One selectbox per class of the model: an emotion, or ignore (dropped, the rest renormalised)."""
    st.subheader("Classes and their emotions")
    st.caption("Each class of the model counts as the emotion chosen here; *ignore* drops it (e.g. a "
               "background class) and the remaining probabilities are renormalised. Several classes may "
               "count as one emotion: their probabilities are added.")
    auto = base.mapping.as_dict()
    mapping: dict[str, str | None] = {}
    per_row = 4
    labels = list(base.labels)
    for row in range(0, len(labels), per_row):
        cols = st.columns(per_row)
        for col, (i, label) in zip(cols, list(enumerate(labels))[row:row + per_row]):
            guess = auto.get(label) or IGNORE
            choice = col.selectbox(f"{i}: {label}", CHOICES, index=CHOICES.index(guess), key=f"tm_map_{key[:12]}_{i}",
                                   help="guessed from the class name" if auto.get(label) else
                                   "the name is no emotion this workbench knows: pick one or ignore it")
            mapping[label] = None if choice == IGNORE else choice
    return mapping


def show_mapping(predictor) -> None:
    rows = [{"class (model output)": f"{i}: {label}", "counts as": emotion or "— ignored —"}
            for i, (label, emotion) in enumerate(zip(predictor.labels, predictor.mapping.emotions))]
    left, right = st.columns([2, 3])
    left.dataframe(pd.DataFrame(rows), hide_index=True)
    with right:
        st.markdown(f"**Scores as:** {', '.join(predictor.classes)}")
        if predictor.unmapped:
            st.markdown(f"**Ignored:** {', '.join(predictor.unmapped)}")
        merged = {e: [lab for lab, m in zip(predictor.labels, predictor.mapping.emotions) if m == e]
                  for e in predictor.classes}
        for emotion, labs in merged.items():
            if len(labs) > 1:
                st.markdown(f"**{emotion}** = {' + '.join(labs)}")
        missing = [e for e in SEVEN_EMOTIONS if e not in predictor.classes]
        if missing:
            st.caption(f"The model never predicts {', '.join(missing)}: on the Compare page those images count "
                       "as wrong for it (or leave those emotions out there).")


def try_section(predictor) -> None:
    from fer_core.pipeline import analyze_photo

    st.subheader("Try it on a photo")
    up = st.file_uploader("A photo: the model sees the largest face's crop, as on the Compare page (the whole "
                          "image when no face is found), centre-cropped and resized to its input",
                          type=IMAGE_TYPES, key="tm_image")
    if up is None:
        return
    with st.spinner("Finding the face and predicting…"):
        photo = analyze_photo(up.getvalue(), up.name, None)
        if photo.image is None:
            show_error(photo.error or f"{up.name}: not a readable image")
            return
        crop = photo.faces[0].face.pixels if photo.faces else photo.image
        raw = predictor.raw_proba([crop])[0]
        proba = predictor.predict_proba([crop])[0]
    c1, c2, c3 = st.columns([1, 1.4, 1.4])
    c1.image(crop, caption=f"{up.name}: " + ("the face it sees" if photo.faces else "no face found, the whole image"),
             width="stretch")
    c2.plotly_chart(plots.probability_bars(dict(zip(predictor.labels, raw)), title="The model's own classes"),
                    key="tm_raw")
    if pd.isna(proba).any():
        c3.warning("The model puts all its probability on ignored classes: no emotion for this image.")
    else:
        best = predictor.classes[int(proba.argmax())]
        c3.plotly_chart(plots.probability_bars(dict(zip(predictor.classes, proba)),
                                               title=f"As emotions: {best} ({proba.max():.0%})"), key="tm_emotions")


def save_section(upload: TeachableUpload, predictor, key: str) -> None:
    st.subheader("Save into models/")
    saved: dict = st.session_state.setdefault("tm_saved", {})
    save_key = (key, tuple(predictor.mapping.emotions))
    if save_key in saved:
        st.success(f"Saved as **{saved[save_key]}** with this mapping: it is listed on the home page and on "
                   "the Compare page.")
        return
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(upload.source.split(" + ")[0]).stem).strip("-_") or "model"
    c1, c2 = st.columns([3, 1])
    name = c1.text_input("Model name", value=f"teachable-{stem}"[:60], key="tm_save_name",
                         help="Letters, digits, '-' and '_'; written to models/teachable/<name>/ with the mapping "
                              "in models/manifest.json")
    c2.write("")
    if c2.button("Save model", key="tm_save"):
        try:
            entry = save_teachable(upload, predictor, name)
        except FerError as exc:
            show_error(exc)
        else:
            saved[save_key] = entry.name
            st.rerun()


def save_teachable(upload: TeachableUpload, predictor, name: str):
    from fer_core.manifest import Metrics
    from fer_core.predictors.registry import save_and_register

    return save_and_register(TeachableImport(upload, predictor), name=name, kind="teachable",
                             classes=predictor.classes, metrics=Metrics(), mapping=predictor.mapping.as_dict(),
                             command=f"dashboard: Teachable Machine page (import of {upload.source})",
                             origin="imported", description=f"Teachable Machine export {upload.source}")


def imported_list() -> None:
    entries = [e for e in manifest_entries() if e.kind == "teachable"]
    if not entries:
        return
    with st.expander(f"Imported Teachable Machine models ({len(entries)})"):
        st.dataframe(pd.DataFrame([{
            "model": e.name, "emotions": ", ".join(e.classes),
            "mapping": ", ".join(f"{k} → {v or 'ignored'}" for k, v in (e.mapping or {}).items()),
            "file": e.path,
        } for e in entries]), hide_index=True)


def main() -> None:
    st.title("Teachable Machine")
    st.caption("A transfer-learning model (MobileNet features + a small head) trained in the browser on "
               "your own photos: the third model of the comparison.")
    imported_list()
    chosen = choose_upload()
    if chosen is None:
        return
    upload, key = chosen
    base = load_teachable_upload(key, upload)
    h, w = base.input_size
    st.success(f"Loaded **{upload.source}**: {len(base.labels)} classes, input {w}×{h} RGB.")
    mapping = mapping_editor(base, key)
    try:
        predictor = base.remapped(mapping, name="teachable")
    except FerError as exc:
        show_error(exc)
        return
    show_mapping(predictor)
    try_section(predictor)
    save_section(upload, predictor, key)


run_page(main)
