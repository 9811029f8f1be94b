"""CNN: inspect a saved pixel CNN, evaluate it on a folder, or train one with live curves and Stop.

Training runs in a background thread (``fer_core.training.CNNTrainingJob``) kept in session state;
the live view is an ``st.fragment`` that re-runs every second while the thread works, so the Stop
button stays clickable and the rest of the page does not re-run.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from fer_core import config
from fer_core.emotions import SEVEN_EMOTIONS, SIX_EMOTIONS
from fer_core.errors import FerError
from fer_core.evaluation.metrics import EvaluationReport, degenerate_model_warning, share_text
from fer_core.figures.compare import predictions_frame, training_curves
from fer_core.fileio import csv_bytes
from fer_core.i18n import emotion_label, message, t
from fer_core.images import sample_as_drawn
from fer_core.predictors.cnn import PRESETS
from fer_core.predictors.recipe import SCHEDULES, Recipe
from fer_core.training import CNNSettings, CNNTrainingJob, active_training, last_training, starting_networks
from ui.common import (
    data_layout_help,
    dataset_items,
    forget_unsaved,
    fraction_bar,
    kept_choice,
    load_predictor,
    manifest_entries,
    metric_row,
    page_setup,
    remember_unsaved,
    run_page,
    show_crops_hint,
    show_error,
    show_evaluation,
    shown_literally,
)

page_setup("nav.cnn")

CLASS_SETS = {"six": SIX_EMOTIONS, "seven": SEVEN_EMOTIONS}
POLL_SECONDS = 1.0


def preset_names() -> dict[str, str]:
    """Preset -> its label, translated now (a widget's ``format_func`` must not read the language later:
    Streamlit's test harness calls it outside the run)."""
    return {preset: t(f"cnn.preset_{preset}") for preset in PRESETS}


def class_set_names() -> dict[str, str]:
    return {"six": t("cnn.classes_six"), "seven": t("cnn.classes_seven")}


def tensorflow_note(entry=None) -> str:
    """The note that the first run starts TensorFlow (~15 s), only while it is not loaded in this
    process (and, given a model, only when that model needs it: not one with a TensorFlow Lite twin)."""
    from fer_core.predictors.registry import needs_tensorflow

    if "tensorflow" in sys.modules or (entry is not None and not needs_tensorflow(entry)):
        return ""
    return t("cnn.tf_first")


# -- saved models ----------------------------------------------------------------------------
def saved_section() -> None:
    from fer_core.predictors.cnn import read_cnn_metadata

    st.header(t("cnn.saved_header"))
    entries = [e for e in manifest_entries() if e.kind == "cnn"]
    registered = {e.file.resolve() for e in entries}
    loose = [p.name for p in sorted(config.models_dir().glob("*.keras"))
             if p.resolve() not in registered and not p.name.endswith(".training.keras")]  # a run's checkpoint
    if not entries:
        st.info(t("cnn.no_cnn_help"))
        if loose:
            st.caption(t("cnn.loose_files", folder=str(config.models_dir()),
                         files=", ".join(f"`{n}`" for n in loose)))
        return
    names = [e.name for e in entries]
    default = names.index("cnn-fer2013") if "cnn-fer2013" in names else 0
    name = st.selectbox(t("cnn.model"), names, index=default, key=kept_choice("cnn_model"))
    entry = entries[names.index(name)]
    try:
        meta = read_cnn_metadata(entry.file) or {}
    except FerError as exc:
        show_error(exc, warning=True)
        meta = {}
    ev = EvaluationReport.from_dict(meta["evaluation"]) if meta.get("evaluation") else None
    preset = str(meta.get("preset", "?"))
    details = {t("cnn.preset"): preset_names().get(preset, preset),  # the training form's label
               t("cnn.epochs_run"): str(meta.get("epochs_run", "?")),
               t("cnn.training_images"): f"{meta['n_train']:,}" if isinstance(meta.get("n_train"), int) else "?"}
    if ev:
        metric_row(ev, details)
    else:
        cols = st.columns(len(details))
        for col, (label, value) in zip(cols, details.items()):
            col.metric(label, value)
    made_by = t("cnn.made_by", command=entry.command) if entry.command else ""
    st.caption(t("cnn.saved_caption", emotions=", ".join(emotion_label(c) for c in entry.classes),
                 path=entry.path) + made_by)
    saved_downloads(entry)
    if meta.get("history"):
        st.plotly_chart(training_curves(meta["history"], title=t("cnn.saved_curves_title", name=name)),
                        key="cnn_saved_curves")
    if ev:
        st.caption(saved_scores_caption(entry, ev))
        show_evaluation(ev, "cnn_saved")
    evaluate_section(entry)


def saved_scores_caption(entry, ev: EvaluationReport) -> str:
    """What the scores its training recorded are worth, as its manifest entry says: whether the
    validation images also chose it, and the registered score when the model now predicts with
    other test-time views than it was scored with then (Home and Compare show that one)."""
    from fer_core.evaluation.scores import val_role

    role = val_role(entry.metrics.evaluated_on) if entry.metrics else ""
    key = {"yes": "cnn.saved_scores_caption", "trunk": "cnn.saved_scores_trunk",
           "no": "cnn.saved_scores_unpicked"}.get(role, "cnn.saved_scores_plain")
    text = t(key, n=f"{ev.n:,}")
    registered = entry.metrics.accuracy if entry.metrics else None
    if registered is not None and abs(registered - ev.accuracy) >= 0.0005:
        text += " " + t("cnn.saved_scores_registered", accuracy=share_text(registered, 1, percent=True))
    return text


def folder_label(folder: str) -> str:
    """The evaluated folder as people name it: its last part (``val``), or the path itself."""
    return Path(folder).name or folder


def evaluation_files(ev: EvaluationReport, comparison, name: str, folder: str,
                     sample: dict) -> tuple[bytes, bytes]:
    """The folder evaluation as downloads: per image (file, label, predicted, right or not, one
    probability per emotion) as CSV, and the scores as JSON (the ``evaluate --json`` report, with
    ``sample``: the images per emotion drawn, the seed and the folder's labelled images)."""
    frame = predictions_frame(comparison.table, [name], folder, copies=comparison.copies_of_training).drop(
        columns=f"{name} p(true)", errors="ignore")
    frame = frame.rename(columns={name: "predicted", f"{name} correct": "correct"})
    proba = comparison.probabilities[name]
    for j, emotion in enumerate(comparison.model_classes[name]):
        frame[f"p_{emotion}"] = proba[:, j].round(4)
    said = comparison.to_dict(folder)  # what the notes say of the model's own training data, as evaluate --json
    metrics = {"model": name, "folder": folder, **sample, **ev.to_dict(), "unreadable": list(comparison.unreadable),
               "left_out": dict(comparison.skipped), **({"crops": True} if comparison.crops else {}),
               **{key: said[key] for key in ("from_training_folder", "copies_of_training", "from_choosing_folder")}}
    return csv_bytes(frame), json.dumps(metrics, indent=1).encode()


EVAL_SEED = 0  # the evaluation's sample per emotion is drawn the same way each time
TRAINING_PARAM = "training"  # the page address's key for the training this browser started


def reproducing_command(listed: list, entry, per: int, root: str, crops: bool) -> str | None:
    """The commands that score the images a sample of ``per`` per emotion drew: draw-testset over
    the model's emotions the folder holds (the page draws them so), then evaluate. None when no
    command gives that set: nothing was sampled, or an emotion has fewer than ``per`` images (the
    page takes them all, draw-testset refuses)."""
    from fer_core.images import class_counts

    counts = class_counts(listed)
    held = [c for c in entry.classes if counts.get(c, 0)]
    if not per or len(held) < 2 or any(counts[c] < per for c in held) or all(counts[c] == per for c in held):
        return None
    models = os.environ.get("FER_MODELS_DIR")  # the server's models folder, where the model is registered
    where = f"FER_MODELS_DIR={shlex.quote(str(Path(models).resolve()))} " if models else ""
    return (f"python -m fer_core draw-testset {shlex.quote(str(Path(root).resolve()))} TEST --per-class {per} "
            f"--seed {EVAL_SEED} --classes {','.join(held)} && {where}python -m fer_core evaluate --model "
            f"{shlex.quote(entry.name)} --images TEST" + (" --crops" if crops else ""))


def evaluate_section(entry) -> None:
    with st.expander(t("cnn.evaluate_expander"), expanded=False):
        c1, c2, c3 = st.columns([4, 1.3, 1])
        default = config.fer_split_dir("val")
        folder = c1.text_input(t("cnn.folder"), value=str(default) if default.is_dir() else "", key=kept_choice("cnn_eval_folder"),
                               help=data_layout_help()).strip()
        per = c2.number_input(t("cnn.per_emotion"), 0, 100_000, 100, step=50, key=kept_choice("cnn_eval_per"))
        c3.write("")
        go = c3.button(t("cnn.evaluate"), key="cnn_eval_button")
        crops = st.toggle(t("cnn.crops_on"), key=kept_choice("cnn_eval_crops"), help=t("cnn.crops_help"))
        results: dict = st.session_state.setdefault("cnn_eval", {})
        key = (entry.name, entry.sha256 or "", folder, int(per), crops)
        if go:
            if not folder:
                show_error(t("cnn.type_folder", layout=data_layout_help()))
                return
            if not Path(folder).expanduser().exists():  # typed: the data-folder advice does not fit
                show_error(t("cnn.eval_missing", folder=folder))
                return
            bar, progress = fraction_bar(t("cnn.starting"))
            try:
                from fer_core.evaluation.compare import evaluate_images

                root = str(Path(folder).expanduser())
                # every emotion listed: those the model lacks are counted and said, not dropped unseen
                listed = dataset_items(root)
                items = sample_as_drawn(listed, entry.classes, int(per), seed=EVAL_SEED)
                labelled = sum(1 for it in listed if it.label)
                sample = {"per_emotion": int(per) or None, "seed": EVAL_SEED if per else None,
                          "images_in_folder": labelled, "unlabelled": len(listed) - labelled,
                          "sampled": sum(1 for it in items if it.label) < labelled}
                command = reproducing_command(listed, entry, int(per), root, crops)
                if command:
                    sample["reproduce"] = command
                ev, comparison = evaluate_images(load_predictor(entry), items, progress=progress, root=root,
                                                 crops=crops)
                results[key] = (ev, evaluation_files(ev, comparison, entry.name, root, sample),
                                list(comparison.unreadable), dict(comparison.skipped), sample,
                                len(comparison.crop_like_no_face), comparison)
            except FerError as exc:
                show_error(exc)
                return
            finally:
                bar.empty()
        done = results.get(key)
        if done is None:
            st.caption(t("cnn.evaluate_caption", tf=tensorflow_note(entry)))
            return
        ev, (csv, metrics), unreadable, left_out, sample, crop_like, comparison = done
        if sample["sampled"]:  # a figure on a sample must not read as the folder's (Home's is on all)
            metric_row(ev, {t("cnn.images"): f"{ev.n:,}"},
                       label=t("cnn.accuracy_on_sample", folder=folder_label(folder), per=sample["per_emotion"]))
            st.caption(t("cnn.sample_caption", per=sample["per_emotion"], seed=sample["seed"],
                         total=f"{sample['images_in_folder']:,}"))
            if sample.get("reproduce"):
                st.caption(t("cnn.sample_reproduce", command=sample["reproduce"]))
        else:
            metric_row(ev, {t("cnn.images"): f"{ev.n:,}"}, label=t("cnn.accuracy_on", folder=folder_label(folder)))
        if unreadable:
            st.warning(t("compare.unreadable", n=len(unreadable), example=shown_literally(message(unreadable[0]))))
        if left_out:
            st.caption(t("compare.skipped", n=sum(left_out.values()),
                         per_emotion=", ".join(f"{emotion_label(e)} {n:,}" for e, n in left_out.items())))
        if sample["unlabelled"]:
            st.caption(t("compare.unlabelled", n=f"{sample['unlabelled']:,}"))
        if crops:
            st.caption(t("cnn.crops_caption"))
        show_crops_hint(crop_like)
        for note in comparison.learned_notes():  # images it was trained on, copies of them, or that chose it
            st.warning(note, icon=":material/school:")
        show_evaluation(ev, "cnn_eval")
        stem = f"{entry.name}_{folder_label(folder)}"
        c1, c2, _ = st.columns([1, 1, 2])
        c1.download_button(t("cnn.download_predictions"), csv, file_name=f"{stem}_predictions.csv",
                           mime="text/csv", key="cnn_eval_csv", on_click="ignore")
        c2.download_button(t("cnn.download_metrics"), metrics, file_name=f"{stem}_metrics.json",
                           mime="application/json", key="cnn_eval_json", on_click="ignore")


# -- training --------------------------------------------------------------------------------
def check_folders(train_dir: str, val_dir: str) -> bool:
    """Both folders exist (the validation one may be empty: held out from training); else an error."""
    if not train_dir:
        show_error(t("cnn.type_train_folder", layout=data_layout_help()))
        return False
    if not Path(train_dir).expanduser().is_dir():
        show_error(t("cnn.train_missing", folder=train_dir))
        return False
    if val_dir and not Path(val_dir).expanduser().is_dir():
        show_error(t("cnn.val_missing", folder=val_dir))
        return False
    return True


def recipe_form(running: bool) -> dict:
    """The training recipe's settings (fer_core.predictors.recipe), folded away: the defaults are the
    bundled CNNs' recipe."""
    with st.expander(t("cnn.recipe_expander"), expanded=False):
        st.caption(t("cnn.recipe_caption"))
        c1, c2, c3, c4, c5 = st.columns([1.6, 1, 1.2, 1, 1])
        schedule = c1.radio(t("cnn.schedule"), list(SCHEDULES), key=kept_choice("cnn_schedule"), horizontal=True,
                            format_func=lambda s: t(f"cnn.schedule_{s}"), disabled=running, help=t("cnn.schedule_help"))
        smoothing = c2.number_input(t("cnn.label_smoothing"), 0.0, 0.5, 0.0, step=0.05, key=kept_choice("cnn_label_smoothing"),
                                    disabled=running, help=t("cnn.label_smoothing_help"))
        c3.write("")
        ema = c3.checkbox(t("cnn.ema"), key=kept_choice("cnn_ema"), disabled=running, help=t("cnn.ema_help"))
        mixup = c4.number_input(t("cnn.mixup"), 0.0, 1.0, 0.0, step=0.1, key=kept_choice("cnn_mixup"), disabled=running,
                                help=t("cnn.mixup_help"))
        erasing = c5.number_input(t("cnn.erasing"), 0.0, 1.0, 0.0, step=0.1, key=kept_choice("cnn_erasing"), disabled=running,
                                  help=t("cnn.erasing_help"))
    return {"schedule": schedule, "label_smoothing": float(smoothing), "ema": 0.999 if ema else 0.0,
            "mixup": float(mixup), "erasing": float(erasing)}


def emotions_to_train(train_dir: str, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The chosen class set cut to the emotions the training folder has (a network cannot learn
    an emotion it never sees; training refuses one), said in a toast when that leaves some out."""
    try:
        present = {it.label for it in dataset_items(str(Path(train_dir).expanduser()))}
    except FerError:
        return wanted  # training says what is wrong with the folder
    kept = tuple(c for c in wanted if c in present)
    if len(kept) < 2:
        return wanted
    if len(kept) < len(wanted):
        st.toast(t("cnn.emotions_cut", emotions=", ".join(emotion_label(c) for c in kept),
                   missing=", ".join(emotion_label(c) for c in wanted if c not in kept)))
    return kept


FORM_KEYS = ("cnn_train_dir", "cnn_val_dir", "cnn_preset", "cnn_classes", "cnn_epochs", "cnn_batch", "cnn_limit",
             "cnn_init", "cnn_class_weighting", "cnn_schedule", "cnn_label_smoothing", "cnn_ema", "cnn_mixup",
             "cnn_erasing")
OWN_CHOICES = "_cnn_form_own"  # this tab's own form choices, put aside while a training's are shown


def show_running_settings(settings: CNNSettings | None) -> None:
    """While a training runs, its settings in the (disabled) form: another tab or a reload drew its
    own choices there, the defaults, under a status line naming the run's (a reviewer went to stop
    a 'strong, all images' run that was a tiny one). This tab's own choices are put aside and come
    back when no training runs (``settings`` None)."""
    if settings is None:
        own = st.session_state.pop(OWN_CHOICES, None)
        if own is not None:
            st.session_state.update(own)
        return
    if OWN_CHOICES not in st.session_state:
        st.session_state[OWN_CHOICES] = {k: st.session_state[k] for k in FORM_KEYS if k in st.session_state}
    r = settings.recipe
    st.session_state.update({
        "cnn_train_dir": settings.train_dir, "cnn_val_dir": settings.val_dir or "", "cnn_preset": settings.preset,
        "cnn_classes": "seven" if "fear" in settings.classes else "six", "cnn_epochs": settings.epochs,
        "cnn_batch": settings.batch_size, "cnn_limit": settings.limit_per_class or 0, "cnn_init": settings.init or "",
        "cnn_class_weighting": settings.class_weighting, "cnn_schedule": r.schedule,
        "cnn_label_smoothing": r.label_smoothing, "cnn_ema": r.ema > 0, "cnn_mixup": r.mixup, "cnn_erasing": r.erasing})


def training_form(job: CNNTrainingJob | None) -> None:
    st.header(t("cnn.train_header"))
    running = job is not None and job.running
    show_running_settings(job.settings if running else None)
    other = active_training()
    c1, c2 = st.columns(2)
    train_default, val_default = config.fer_split_dir("train"), config.fer_split_dir("val")
    train_dir = c1.text_input(t("cnn.train_folder"), value=str(train_default) if train_default.is_dir() else "",
                              key=kept_choice("cnn_train_dir"), help=data_layout_help(), disabled=running).strip()
    val_dir = c2.text_input(t("cnn.val_folder"), value=str(val_default) if val_default.is_dir() else "",
                            key=kept_choice("cnn_val_dir"), help=t("cnn.val_folder_help"), disabled=running).strip()
    c1, c2, c3, c4, c5 = st.columns([1.6, 1.2, 1, 1, 1.3])
    preset = c1.selectbox(t("cnn.architecture"), list(PRESETS), format_func=preset_names().__getitem__, key=kept_choice("cnn_preset"),
                          disabled=running, help=t("cnn.preset_help"))
    classes = c2.radio(t("cnn.emotions"), list(CLASS_SETS), key=kept_choice("cnn_classes"), horizontal=True, disabled=running,
                       format_func=class_set_names().__getitem__, help=t("cnn.classes_help"))
    epochs = c3.number_input(t("cnn.epochs"), 1, 300, 20, key=kept_choice("cnn_epochs"), disabled=running,
                             help=t("cnn.epochs_help"))
    batch = c4.selectbox(t("cnn.batch_size"), [16, 32, 64, 128, 256], index=2, key=kept_choice("cnn_batch"), disabled=running)
    limit = c5.number_input(t("cnn.per_emotion"), 0, 100_000, 0, step=100, key=kept_choice("cnn_limit"),
                            disabled=running, help=t("cnn.limit_help"))
    c1, c2 = st.columns([1.6, 4.5])
    starts = ["", *starting_networks(preset)]
    if st.session_state.get("cnn_init") not in starts:  # another preset's network cannot start this one
        st.session_state["cnn_init"] = ""
    init = c1.selectbox(t("cnn.init"), starts, format_func=lambda name: name or t("cnn.init_none"),
                        key=kept_choice("cnn_init"), disabled=running, help=t("cnn.init_help"))
    c2.write("")
    weighting = c2.checkbox(t("cnn.class_weighting"), key=kept_choice("cnn_class_weighting"), disabled=running,
                            help=t("cnn.class_weighting_help"))
    st.caption(t("cnn.speed_caption"))
    recipe_options = recipe_form(running)
    if other is not None and other is not job:
        st.warning(t("cnn.other_running", settings=other.settings.summary(), minutes=f"{other.elapsed() / 60:.0f}"))
    start = st.button(t("cnn.start"), type="primary", key="cnn_start", disabled=running or other is not None)
    if not start or not check_folders(train_dir, val_dir):
        return
    if job is not None and job.result is not None and not job.saved_as:
        st.toast(t("cnn.previous_discarded"))
    elif unsaved(last_training()) and last_training() is not job:
        st.toast(t("cnn.others_discarded"))
    try:
        recipe = Recipe(**recipe_options)
    except FerError as exc:
        show_error(exc)
        return
    emotions = emotions_to_train(train_dir, CLASS_SETS[classes])
    settings = CNNSettings(str(Path(train_dir).expanduser()), str(Path(val_dir).expanduser()) if val_dir else None,
                           emotions, preset, int(epochs), int(batch), int(limit) or None, recipe,
                           init=init or None, class_weighting=bool(weighting))
    new_job = CNNTrainingJob(settings)
    try:
        new_job.start()
    except FerError as exc:
        show_error(exc)
        return
    st.session_state["cnn_job"] = new_job
    st.query_params[TRAINING_PARAM] = new_job.token  # a reload of this page keeps the run (and only this page's)
    st.rerun()


def live_view(job: CNNTrainingJob, polling: bool) -> None:
    """Status, progress and the growing curves of a running job (a fragment re-run every second)."""
    if polling and not job.running:
        st.rerun()  # finished: redraw the whole page (results, save, the form enabled again)
    st.header(t("cnn.training_header"))
    # A click re-runs only this fragment; the flag is read by train_cnn after every batch.
    if st.button(t("cnn.stop"), key="cnn_stop", disabled=job.stop_event.is_set(), help=t("cnn.stop_help")):
        job.stop()
    status, bar, curves = st.empty(), st.empty(), st.empty()
    s = job.settings
    done, total = job.epochs_done, s.epochs
    minutes = f"{job.elapsed() / 60:.1f}"
    if job.stop_event.is_set():  # while images are read no epoch can be kept; in the first one, it may
        status.warning(t("cnn.stopping" if done else "cnn.stopping_reading" if job.reading is not None
                         else "cnn.stopping_first", minutes=minutes))
    elif job.reading is not None and done == 0:
        n, of = job.loaded
        text = (t("cnn.reading_val_of" if job.reading == "val" else "cnn.reading_of", n=f"{n:,}", of=f"{of:,}")
                if of else t("cnn.reading"))
        status.info(text + (t("cnn.tf_first") if job.starts_tensorflow else ""))  # after the reading
        bar.progress(n / of if of else 0.0)
    else:
        first = t("cnn.tf_first") if done == 0 and job.tensorflow_starting else ""
        status.info(t("cnn.epoch_running", epoch=done + 1, total=total, minutes=minutes, settings=s.summary()) + first
                    if done < total else t("cnn.finishing", minutes=minutes))
        bar.progress(done / total, text=t("cnn.epochs_done", done=done, total=total))
    history = job.snapshot()
    if history:
        curves.plotly_chart(training_curves(history, epochs=total, title=t("cnn.live_curves_title")),
                            key="cnn_live_curves")
    else:
        curves.caption(t("cnn.curves_after_first"))


def default_model_name(settings: CNNSettings) -> str:
    return f"cnn-{settings.preset}-{Path(settings.train_dir).name}"[:60].replace(" ", "-")


def offer_unsaved(job: CNNTrainingJob) -> None:
    """Hand the finished, not yet saved CNN to Compare (once per training run)."""
    if st.session_state.get("cnn_offered") is job:
        return
    from fer_core.predictors.cnn import CNNPredictor

    try:
        remember_unsaved(CNNPredictor(job.result.path, job.settings.classes, name=default_model_name(job.settings)))
    except FerError as exc:
        show_error(exc, warning=True)
        return
    st.session_state["cnn_offered"] = job


def saved_downloads(entry) -> None:
    """A saved CNN's network and record as files, as a fresh training's are offered (read when
    clicked; a file missing is not offered)."""
    from fer_core.predictors.cnn import metadata_path

    c1, c2, _ = st.columns([1, 1, 2])
    for col, path, label, mime, key in ((c1, entry.file, "cnn.download_model", "application/octet-stream", "cnn_dl_saved"),
                                        (c2, metadata_path(entry.file), "cnn.download_record", "application/json",
                                         "cnn_dl_saved_record")):
        if path.is_file():
            col.download_button(t(label), lambda path=path: path.read_bytes(), file_name=path.name, mime=mime, key=key,
                                icon=":material/download:", on_click="ignore")


def result_downloads(result, name: str) -> None:
    """The trained network, its record (the sidecar: settings, history, selection and evaluation
    scores) and the images training skipped, as files; read when clicked."""
    c1, c2, c3 = st.columns(3)
    c1.download_button(t("cnn.download_model"), lambda: result.path.read_bytes(), file_name=f"{name}.keras",
                       mime="application/octet-stream", key="cnn_dl_model", icon=":material/download:", on_click="ignore")
    c2.download_button(t("cnn.download_record"), lambda: result.metadata_path.read_bytes(),
                       file_name=f"{name}.meta.json", mime="application/json", key="cnn_dl_record",
                       icon=":material/download:", help=t("cnn.download_record_help"), on_click="ignore")
    if result.skipped:
        skipped = csv_bytes(pd.DataFrame({"problem": [str(s) for s in result.skipped]}))
        c3.download_button(t("cnn.download_skipped"), skipped, file_name=f"{name}_skipped.csv", mime="text/csv",
                           key="cnn_dl_skipped", icon=":material/download:", on_click="ignore")


def result_view(job: CNNTrainingJob) -> None:
    if job.phase == "cancelled":
        st.warning(t("cnn.cancelled"))
        return
    if job.phase == "failed":
        show_error(job.error or t("cnn.failed"))
        return
    result = job.result
    if result is None:
        return
    st.header(t("cnn.result_header"))
    ev = result.evaluation
    how = (t("cnn.how_stopped") if result.stopped_by_user
           else t("cnn.how_early") if result.epochs_run < job.settings.epochs else t("cnn.how_all"))
    metric_row(ev, {t("cnn.epochs_run"): t("cnn.n_of", n=result.epochs_run, total=job.settings.epochs),
                    t("cnn.training_time"): t("cnn.minutes", minutes=f"{result.seconds / 60:.1f}")})
    st.caption(t("cnn.result_caption", settings=job.settings.summary(), how=how))
    if result.skipped:
        st.warning(t("cnn.skipped_images", n=len(result.skipped), example=shown_literally(message(str(result.skipped[0])))))
    st.plotly_chart(training_curves(result.history, title=t("cnn.curves_title")), key="cnn_result_curves")
    show_evaluation(ev, "cnn_result", warn=False)
    result_downloads(result, default_model_name(job.settings))
    st.header(t("cnn.save_header"))
    warning = degenerate_model_warning(ev)
    if warning:
        st.warning(warning, icon=":material/warning:")
    if job.saved_as:
        st.success(t("cnn.saved_as", name=job.saved_as))
        return
    offer_unsaved(job)
    st.caption(t("cnn.compare_unsaved", name=shown_literally(default_model_name(job.settings))))
    c1, c2 = st.columns([3, 1])
    name = c1.text_input(t("cnn.model_name"), value=default_model_name(job.settings), key="cnn_save_name",
                         help=t("cnn.model_name_help"))
    c2.write("")
    if c2.button(t("cnn.save"), key="cnn_save"):
        try:
            job.save(name)
        except FerError as exc:
            show_error(exc)
        else:
            forget_unsaved(default_model_name(job.settings))  # Compare lists the saved model alone
            st.rerun()


def unsaved(job: CNNTrainingJob | None) -> bool:
    return job is not None and job.result is not None and not job.saved_as


def main() -> None:
    st.title(t("cnn.title"))
    st.caption(t("cnn.intro"))
    saved_section()
    job: CNNTrainingJob | None = st.session_state.get("cnn_job")
    last = last_training()
    if last is not None and last is not job and (last.running or unsaved(last)):
        if st.query_params.get(TRAINING_PARAM) == last.token:
            # A reload of the page that started it takes up the server's training: it can be stopped,
            # and its result saved, from here instead of being lost with the session that started it.
            job = st.session_state["cnn_job"] = last
        elif unsaved(last):  # someone else's (a shared server): said, not taken, neither saved nor dropped here
            st.info(t("cnn.others_unsaved", settings=last.settings.summary(),
                      minutes=f"{(time.time() - (last.finished or last.started)) / 60:.0f}"))
    if job is not None and (job.running or unsaved(job)) and st.query_params.get(TRAINING_PARAM) != job.token:
        # the address carries the run while it is this session's to stop or save: Streamlit clears it
        # when another page is visited, and a reload after coming back would have lost it
        st.query_params[TRAINING_PARAM] = job.token
    training_form(job)
    if job is None:
        return
    if job.running:
        st.fragment(run_every=POLL_SECONDS)(live_view)(job, True)
    else:
        result_view(job)


run_page(main)
