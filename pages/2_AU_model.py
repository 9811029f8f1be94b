"""AU model: pick an AU source, train the explainable model, read its AU × emotion weights, save it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from fer_core import au_table, config, i18n
from fer_core.au_table import AU_CODES, AU_COLUMNS
from fer_core.emotions import SEVEN_EMOTIONS, SIX_EMOTIONS
from fer_core.errors import FerError, one_line
from fer_core.evaluation.metrics import degenerate_model_warning, share_text
from fer_core.figures import plots
from fer_core.fileio import csv_bytes
from fer_core.i18n import emotion_label, emotion_labels, t
from fer_core.images import VIDEO_IN_FOLDER, sample_per_class
from fer_core.measure import ray_engine
from fer_core.measure.extract import crop_like_no_face
from fer_core.predictors.au_models import TRAINABLE_KINDS
from ui.common import (
    TABLE_TYPES,
    VIDEO_FPS_CHOICES,
    au_table_from_bytes,
    caption_aus_read,
    data_layout_help,
    dataset_listing,
    default_unless_chosen,
    derived_tables,
    docker_status,
    embedded_au_caveat,
    entries_of,
    extract_with_cancel,
    forget_docker_status,
    forget_unsaved,
    kept_choice,
    load_au_table,
    load_predictor,
    metric_row,
    openface_uploads_table,
    page_setup,
    remember_unsaved,
    run_page,
    show_crops_hint,
    show_error,
    show_evaluation,
    shown_literally,
    translated_reason,
    wait_for_extraction,
    warn_passed_over,
)

page_setup("nav.au_model")

# The AU sources and the OpenFace choice keep their English names as widget values (tests and
# bookmarks name them); people read them through the format functions below.
BUNDLED = "Bundled FER2013 AU table"
EXTRACT = "Extract AUs from an image folder (embedded MediaPipe or OpenFace in Docker)"
OPENFACE = "Import an OpenFace CSV"
UPLOAD = "Upload a CSV"
STUDY = "The original study's table"
BACKENDS = ("mediapipe", "openface-docker")
ENGINES = ("local", "ray")  # offered only when RAY_ADDRESS names a cluster that answers
KINDS = TRAINABLE_KINDS
AU_CHOICES = ("all", "upper", "chosen")


def source_name(source: str) -> str:
    return {BUNDLED: t("au_model.source_bundled"), EXTRACT: t("au_model.source_extract"),
            OPENFACE: t("au_model.source_openface")}[source]


def backend_name(backend: str) -> str:
    return {"mediapipe": t("au_model.backend_mediapipe"), "openface-docker": t("au_model.backend_docker")}[backend]


def engine_name(engine: str) -> str:
    return {"local": t("au_model.engine_local"), "ray": t("au_model.engine_ray")}[engine]


def kind_name(kind: str) -> str:
    """A kind as the choice offers it, with what sets it apart ("explainable, the default")."""
    return {"au-logreg": t("au_model.kind_logreg"), "au-gam": t("au_model.kind_gam"),
            "au-mlp": t("au_model.kind_mlp")}[kind]


def kind_short_name(kind: str) -> str:
    """A kind named in a sentence about a trained model: the choice above already said the rest."""
    return {"au-logreg": t("au_model.short_logreg"), "au-gam": t("au_model.short_gam"),
            "au-mlp": t("au_model.short_mlp")}.get(kind, kind)


def _ordered(labels) -> list[str]:
    present = {x for x in labels if isinstance(x, str)}
    return [e for e in SEVEN_EMOTIONS if e in present]


def source_from_extraction() -> tuple[pd.DataFrame | None, str]:
    root = config.fer_split_dir("val")
    path = st.text_input(t("au_model.image_folder"), value=str(root) if root.is_dir() else "",
                         help=data_layout_help(), key=kept_choice("au_folder")).strip()
    if not path:
        st.info(t("au_model.type_folder", layout=data_layout_help()))
        return None, ""
    folder = str(Path(path).expanduser())
    per = st.number_input(t("au_model.per_emotion"), min_value=0, value=100, step=50, key=kept_choice("au_per"),
                          help=t("au_model.per_emotion_help"))
    backend = st.radio(t("au_model.extractor"), BACKENDS, format_func=backend_name, horizontal=True,
                       key=kept_choice("au_backend"))
    ray_address = None
    if backend == "mediapipe" and (address := ray_engine.cluster_address()):
        engine = st.radio(t("au_model.engine"), ENGINES, format_func=engine_name, horizontal=True, key=kept_choice("au_engine"),
                          help=t("au_model.engine_help", address=address))
        ray_address = address if engine == "ray" else None
    crops = False
    if backend == "mediapipe" and ray_address is None:  # as extract --crops (the local engine only)
        crops = st.toggle(t("au_model.crops_on"), key=kept_choice("au_crops"), help=t("au_model.crops_help"))
    video_fps = None
    if backend == "mediapipe" and ray_address is None and not crops:  # its videos, as extract FOLDER measures them
        video_fps = st.select_slider(t("au_model.video_fps"), VIDEO_FPS_CHOICES, value=2, key=kept_choice("au_video_fps"),
                                     help=t("au_model.video_fps_help"))
    ready = True
    if backend == "openface-docker":
        ready, message = docker_status()
        (st.success if ready else st.warning)(i18n.message(message))
        if not ready and "not present" in message and st.button(t("au_model.pull"), key="au_pull"):
            pull_openface_image()
    key = f"{folder}|{per}|{backend}|{video_fps}|{crops}"
    tables: dict = st.session_state.setdefault("au_tables", {})
    c1, c2, _ = st.columns([1, 1, 3])
    start = c1.button(t("au_model.extract"), type="primary", key="au_extract", disabled=not ready)
    c2.button(t("au_model.cancel"), key="au_cancel", help=t("au_model.cancel_help"))
    if start:
        listing = dataset_listing(folder)
        items = sample_per_class(listing.items, int(per))

        def keep(table: pd.DataFrame, cancelled: bool) -> None:
            # the folder's skipped files have rows too (with their reason): counted among its images;
            # a folder or a video passed over has a row too ("Sad Faces/", "clip.mp4"), but is no image
            files = [f for f in listing.skipped if not f.file.endswith("/") and f.reason != VIDEO_IN_FOLDER]
            # images without a face that Face crops could measure (the local MediaPipe engine's switch)
            crop_like = (crop_like_no_face(table, folder) if backend == "mediapipe" and ray_address is None
                         and not crops else [])
            tables[key] = {"table": table, "cancelled": cancelled, "total": len(items) + len(files), "fps": video_fps,
                           "crop_like": len(crop_like)}
            # full folders are shown on the explorer too, measured as it measures them (not as crops),
            if not cancelled and not per and backend == "mediapipe" and not crops:
                pictures = au_table.video_names(table).isna()  # as it lists them: images (its videos are not read there)
                tables[folder] = {**tables[key], "table": table[pictures].reset_index(drop=True)}

        extract_with_cancel(items, t("au_model.extracting"), keep, backend=backend, root=folder, skipped=listing.skipped,
                            ray_address=ray_address, video_fps=video_fps, crops=crops)
    else:
        wait_for_extraction()  # a run stopped by a click may still be handing over its rows
    done = tables.get(key)
    if done is None:
        st.info(t("au_model.press_extract"))
        return None, ""
    table = done["table"]
    folders = au_table.passed_over(table)  # and videos: no images
    names = au_table.video_names(table)
    clips = names.notna()
    photos = table[~folders & ~clips]
    said = []
    if len(photos) or not clips.any():  # a folder of videos alone: "0 faces measured in 0 of 0 images" says nothing
        said.append(t("au_model.measured", faces=f"{int((photos['success'] > 0).sum()):,}",
                      # the images with a face: "37 faces measured in 51 of 51 images" when 14 had none
                      images=f"{photos.loc[photos['success'] > 0, 'file'].nunique():,}", total=f"{done['total']:,}"))
    if clips.any():
        frames = table[clips & table["time_s"].notna()]
        unreadable = int(names[clips & table["time_s"].isna()].nunique())
        said.append(t("au_model.measured_videos", videos=f"{names[clips].nunique():,}",
                      frames=f"{len(frames.groupby(['file', 'time_s'])):,}", faces=f"{int((frames['success'] > 0).sum()):,}",
                      fps=f"{done.get('fps') or 0:g}")
                    + (" " + t("au_model.videos_unreadable", n=f"{unreadable:,}") if unreadable else ""))
    msg = " ".join(said)
    if done["cancelled"]:
        st.warning(t("au_model.cancelled", message=msg))
    else:
        st.success(msg)
    warn_passed_over(table)
    show_crops_hint(done.get("crop_like", 0))
    unmeasured = (table["success"] == 0) & ~folders
    for rows, title, columns in ((table[unmeasured & ~clips], "au_model.without_face", ["file", "label", "reason"]),
                                 (table[unmeasured & clips], "au_model.frames_without_face",
                                  ["file", "time_s", "label", "reason"])):
        if rows.empty:  # images apart from a video's frames (and a video that could not be read)
            continue
        with st.expander(t(title, n=f"{len(rows):,}")):
            rows = rows.assign(reason=[translated_reason(f, r) for f, r in zip(rows["file"], rows["reason"])])
            st.dataframe(rows[columns].rename(columns={
                "file": t("au_model.col_file"), "label": t("au_model.col_label"), "reason": t("au_model.col_reason"),
                "time_s": t("au_model.col_time")}), hide_index=True)
    st.download_button(t("au_model.download_table"), csv_bytes(table),
                       file_name=f"{Path(folder).name or 'images'}_au.csv", mime="text/csv", key="au_table_csv",
                       help=t("au_model.download_table_help"), on_click="ignore")
    return table, folder


def pull_openface_image() -> None:
    from fer_core.measure.openface_docker import OpenFaceDocker

    with st.spinner(t("au_model.pulling")):
        try:
            OpenFaceDocker().pull()
        except FerError as exc:
            show_error(exc)
            return
    forget_docker_status()
    st.rerun()


def choose_table() -> tuple[pd.DataFrame | None, str]:
    source = st.radio(t("au_model.source"), (BUNDLED, EXTRACT, OPENFACE), format_func=source_name, key=kept_choice("au_source"))
    if source == BUNDLED:
        tables = derived_tables()
        if not tables:
            st.warning(t("au_model.no_bundled"))
            return None, ""
        names = list(tables)
        choice = st.selectbox(t("au_model.table"), names, index=names.index("fer2013_train_au.csv.gz")
                              if "fer2013_train_au.csv.gz" in names else 0, key=kept_choice("au_table"))
        return load_au_table(tables[choice]), f"data/{choice}"
    if source == EXTRACT:
        return source_from_extraction()
    study = config.openface_study_table()
    options = [UPLOAD] + ([STUDY] if study.is_file() else [])
    pick = st.radio(t("au_model.openface_table"), options, horizontal=True, key=kept_choice("au_openface"),
                    format_func=lambda o: t("au_model.upload_csv") if o == UPLOAD else t("au_model.study_table",
                                                                                         path=str(study)))
    if pick != UPLOAD:
        return load_au_table(study), str(study.name)
    ups = st.file_uploader(t("au_model.openface_uploader"), type=[*TABLE_TYPES, "zip"], key="au_csv",
                           accept_multiple_files=True)
    if not ups:
        st.info(t("au_model.upload_info"))
        return None, ""
    if len(ups) == 1 and not ups[0].name.lower().endswith(".zip"):
        return au_table_from_bytes(ups[0].getvalue(), ups[0].name), ups[0].name
    return openface_uploads_table([(up.name, up.getvalue()) for up in ups]), (
        ups[0].name if len(ups) == 1 else t("au_model.uploads_name", n=len(ups)))


def show_model(model, key: str, name: str) -> None:
    """Metrics, per-emotion accuracy, confusion matrix and the coefficient heatmap of a model."""
    m = model.holdout
    data = model.info.get("data", {})
    c1, c2, c3, c4 = st.columns(4)
    rows = int(data.get("rows", 0))
    if m:
        lo, hi = m.accuracy_ci95
        c1.metric(t("au_model.holdout_accuracy"), share_text(m.accuracy, 1, percent=True),
                  help=t("au_model.ci_help", lo=share_text(lo, 1, percent=True), hi=share_text(hi, 1, percent=True)))
        c2.metric(t("au_model.macro_f1"), f"{m.macro_f1:.3f}")
        c3.metric(t("au_model.holdout_faces"), f"{m.n:,}", help=t("au_model.holdout_faces_help"))
    if data.get("network_head"):  # an AU-bottleneck network's emotion layer: no table, no refit
        c4.metric(t("au_model.training_faces"), f"{rows:,}",
                  help=t("au_model.network_head_help", fitted=f"{rows - (m.n if m else 0):,}",
                         held=f"{m.n if m else 0:,}"))
    else:
        split = t("au_model.split_help", fitted=f"{rows - m.n:,}", held=f"{m.n:,}") if m else ""
        sample = t("au_model.sample_help", sample=data["sample"]) if data.get("sample") else ""
        c4.metric(t("au_model.usable_faces"), f"{rows:,}", help=t("au_model.usable_faces_help", split=split,
                                                                    sample=sample))
    if m:
        # the interval in sight, not only in the "?": 40.0 % on 25 held-out faces is 23-59 %
        st.caption(t("au_model.ci_caption", lo=share_text(m.accuracy_ci95[0], 1, percent=True),
                     hi=share_text(m.accuracy_ci95[1], 1, percent=True),
                     n=f"{m.n:,}"))
        left, right = st.columns(2)
        left.plotly_chart(plots.per_class_accuracy_bars(m.per_class, overall=m.accuracy,
                                                        title=t("au_model.per_class_title")), key=f"{key}_per_class")
        right.plotly_chart(plots.confusion_heatmap(m, title=t("au_model.confusion_title"), compact=True),
                           key=f"{key}_confusion")
    caption_aus_read(model)
    if model.kind == "au-logreg":
        st.plotly_chart(plots.coefficient_heatmap(model.weights[0], model.classes, model.au_columns,
                                                  title=t("au_model.coef_title")), key=f"{key}_coef")
        st.caption(t("au_model.coef_caption"))
        st.download_button(t("au_model.download_weights"), csv_bytes(model.weights_frame()),
                           file_name=f"{name}_weights.csv", mime="text/csv", key=f"{key}_weights",
                           icon=":material/download:", help=t("au_model.download_weights_help"), on_click="ignore")
    elif model.kind == "au-gam":
        st.plotly_chart(plots.gam_shape_functions(model, title=t("au_model.gam_title")), key=f"{key}_shapes")
        pairs = ", ".join(f"{a.split('_')[0]} × {b.split('_')[0]}" for a, b in model.pairs)
        st.caption(t("au_model.gam_caption_pairs", pairs=pairs) if pairs else t("au_model.gam_caption"))
        if model.pairs:
            show_gam_pair(model, key)
    else:
        st.info(t("au_model.mlp_info"))
    if "mediapipe" in ((getattr(model, "info", None) or {}).get("data") or {}).get("source", ()):
        caveat = embedded_au_caveat(getattr(model, "au_columns", None))
        if caveat:
            st.caption(caveat)


def show_gam_pair(model, key: str) -> None:
    """One of a GAM's pairwise terms for one emotion, as a surface over the two AUs' intensities:
    the part of its explanation the shape functions do not draw."""
    c1, c2 = st.columns(2)
    pair = c1.selectbox(t("au_model.pair_choice"), model.pairs, key=f"{key}_gam_pair",
                        format_func=lambda p: f"{au_table.au_label(p[0])} × {au_table.au_label(p[1])}")
    emotion = c2.selectbox(t("au_model.pair_emotion"), model.classes, format_func=emotion_label,
                           key=f"{key}_gam_pair_emotion")
    st.plotly_chart(plots.gam_pair_surface(model, *pair, emotion), key=f"{key}_pair_surface")
    st.caption(t("au_model.pair_caption"))


def train_section(table: pd.DataFrame, origin: str) -> None:
    present = _ordered(table["label"].dropna().unique()) if "label" in table.columns else []
    if len(present) < 2:
        st.warning(t("au_model.too_few_labels"))
        return
    st.header(t("au_model.train_header"))
    default_unless_chosen("au_classes", present, [e for e in SIX_EMOTIONS if e in present] or present)
    classes = st.multiselect(t("au_model.emotions"), present, format_func=emotion_label, key=kept_choice("au_classes"),
                             placeholder=t("common.choose_options"))
    kind = st.radio(t("au_model.kind"), KINDS, format_func=kind_name, horizontal=True, key=kept_choice("au_kind"))
    with st.expander(t("au_model.settings")):
        balanced = st.checkbox(t("au_model.balanced"), value=False, key=kept_choice("au_balanced"), help=t("au_model.balanced_help"))
        holdout = st.slider(t("au_model.holdout_share"), 0.1, 0.5, 0.25, 0.05, key=kept_choice("au_holdout"))
        seed = st.number_input(t("au_model.seed"), 0, 10_000, 0, key=kept_choice("au_seed"))
        group_by = st.text_input(t("au_model.group_by"), key=kept_choice("au_group_by"), placeholder=r"^(P\d+)",
                                 help=t("au_model.group_by_help")).strip() or None
        columns = choose_aus()
        pairs = None
        if kind == "au-gam":
            pairs = st.number_input(t("au_model.pairs"), min_value=0, max_value=max(0, len(columns) * (len(columns) - 1) // 2),
                                    value=None, step=1, placeholder=t("au_model.pairs_default"),
                                    key=kept_choice("au_pairs"), help=t("au_model.pairs_help"))
    if st.button(t("au_model.train"), type="primary", key="au_train_button"):
        if len(classes) < 2:
            show_error(t("au_model.two_emotions"))
            return
        if not columns:
            show_error(t("au_model.one_au"))
            return
        bar = st.progress(0.0, text=t("au_model.training"))
        start = time.perf_counter()
        step = {"done": 0, "total": 3}

        def on_step(done: int, total: int) -> None:
            step.update(done=done, total=total)
            bar.progress(done / total, text=t("au_model.training_step", done=done, total=total))

        def on_epoch(epoch: int, most: int) -> None:  # the MLP's epochs, as scikit-learn runs them
            stage = t("au_model.stage_holdout") if step["done"] < 1 else t("au_model.stage_refit")
            bar.progress(step["done"] / step["total"], text=t("au_model.training_epoch", stage=stage, epoch=epoch,
                                                               most=most))

        def on_bag(bag: int, bags: int) -> None:  # the GAM's bagged fits, as interpret boosts them
            stage = t("au_model.stage_holdout") if step["done"] < 1 else t("au_model.stage_refit")
            bar.progress(step["done"] / step["total"], text=t("au_model.training_bag", stage=stage, bag=bag,
                                                               bags=bags, seconds=f"{time.perf_counter() - start:.0f}"))

        try:
            model = fit_model(table, classes, kind, balanced, holdout, int(seed), origin, on_step, on_epoch, on_bag,
                              columns=columns, pairs=pairs, group_by=group_by)
        except FerError as exc:  # an unusable table: the same line the CLI's train-au prints
            bar.empty()
            st.session_state.pop("au_train", None)
            show_error(exc)
            return
        bar.empty()
        st.session_state["au_train"] = {"model": model, "origin": origin, "seconds": time.perf_counter() - start,
                                        "saved_as": None, "table": table_key(table, origin),
                                        "settings": training_settings(), "name": default_name(model, origin)}
        from fer_core.predictors.au_models import AUPredictor

        remember_unsaved(AUPredictor(model, name=default_name(model, origin)))


def choose_aus() -> tuple[str, ...]:
    """The AU columns the model may use, as train-au's --aus: all, those a mask leaves visible
    (a model for masked faces), or the person's own choice."""
    from fer_core.masks import VISIBLE_AUS
    from fer_core.predictors.au_models import au_columns_from

    choice = st.radio(t("au_model.aus"), AU_CHOICES, format_func=lambda c: t(f"au_model.aus_{c}"), horizontal=True,
                      key=kept_choice("au_aus"), help=t("au_model.aus_help", upper=", ".join(VISIBLE_AUS)))
    if choice != "chosen":
        return au_columns_from(choice)
    default_unless_chosen("au_aus_list", AU_CODES, list(VISIBLE_AUS))
    codes = st.multiselect(t("au_model.aus_list"), AU_CODES, format_func=au_table.au_label, key=kept_choice("au_aus_list"),
                           placeholder=t("common.choose_options"))
    return au_columns_from(",".join(c for c in AU_CODES if c in codes)) if codes else ()  # in the table's order


