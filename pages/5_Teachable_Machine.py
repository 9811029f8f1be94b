"""Teachable Machine: import an image model (any of its three downloads), fix its label -> emotion
mapping, try it, save it; the import is offered to Compare at once, saved or not."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from fer_core.emotions import SEVEN_EMOTIONS
from fer_core.errors import FerError
from fer_core.figures import plots
from fer_core.fileio import csv_bytes
from fer_core.i18n import FONT_FAMILY, emotion_label, emotion_labels, t
from fer_core.predictors.teachable import TeachableUpload, register_teachable, sort_upload
from ui.common import (
    IMAGE_TYPES,
    digest,
    forget_unsaved,
    kept_choice,
    load_teachable_upload,
    manifest_entries,
    page_setup,
    remember_unsaved,
    run_page,
    show_error,
    shown_literally,
)

page_setup("nav.teachable")

IGNORE = "ignore"  # the mapping choice that drops a Teachable Machine class
CHOICES = list(SEVEN_EMOTIONS) + [IGNORE]
UPLOAD_TYPES = ["zip", "h5", "txt", "json", "bin", "tflite"]


def format_label(fmt: str) -> str:
    """The download a model came from, for people."""
    return {"keras": t("teachable.format_keras"), "tfjs": t("teachable.format_tfjs"),
            "tflite": t("teachable.format_tflite"),
            "tflite-quantized": t("teachable.format_tflite_quantized")}.get(fmt, fmt)


def choice_label(choice: str) -> str:
    return t("teachable.ignore") if choice == IGNORE else emotion_label(choice)


SHOWN_UPLOAD = "tm_shown_upload"  # (upload, key) of the export this page shows
UPLOADER_HAD_FILES = "tm_uploader_had_files"  # on the last run: an emptied uploader clears the page


def choose_upload() -> tuple[TeachableUpload, str] | None:
    """The uploaded export, or the one shown before a visit to another page: Streamlit forgets an
    uploader's files on a run that does not draw it (its key is then gone from the session)."""
    came_back = "tm_upload" not in st.session_state
    files = st.file_uploader(t("teachable.upload_label"), type=UPLOAD_TYPES, accept_multiple_files=True,
                             key="tm_upload", help=t("teachable.upload_help"))
    if files:
        upload = sort_upload([(f.name, f.getvalue()) for f in files])
        key = digest(b"\0".join(name.encode("utf8") + b"\0" + data for name, data in upload.files))
        st.session_state[SHOWN_UPLOAD] = upload, key
        st.session_state[UPLOADER_HAD_FILES] = True
        return upload, key
    if st.session_state.pop(UPLOADER_HAD_FILES, False) and not came_back:  # emptied by the person
        st.session_state.pop(SHOWN_UPLOAD, None)
    if SHOWN_UPLOAD in st.session_state:
        upload, key = st.session_state[SHOWN_UPLOAD]
        c1, c2 = st.columns([5, 1])
        c1.info(t("teachable.shown_from_before", source=shown_literally(upload.source)))
        if not c2.button(t("teachable.close_shown"), key="tm_close_shown"):
            return upload, key
        st.session_state.pop(SHOWN_UPLOAD, None)
    st.info(t("teachable.how_to_export"))
    return None


