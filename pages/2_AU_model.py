"""AU model: pick an AU source, train the explainable model, read its AU × emotion weights, save it."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from fer_core import au_table, config
from fer_core.emotions import SEVEN_EMOTIONS, SIX_EMOTIONS
from fer_core.errors import FerError
from fer_core.figures import plots
from fer_core.images import sample_per_class
from ui.common import (
    DATA_LAYOUT_HELP,
    au_table_from_bytes,
    dataset_listing,
    derived_tables,
    docker_status,
    entries_of,
    extract_with_cancel,
    load_au_table,
    load_predictor,
    page_setup,
    run_page,
    show_error,
    wait_for_extraction,
)

page_setup("nav.au_model", ":material/tune:")

BUNDLED = "Bundled FER2013 AU table"
EXTRACT = "Extract AUs from an image folder (embedded MediaPipe or OpenFace in Docker)"
BACKENDS = {"mediapipe": "Embedded MediaPipe (no install)", "openface-docker": "OpenFace 2 in Docker (the original method)"}
OPENFACE = "Import an OpenFace CSV"
KIND_NAMES = {"au-logreg": "Logistic regression (explainable, the default)",
              "au-gam": "Additive glass-box (EBM: a shape function per AU, a few AU pairs; minutes)",
              "au-mlp": "MLP 300-200-100-50 (the original study's network)"}


def _ordered(labels) -> list[str]:
    present = {x for x in labels if isinstance(x, str)}
    return [e for e in SEVEN_EMOTIONS if e in present]


def source_from_extraction() -> tuple[pd.DataFrame | None, str]:
    root = config.fer_split_dir("val")
    path = st.text_input("Image folder", value=str(root) if root.is_dir() else "",
                         help=DATA_LAYOUT_HELP, key="au_folder").strip()
    if not path:
        st.info(f"Type the path of a folder of face images. {DATA_LAYOUT_HELP}")
        return None, ""
    folder = str(Path(path).expanduser())
    per = st.number_input("Images per emotion (0 = all)", min_value=0, value=100, step=50, key="au_per",
                          help="The embedded extractor takes ~30 ms per image on one core; results are cached.")
    backend = st.radio("Extractor", list(BACKENDS), format_func=BACKENDS.get, horizontal=True, key="au_backend")
    ready = True
    if backend == "openface-docker":
        ready, message = docker_status()
        (st.success if ready else st.warning)(message)
        if not ready and "not present" in message and st.button("Pull the OpenFace image (about 2 GB)", key="au_pull"):
            pull_openface_image()
    key = f"{folder}|{per}|{backend}"
    tables: dict = st.session_state.setdefault("au_tables", {})
    c1, c2, _ = st.columns([1, 1, 3])
    start = c1.button("Extract AUs", type="primary", key="au_extract", disabled=not ready)
    c2.button("Cancel", key="au_cancel", help="Stops the extraction; images done so far are kept.")
    if start:
        listing = dataset_listing(folder)
        items = sample_per_class(listing.items, int(per))

        def keep(table: pd.DataFrame, cancelled: bool) -> None:
            tables[key] = {"table": table, "cancelled": cancelled, "total": len(items)}
            if not cancelled and not per and backend == "mediapipe":
                tables[folder] = tables[key]  # full folders are shown on the explorer page too

        extract_with_cancel(items, "Extracting AUs", keep, backend=backend, root=folder, skipped=listing.skipped)
    else:
        wait_for_extraction()  # a run stopped by a click may still be handing over its rows
    done = tables.get(key)
    if done is None:
        st.info("Press **Extract AUs** to measure the faces of this folder.")
        return None, ""
    table = done["table"]
    ok = int((table["success"] > 0).sum())
    msg = f"{ok:,} faces measured in {table['file'].nunique():,} of {done['total']:,} images."
    (st.warning if done["cancelled"] else st.success)(("Cancelled: " if done["cancelled"] else "") + msg)
    failed = table[table["success"] == 0]
    if not failed.empty:
        with st.expander(f"{len(failed):,} image(s) without a measured face"):
            st.dataframe(failed[["file", "label", "reason"]], hide_index=True)
    return table, folder


def pull_openface_image() -> None:
    from fer_core.measure.openface_docker import OpenFaceDocker

    with st.spinner("Pulling the OpenFace image…"):
        try:
            OpenFaceDocker().pull()
        except FerError as exc:
            show_error(exc)
            return
    docker_status.clear()
    st.rerun()


def choose_table() -> tuple[pd.DataFrame | None, str]:
    source = st.radio("AU source", (BUNDLED, EXTRACT, OPENFACE), key="au_source")
    if source == BUNDLED:
        tables = derived_tables()
        if not tables:
            st.warning("No bundled AU tables in data/ (expected data/fer2013_train_au.csv.gz); run `make data`.")
            return None, ""
        names = list(tables)
        choice = st.selectbox("Table", names, index=names.index("fer2013_train_au.csv.gz")
                              if "fer2013_train_au.csv.gz" in names else 0, key="au_table")
        return load_au_table(tables[choice]), f"data/{choice}"
    if source == EXTRACT:
        return source_from_extraction()
    study = config.openface_study_table()
    options = ["Upload a CSV"] + ([f"The original study's table ({study})"] if study.is_file() else [])
    pick = st.radio("OpenFace table", options, horizontal=True, key="au_openface")
    if pick != "Upload a CSV":
        return load_au_table(study), str(study.name)
    up = st.file_uploader("OpenFace CSV (FaceLandmarkImg output, or a merged table with a label column)",
                          type=["csv"], key="au_csv")
    if up is None:
        st.info("Upload a CSV with columns AU01_r … AU45_r and a label/emotion column "
                "(emotion names or the study's codes 0–5).")
        return None, ""
    return au_table_from_bytes(up.getvalue(), up.name), up.name


def show_model(model, key: str) -> None:
    """Metrics, per-emotion accuracy, confusion matrix and the coefficient heatmap of a model."""
    m = model.holdout
    data = model.info.get("data", {})
    c1, c2, c3, c4 = st.columns(4)
    if m:
        lo, hi = m.accuracy_ci95
        c1.metric("Held-out accuracy", f"{m.accuracy:.1%}", help=f"95% bootstrap interval {lo:.1%}–{hi:.1%}")
        c2.metric("Macro F1", f"{m.macro_f1:.3f}")
        c3.metric("Held-out faces", f"{m.n:,}", help="Scored, never fitted on.")
    c4.metric("Faces in the table", f"{data.get('rows', 0):,}",
              help="All usable faces: the model was refitted on them after the held-out scoring"
                   + (f" ({data['sample']})." if data.get("sample") else "."))
    if m:
        left, right = st.columns(2)
        left.plotly_chart(plots.per_class_accuracy_bars(m.per_class, overall=m.accuracy), key=f"{key}_per_class")
        right.plotly_chart(plots.confusion_heatmap(m.confusion, m.labels), key=f"{key}_confusion")
    if model.kind == "au-logreg":
        st.plotly_chart(plots.coefficient_heatmap(model.weights[0], model.classes, model.au_columns),
                        key=f"{key}_coef")
        st.caption("Red: a higher AU makes the emotion more likely; blue: less likely. Weights are per "
                   "standard deviation of each AU, so cells compare across AUs.")
    elif model.kind == "au-gam":
        st.plotly_chart(plots.gam_shape_functions(model), key=f"{key}_shapes")
        pairs = ", ".join(f"{a.split('_')[0]} × {b.split('_')[0]}" for a, b in model.pairs)
        st.caption("Each line: how one emotion's score moves with the AU's intensity (above 0: the AU favours "
                   "that emotion). A face's score is the sum of these curves"
                   + (f" and of a few pairwise terms: {pairs}." if pairs else "."))
    else:
        st.info("An MLP has no single weight per AU and emotion; its predictions are explained per face "
                "(Try it page) by how much each AU changes the scores when set to its average.")


def train_section(table: pd.DataFrame, origin: str) -> None:
    present = _ordered(table["label"].dropna().unique()) if "label" in table.columns else []
    if len(present) < 2:
        st.warning("This table has fewer than two labelled emotions; training needs labels "
                   "(a label or emotion column, or emotion folders when extracting).")
        return
    st.subheader("Train")
    classes = st.multiselect("Emotions", present, default=[e for e in SIX_EMOTIONS if e in present] or present,
                             key="au_classes")
    kind = st.radio("Model kind", list(KIND_NAMES), format_func=KIND_NAMES.get, horizontal=True, key="au_kind")
    with st.expander("Settings"):
        balanced = st.checkbox("Balanced class weights (logistic regression)", value=False, key="au_balanced",
                               help="Weights each emotion by 1/size, so rare classes like disgust count more.")
        holdout = st.slider("Held-out share for the reported metrics", 0.1, 0.5, 0.25, 0.05, key="au_holdout")
        seed = st.number_input("Random seed", 0, 10_000, 0, key="au_seed")
    if st.button("Train the AU model", type="primary", key="au_train_button"):
        if len(classes) < 2:
            show_error("pick at least two emotions")
            return
        bar = st.progress(0.0, text="Training…")
        start = time.perf_counter()
        try:
            model = fit_model(table, classes, kind, balanced, holdout, int(seed), origin,
                              lambda done, total: bar.progress(done / total, text=f"Training… step {done} of {total}"))
        except FerError as exc:  # an unusable table: the same line the CLI's train-au prints
            bar.empty()
            st.session_state.pop("au_train", None)
            show_error(exc)
            return
        bar.empty()
        st.session_state["au_train"] = {"model": model, "origin": origin, "seconds": time.perf_counter() - start,
                                        "saved_as": None}


def fit_model(table, classes, kind, balanced, holdout, seed, origin, progress):
    from fer_core.predictors.au_models import fit_au_model

    if kind == "au-gam":
        from fer_core.predictors.au_gam import fit_au_gam

        return fit_au_gam(table, classes, holdout=holdout, seed=seed, description=origin, progress=progress)
    return fit_au_model(table, classes, kind=kind, class_weight="balanced" if balanced else None,
                        holdout=holdout, seed=seed, description=origin, progress=progress)


def result_section() -> None:
    result = st.session_state.get("au_train")
    if not result:
        return
    model = result["model"]
    st.subheader("Result")
    st.caption(f"{KIND_NAMES[model.kind]} on {result['origin']}, emotions: {', '.join(model.classes)}; "
               f"trained in {result['seconds']:.1f} s.")
    data = model.info.get("data", {})
    if data.get("left_out") or data.get("sample"):
        total = data.get("rows", 0) + sum(data.get("left_out", {}).values())
        notes = [au_table.left_out_summary(data["left_out"], total)] if data.get("left_out") else []
        notes += [f"fitted on {data['sample']}"] if data.get("sample") else []
        text = "; ".join(notes)
        st.caption(text[0].upper() + text[1:] + ".")
    show_model(model, "trained")
    st.subheader("Save")
    if result.get("saved_as"):
        st.success(f"Saved as **{result['saved_as']}**: it is listed on the home page and usable on Try it.")
        return
    short = model.kind.removeprefix("au-")
    stem = Path(str(result["origin"]).split("|")[0]).name.split(".")[0].replace("_au", "")
    default = f"au-{short}-{stem}"[:60].replace(" ", "-")
    c1, c2 = st.columns([3, 1])
    name = c1.text_input("Model name", value=default, key="au_save_name",
                         help="Letters, digits, '-' and '_'; saved as models/<name>.json")
    if c2.button("Save model", key="au_save"):
        try:
            entry = save_au_model(model, name, str(result["origin"]))
        except FerError as exc:
            show_error(exc)
        else:
            result["saved_as"] = entry.name
            st.rerun()


def save_au_model(model, name: str, origin: str):
    from fer_core.manifest import Metrics
    from fer_core.predictors.registry import save_and_register

    holdout = model.info.get("settings", {}).get("holdout", 0.25)
    model.info.setdefault("command", f"dashboard: AU model page ({origin})")
    return save_and_register(model, name=name, kind=model.kind, classes=model.classes,
                             metrics=Metrics.from_report(model.holdout, f"{holdout:.0%} of {origin} held out"),
                             command=model.info["command"], origin="dashboard", description=origin)


def inspect_section() -> None:
    entries = entries_of(explains=True)
    if not entries:
        return
    with st.expander("Inspect a saved AU model"):
        names = [e.name for e in entries]
        name = st.selectbox("Model", names, key="au_inspect")
        entry = entries[names.index(name)]
        try:
            show_model(load_predictor(entry).au_model(), f"saved_{name}")
        except FerError as exc:
            show_error(exc)


def main() -> None:
    st.title("AU model")
    st.caption("A multinomial logistic regression over 17 Action Unit intensities: its weights say "
               "which facial movements speak for which emotion.")
    inspect_section()
    table, origin = choose_table()
    if table is not None:
        selection = au_table.select(table)
        note = "" if not selection.left_out else f" ({selection.summary()})"
        st.caption(f"{len(table):,} rows, {selection.n:,} usable faces with measured AUs{note}.")
        train_section(table, origin)
    result_section()


run_page(main)