def fit_model(table, classes, kind, balanced, holdout, seed, origin, progress, epoch_progress, bag_progress=None,
              columns=AU_COLUMNS, pairs=None, group_by=None):
    from fer_core.predictors.au_models import fit_au

    # in the emotions' own order, whatever order they were picked in: train-au --classes reads them
    # so, and the stratified split, hence the held-out score, follows the order
    classes = [c for c in SEVEN_EMOTIONS if c in set(classes)]
    holdout = round(float(holdout), 4)  # the slider's 0.05 x 6 is 0.30000000000000004, the command's 0.3

    # the GAM's bags in this process (n_jobs 1), so that its bar moves
    return fit_au(table, classes, kind=kind, class_weight="balanced" if balanced else None, holdout=holdout,
                  seed=seed, description=origin, progress=progress, columns=columns, epoch_progress=epoch_progress,
                  bag_progress=bag_progress, interactions=None if pairs is None else int(pairs), group_by=group_by)


def default_name(model, origin: str) -> str:
    """The name the save box proposes (and Compare shows for the unsaved model)."""
    short = model.kind.removeprefix("au-")
    stem = Path(str(origin).split("|")[0]).name.split(".")[0].replace("_au", "")
    return f"au-{short}-{stem}"[:60].replace(" ", "-")