def upload_stem(upload: TeachableUpload) -> str:
    """A file-name-safe stem of the uploaded zip or model file (not a labels.txt picked first), for
    default model names and the mapping download."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", Path(upload.model_file).stem).strip("-_") or "model"


def unsaved_name(upload: TeachableUpload, key: str) -> str:
    """The name Compare and Masks know the unsaved import by: with a short digest of the upload, so
    a second download of the same name (converted_keras.zip) does not replace the first there."""
    return f"teachable-{upload_stem(upload)}-{key[:6]}-unsaved"


def mapping_editor(base, key: str) -> dict[str, str | None]:
    """One selectbox per class name of the model: an emotion, or ignore (dropped, the rest
    renormalised). The mapping is kept by name, so classes sharing a name share one box."""
    st.header(t("teachable.classes_title"))
    st.caption(t("teachable.classes_caption"))
    auto = base.mapping.as_dict()
    shown = {choice: choice_label(choice) for choice in CHOICES}  # fixed now: called later, maybe in another thread
    mapping: dict[str, str | None] = {}
    per_row = 4
    outputs: dict[str, list[int]] = {}
    for i, label in enumerate(base.labels):
        outputs.setdefault(label, []).append(i)
    names = list(outputs.items())
    for row in range(0, len(names), per_row):
        cols = st.columns(per_row)
        for col, (label, indices) in zip(cols, names[row:row + per_row]):
            guess = auto.get(label) or IGNORE
            i = indices[0]
            choice = col.selectbox(f"{', '.join(map(str, indices))}: {shown_literally(label)}", CHOICES, index=CHOICES.index(guess),
                                   key=kept_choice(f"tm_map_{key[:12]}_{i}"),
                                   format_func=shown.__getitem__,
                                   help=t("teachable.guessed_help") if auto.get(label) else t("teachable.unknown_help"))
            mapping[label] = None if choice == IGNORE else choice
    return mapping


def mapping_table(predictor) -> pd.DataFrame:
    """The mapping as a machine-readable table (the download), one row per model output."""
    return pd.DataFrame({"index": range(len(predictor.labels)), "class": list(predictor.labels),
                         "emotion": [e or "" for e in predictor.mapping.emotions]})


def show_mapping(predictor, upload: TeachableUpload) -> None:
    rows = [{t("teachable.col_class"): f"{i}: {label}",
             t("teachable.col_counts_as"): emotion_label(emotion) if emotion else t("teachable.ignored_cell")}
            for i, (label, emotion) in enumerate(zip(predictor.labels, predictor.mapping.emotions))]
    left, right = st.columns([2, 3])
    left.dataframe(pd.DataFrame(rows), hide_index=True)
    left.download_button(t("teachable.download_mapping"), csv_bytes(mapping_table(predictor)),
                         file_name=f"{upload_stem(upload)}_mapping.csv", mime="text/csv", key="tm_dl_mapping", on_click="ignore")
    with right:
        st.markdown(t("teachable.scores_as", emotions=", ".join(emotion_labels(predictor.classes))))
        if predictor.unmapped:
            st.markdown(t("teachable.ignored", names=", ".join(map(shown_literally, predictor.unmapped))))
        merged = {e: [lab for lab, m in zip(predictor.labels, predictor.mapping.emotions) if m == e]
                  for e in predictor.classes}
        for emotion, labs in merged.items():
            if len(labs) > 1:
                st.markdown(f"**{emotion_label(emotion)}** = {' + '.join(map(shown_literally, labs))}")
        missing = [e for e in SEVEN_EMOTIONS if e not in predictor.classes]
        if missing:
            st.caption(t("teachable.never_predicts", emotions=", ".join(emotion_labels(missing))))


def bars(probabilities: dict[str, float], title: str, emotions: bool):
    """``plots.probability_bars`` (coloured by emotion) with emotion names in the page's language."""
    fig = plots.probability_bars(probabilities, title=title)
    if emotions:
        fig.update_traces(y=[emotion_label(e) for e in fig.data[0].y])
    return fig.update_layout(font=dict(family=FONT_FAMILY))


def try_section(predictor) -> None:
    from fer_core.pipeline import analyze_photo

    st.header(t("teachable.try_title"))
    up = st.file_uploader(t("teachable.photo_label"), type=IMAGE_TYPES, key="tm_image")
    if up is None:
        return
    with st.spinner(t("teachable.predicting")):
        photo = analyze_photo(up.getvalue(), up.name, None)
        if photo.image is None:
            if photo.error:
                show_error(photo.error, literal=True)
            else:
                show_error(t("teachable.unreadable_image", name=shown_literally(up.name)))
            return
        crop = photo.faces[0].face.pixels if photo.faces else photo.image
        raw = predictor.raw_proba([crop])[0]
        proba = predictor.predict_proba([crop])[0]
    c1, c2, c3 = st.columns([1, 1.4, 1.4])
    # a group photo: the largest face, as Compare scores it (Try it shows each face)
    seen = (t("teachable.sees_largest", n=len(photo.faces)) if len(photo.faces) > 1
            else t("teachable.sees_face") if photo.faces else t("teachable.sees_whole"))
    c1.image(crop, caption=f"{up.name}: {seen}", width="stretch", alt=t("teachable.crop_alt", name=up.name))
    # one bar per output: where class names repeat, they are told apart by their output number
    unique = len(set(predictor.labels)) == len(predictor.labels)
    outputs = {label if unique else f"{i}: {label}": p for i, (label, p) in enumerate(zip(predictor.labels, raw))}
    c2.plotly_chart(bars(outputs, t("teachable.chart_raw"), emotions=False), key="tm_raw")
    # float32, the precision the network computes in: no float64 noise digits (0.0022416228894144297)
    rows = [{"output": "class", "name": label, "probability": np.float32(p)} for label, p in zip(predictor.labels, raw)]
    if pd.isna(proba).any():
        c3.warning(t("teachable.all_ignored"))
    else:
        best = predictor.classes[int(proba.argmax())]
        title = t("teachable.chart_emotions", best=emotion_label(best), p=f"{proba.max():.0%}")
        c3.plotly_chart(bars(dict(zip(predictor.classes, proba)), title, emotions=True), key="tm_emotions")
        rows += [{"output": "emotion", "name": e, "probability": np.float32(p)} for e, p in zip(predictor.classes, proba)]
    c1.download_button(t("teachable.download_proba"), csv_bytes(pd.DataFrame(rows)),
                       file_name=f"{Path(up.name).stem}_teachable.csv", mime="text/csv", key="tm_dl_proba", on_click="ignore")