def stamp(model, origin: str) -> None:
    """Record how the model was made, as its saved file and its download both carry it: the page,
    and the train-au command that fits the same way on that table (TABLE: the table trained on)."""
    from fer_core.predictors.au_models import train_au_command

    model.info.setdefault("command", f"dashboard: AU model page ({origin}); the same fit: {train_au_command(model)}")


def model_json(model, origin: str) -> bytes:
    """The model file exactly as saving writes it, stamped with how it was made as a save stamps it."""
    stamp(model, origin)
    return model.to_bytes()


def training_settings() -> tuple:
    """The training choices as drawn on this run (emotions, kind, balanced, hold-out, seed, AUs, a
    GAM's pairs): a result of other choices says so, rather than read as the current ones'. A
    choice the fit does not read (the AU list unless "Choose…", the pairs unless a GAM) is kept for
    when it is drawn again, so it is not compared."""
    state = st.session_state
    return tuple(str(state.get(k)) for k in ("au_classes", "au_kind", "au_balanced", "au_holdout", "au_seed", "au_aus",
                                             "au_group_by")) + (
        str(state.get("au_aus_list")) if state.get("au_aus") == "chosen" else "",
        str(state.get("au_pairs")) if state.get("au_kind") == "au-gam" else "")


def table_key(table: pd.DataFrame, origin: str) -> str:
    """What names a table's content: a model trained on one is told apart from the table chosen
    now, even under the same file name."""
    return f"{origin}|{len(table)}|{int(pd.util.hash_pandas_object(table, index=False).sum())}"


def result_section(table: pd.DataFrame | None, origin: str) -> None:
    result = st.session_state.get("au_train")
    if not result:
        return
    model = result["model"]
    st.header(t("au_model.result_header"))
    if table is not None and result.get("table") != table_key(table, origin):  # hashed only with a result
        st.info(t("au_model.other_table", origin=shown_literally(result["origin"])), icon=":material/history:")
    elif table is not None and result.get("settings") not in (None, training_settings()):
        st.info(t("au_model.other_settings"), icon=":material/history:")
    st.caption(t("au_model.result_caption", kind=kind_short_name(model.kind), origin=shown_literally(result["origin"]),
                 emotions=", ".join(emotion_labels(model.classes)), seconds=f"{result['seconds']:.1f}"))
    data = model.info.get("data", {})
    if data.get("left_out") or data.get("sample"):
        total = data.get("rows", 0) + sum(data.get("left_out", {}).values())
        notes = [au_table.left_out_summary(data["left_out"], total)] if data.get("left_out") else []
        notes += [note] if (note := au_table.other_emotions_note(data.get("other_emotions") or {},
                                                                 t("au_model.emotions_choice"))) else []
        notes += [t("au_model.fitted_on", sample=data["sample"])] if data.get("sample") else []
        text = "; ".join(notes)
        st.caption(text[0].upper() + text[1:] + ".")
    videos = data.get("videos")
    if isinstance(videos, dict) and videos.get("whole"):
        st.caption(t("au_model.videos_whole", held=f"{videos['held_out']:,}", videos=f"{videos['videos']:,}",
                     share=f"{videos['held_out_share']:.0%}"))
        if isinstance(per := videos.get("per_video"), dict):
            lo, hi = per["accuracy_ci95"]
            st.caption(t("au_model.videos_per_video", accuracy=share_text(per['accuracy'], 1, percent=True), n=f"{per['n']:,}",
                         lo=share_text(lo, 1, percent=True), hi=share_text(hi, 1, percent=True)))
    elif isinstance(videos, dict):
        st.warning(t("au_model.videos_by_rows", videos=f"{videos['videos']:,}"), icon=":material/warning:")
    elif isinstance(participants := data.get("held_out_videos"), str):  # --group-by's whole participants
        st.caption(shown_literally(participants))
    show_model(model, "trained", default_name(model, result["origin"]))
    st.header(t("au_model.save_header"))
    warning = degenerate_model_warning(model.holdout, advice="au") if model.holdout else None
    if warning:
        st.warning(warning, icon=":material/warning:")
    name = default_name(model, result["origin"])
    if "json" not in result:
        result["json"] = model_json(model, str(result["origin"]))
    st.download_button(t("au_model.download_model"), result["json"], file_name=f"{name}.json",
                       mime="application/json", key="au_model_json", help=t("au_model.download_model_help"), on_click="ignore")
    if result.get("saved_as"):
        st.success(t("au_model.saved_as", name=result["saved_as"]))
        return
    st.caption(t("au_model.compare_unsaved", name=shown_literally(name)))
    c1, c2 = st.columns([3, 1])
    name = c1.text_input(t("au_model.model_name"), value=name, key="au_save_name", help=t("au_model.model_name_help"))
    if c2.button(t("au_model.save"), key="au_save"):
        try:
            entry = save_au_model(model, name, str(result["origin"]))
        except FerError as exc:
            show_error(exc)
        else:
            result["saved_as"] = entry.name
            forget_unsaved(default_name(model, result["origin"]))  # Compare lists the saved model alone
            st.rerun()