def save_section(upload: TeachableUpload, predictor, key: str) -> None:
    st.header(t("teachable.save_title"))
    saved_as = saved_name(predictor, key)
    if saved_as:
        st.success(t("teachable.saved", name=saved_as))
        return
    if predictor.format == "tfjs":
        st.caption(t("teachable.tfjs_saved_as_keras"))
    c1, c2 = st.columns([3, 1])
    name = c1.text_input(t("teachable.model_name"), value=f"teachable-{upload_stem(upload)}"[:60], key="tm_save_name",
                         help=t("teachable.model_name_help"))
    c2.write("")
    if c2.button(t("teachable.save_button"), key="tm_save"):
        try:
            entry = save_teachable(upload, predictor, name)
        except FerError as exc:
            show_error(exc)
        else:
            st.session_state.setdefault(SAVED, {})[_save_key(predictor, key)] = entry.name
            st.rerun()


SAVED = "tm_saved"  # the name each import and mapping was saved under in this session


def _save_key(predictor, key: str) -> tuple:
    return key, tuple(predictor.mapping.emotions)


def saved_name(predictor, key: str) -> str | None:
    """The name this import with this mapping was saved under in this session, if it was."""
    return st.session_state.get(SAVED, {}).get(_save_key(predictor, key))


def save_teachable(upload: TeachableUpload, predictor, name: str):
    return register_teachable(upload, predictor, name,
                              command=f"dashboard: Teachable Machine page (import of {upload.source})")


def imported_list() -> None:
    entries = [e for e in manifest_entries() if e.kind == "teachable"]
    if not entries:
        return
    with st.expander(t("teachable.imported", n=len(entries))):
        st.dataframe(pd.DataFrame([{
            t("teachable.col_model"): e.name,
            t("teachable.col_format"): format_label(e.extra.get("format", "keras")),
            t("teachable.col_emotions"): ", ".join(emotion_labels(e.classes)),
            t("teachable.col_mapping"): ", ".join(f"{k} → {emotion_label(v) if v else t('teachable.ignored_cell')}"
                                                  for k, v in (e.mapping or {}).items()),
            t("teachable.col_file"): e.path,
        } for e in entries]), hide_index=True)


def main() -> None:
    st.title(t("teachable.title"))
    st.caption(t("teachable.caption"))
    imported_list()
    chosen = choose_upload()
    if chosen is None:
        return
    upload, key = chosen
    try:
        with st.spinner(t("teachable.loading")):
            base = load_teachable_upload(key, upload)
    except FerError:  # not kept to be shown again after a visit to another page
        st.session_state.pop(SHOWN_UPLOAD, None)
        raise
    h, w = base.input_size
    st.success(t("teachable.loaded", source=shown_literally(upload.source), format=format_label(base.format), n=len(base.labels),
                 w=w, h=h))
    mapping = mapping_editor(base, key)
    unsaved = unsaved_name(upload, key)
    if not any(mapping.values()):  # e.g. "Class 1", "Class 2": nothing to score until mapped
        forget_unsaved(unsaved)  # Compare must not keep running an earlier mapping
        st.warning(t("teachable.map_them"))
        return
    try:
        predictor = base.remapped(mapping, name=unsaved)
    except FerError as exc:
        forget_unsaved(unsaved)
        show_error(exc)
        return
    if saved_name(predictor, key):
        forget_unsaved(unsaved)  # Compare lists the saved model alone, not a copy of it "(not saved)"
    else:
        remember_unsaved(predictor)
        st.caption(t("teachable.unsaved_note", name=unsaved))
    show_mapping(predictor, upload)
    try_section(predictor)
    save_section(upload, predictor, key)


run_page(main)