def save_au_model(model, name: str, origin: str):
    from fer_core.manifest import Metrics
    from fer_core.predictors.au_models import held_out_description
    from fer_core.predictors.registry import save_and_register

    settings = model.info.get("settings", {})
    stamp(model, origin)
    held_out = held_out_description(origin, settings.get("holdout", 0.25), settings.get("seed"),
                                    model.info.get("data", {}).get("videos"), group_by=settings.get("group_by"),
                                    sample=model.info.get("data", {}).get("sample"))
    return save_and_register(model, name=name, kind=model.kind, classes=model.classes,
                             metrics=Metrics.from_report(model.holdout, held_out),
                             command=model.info["command"], origin="dashboard", description=origin)


def inspect_section() -> None:
    entries = entries_of(explains=True)
    if not entries:
        return
    with st.expander(t("au_model.inspect")):
        names = [e.name for e in entries]
        name = st.selectbox(t("au_model.model"), names, key=kept_choice("au_inspect"))
        entry = entries[names.index(name)]
        try:
            show_model(load_predictor(entry).au_model(), f"saved_{name}", name)
        except FerError as exc:
            show_error(exc)


def apply_section(table: pd.DataFrame, origin: str) -> None:
    """Every row of the chosen table through a saved AU model, as ``predict --au-table`` does: the
    emotions of a video's or an unlabelled folder's faces, drawn over time and for download."""
    from fer_core.pipeline import predict_table

    entries = entries_of(inputs="aus")
    if not entries:
        return
    st.header(t("au_model.apply_header"))
    st.caption(t("au_model.apply_caption"))
    names = [e.name for e in entries]
    name = st.selectbox(t("au_model.model"), names, key=kept_choice("au_apply_model"))
    if st.button(t("au_model.apply_button"), key="au_apply_button"):
        bar = st.progress(0.0, text=t("au_model.applying"))
        try:
            predictor = load_predictor(entries[names.index(name)])
            answers = predict_table(table, predictor,
                                    progress=lambda done, total: bar.progress(done / total, text=t("au_model.applying")))
        except FerError as exc:
            bar.empty()
            show_error(exc)
            return
        bar.empty()
        try:  # the answers stand whether or not the table's labels can score them
            scores = scored_on(table, predictor)
        except FerError as exc:
            scores = one_line(exc)
        st.session_state["au_applied"] = {"table": table_key(table, origin), "model": name, "answers": answers,
                                          "scores": scores}
    applied = st.session_state.get("au_applied")
    if not applied or applied["model"] != name or applied["table"] != table_key(table, origin):
        return
    answers = applied["answers"]
    judged = answers["emotion"].notna()
    counts = answers.loc[judged, "emotion"].value_counts()
    st.caption(t("au_model.applied_caption", rows=f"{len(answers):,}", judged=f"{int(judged.sum()):,}",
                 counts=", ".join(f"{emotion_label(e)} {n:,}" for e, n in counts.items()) or "-"))
    classes = [c[2:] for c in answers.columns if c.startswith("p_")]
    names = au_table.video_names(answers)
    videos = names.dropna().unique() if "time_s" in answers.columns else []
    if len(videos):  # a video's table: the first face's emotions over time, one video at a time
        video = videos[0] if len(videos) == 1 else st.selectbox(
            t("au_model.applied_video", n=f"{len(videos):,}"), list(videos), key=kept_choice("au_applied_video"))
        firsts = answers[(names == video) & answers["time_s"].notna() & au_table.first_face_mask(answers)]
        st.plotly_chart(plots.lines_over_time(firsts, [f"p_{c}" for c in classes], emotion_labels(classes),
                                              t("au_model.applied_over_time", model=name),
                                              t("try_it.video_time_axis"), t("try_it.video_probability_axis"),
                                              [plots.emotion_color(c) for c in classes]),
                        key="au_applied_chart")
    st.download_button(t("au_model.apply_download"), csv_bytes(answers),
                       file_name=f"{Path(origin).name.split('.')[0] or 'table'}_{name}_emotions.csv",
                       mime="text/csv", key="au_apply_download", help=t("au_model.apply_download_help"), on_click="ignore")
    scores = applied.get("scores")
    if isinstance(scores, str):  # labelled, but no row could be scored: said, the answers kept
        st.caption(t("au_model.not_scored", reason=shown_literally(i18n.message(scores))))
    elif scores is not None:
        show_scores(scores, name, f"{Path(origin).name.split('.')[0] or 'table'}_{name}")


def scored_on(table: pd.DataFrame, predictor):
    """The model scored on the table's labels (``TableScores``), as ``evaluate --au-table`` scores
    it; None for a table without labels (a video's, an unlabelled folder's), a FerError where none
    can be scored."""
    from fer_core.evaluation.compare import score_au_table

    labels = au_table.labels_of(table).dropna()
    if labels.empty:
        return None
    if not labels.isin(predictor.classes).any():
        raise FerError(f"{predictor.name} predicts none of the table's labels ({', '.join(sorted(set(labels)))})")
    return score_au_table(predictor, table)


def show_scores(scores, name: str, stem: str) -> None:
    """The scores of a model on a labelled table: accuracy, per emotion, confusion, each video
    scored once and the notes that qualify them (as ``evaluate --au-table``), as files too."""
    from fer_core.figures.compare import report_frames

    report = scores.report
    st.subheader(t("au_model.applied_scores", model=name))
    for note in filter(None, [scores.masked, *scores.notes]):
        st.info(note, icon=":material/info:")
    metric_row(report, {t("au_model.applied_scored_faces"): f"{report.n:,}"}, label=t("au_model.applied_accuracy"))
    if scores.per_video is not None:
        metric_row(scores.per_video, {t("au_model.applied_videos"): f"{scores.per_video.n:,}"},
                   label=t("au_model.applied_video_accuracy"))
        st.caption(t("au_model.applied_video_caption"))
        with st.expander(t("au_model.applied_video_details")):  # the figure to report, per emotion too
            show_evaluation(scores.per_video, "au_applied_videos", advice=False)
    show_evaluation(report, "au_applied_eval", advice=False)
    per_emotion, confusion = report_frames(report)
    c1, c2, c3 = st.columns(3)
    c1.download_button(t("au_model.download_scores"), json.dumps(scores.to_dict(), indent=1).encode(),
                       file_name=f"{stem}_scores.json", mime="application/json", key="au_applied_scores",
                       icon=":material/download:", on_click="ignore")
    c2.download_button(t("au_model.download_per_emotion"), csv_bytes(per_emotion), file_name=f"{stem}_per_emotion.csv",
                       mime="text/csv", key="au_applied_per_emotion", icon=":material/download:", on_click="ignore")
    c3.download_button(t("au_model.download_confusion"), csv_bytes(confusion), file_name=f"{stem}_confusion.csv",
                       mime="text/csv", key="au_applied_confusion", icon=":material/download:", on_click="ignore")


def main() -> None:
    st.title(t("au_model.title"))
    st.caption(t("au_model.intro"))
    inspect_section()
    table, origin = choose_table()
    if table is not None:
        measured = au_table.columns_with_values(table) or list(AU_COLUMNS)  # a masked table's: those above the mask
        selection = au_table.select(table, columns=measured)
        note = "" if not selection.left_out else f" ({selection.summary()})"
        st.caption(t("au_model.table_caption", rows=f"{len(table):,}", usable=f"{selection.n:,}", note=note))
        if len(measured) < len(AU_COLUMNS):
            st.caption(t("au_model.table_some_aus", n=len(measured),
                         aus=", ".join(au_table.au_code(c) for c in measured)))
        train_section(table, origin)
    result_section(table, origin)  # right under the button that made it
    if table is not None:
        apply_section(table, origin)


run_page(main)
