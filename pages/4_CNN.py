"""CNN: inspect a saved pixel CNN, evaluate it on a folder, or train one with live curves and Stop.

Training runs in a background thread (``fer_core.training.CNNTrainingJob``) kept in session state;
the live view is an ``st.fragment`` that re-runs every second while the thread works, so the Stop
button stays clickable and the rest of the page does not re-run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

from fer_core import config
from fer_core.emotions import SEVEN_EMOTIONS, SIX_EMOTIONS
from fer_core.errors import FerError
from fer_core.evaluation.metrics import EvaluationReport
from fer_core.figures import plots
from fer_core.figures.compare import training_curves
from fer_core.images import sample_per_class
from fer_core.training import CNNSettings, CNNTrainingJob, active_training
from ui.common import (
    DATA_LAYOUT_HELP,
    dataset_items,
    fraction_bar,
    load_predictor,
    manifest_entries,
    page_setup,
    run_page,
    show_error,
)

page_setup("nav.cnn", ":material/memory:")

PRESET_NAMES = {"strong": "strong (VGG-style)", "original": "original (the study's)", "tiny": "tiny (quick check)"}
PRESET_HELP = ("strong: a VGG-style net, ~1.2 M weights, the most accurate per CPU minute; original: the "
               "original study's network (conv 256/128/64, dense 512-256-128); tiny: ~1.5 k weights, for a "
               "quick check that everything works.")
CLASS_SETS = {"six": SIX_EMOTIONS, "seven": SEVEN_EMOTIONS}
POLL_SECONDS = 1.0
NO_CNN_HELP = (
    "No CNN is registered in models/manifest.json yet. The bundled FER2013 CNN "
    "(`models/cnn_fer2013.keras`) is registered as **cnn-fer2013** once its training has finished. "
    "Meanwhile train one below (a quick look: preset *tiny*, 100 images per emotion, 3 epochs, about "
    "a minute), or in a terminal: `python -m fer_core train-cnn --data ../shared/datasets/fer2013/train "
    "--val ../shared/datasets/fer2013/val --out models/cnn_mine.keras --name cnn-mine`.")


def show_evaluation(ev: EvaluationReport, key: str) -> None:
    """Per-emotion accuracy bars and the confusion matrix of an evaluation."""
    left, right = st.columns(2)
    left.plotly_chart(plots.per_class_accuracy_bars(ev.per_class, overall=ev.accuracy), key=f"{key}_bars")
    right.plotly_chart(plots.confusion_heatmap(ev.confusion, ev.labels), key=f"{key}_confusion")
    collapsed = ev.predicts_one_class()
    if collapsed:
        st.warning(f"This model predicts **{collapsed}** for almost every image: it has not learned to tell "
                   "the emotions apart. Train longer or on more images before using it.")


def metric_row(ev: EvaluationReport, extra: dict[str, str], label: str = "Validation accuracy") -> None:
    cols = st.columns(2 + len(extra))
    lo, hi = ev.accuracy_ci95
    cols[0].metric(label, f"{ev.accuracy:.1%}", help=f"95% bootstrap interval {lo:.1%}–{hi:.1%}")
    cols[1].metric("Macro F1", f"{ev.macro_f1:.3f}")
    for col, (name, value) in zip(cols[2:], extra.items()):
        col.metric(name, value)


# -- saved models ----------------------------------------------------------------------------
def saved_section() -> None:
    from fer_core.predictors.cnn import read_cnn_metadata

    st.subheader("Saved CNNs")
    entries = [e for e in manifest_entries() if e.kind == "cnn"]
    registered = {e.file.resolve() for e in entries}
    loose = [p.name for p in sorted(config.models_dir().glob("*.keras")) if p.resolve() not in registered]
    if not entries:
        st.info(NO_CNN_HELP)
        if loose:
            st.caption(f"Found in {config.models_dir()} but not registered (still training?): "
                       + ", ".join(f"`{n}`" for n in loose))
        return
    names = [e.name for e in entries]
    default = names.index("cnn-fer2013") if "cnn-fer2013" in names else 0
    name = st.selectbox("Model", names, index=default, key="cnn_model")
    entry = entries[names.index(name)]
    try:
        meta = read_cnn_metadata(entry.file) or {}
    except FerError as exc:
        show_error(exc, warning=True)
        meta = {}
    ev = EvaluationReport.from_dict(meta["evaluation"]) if meta.get("evaluation") else None
    details = {"Preset": str(meta.get("preset", "?")),
               "Epochs run": str(meta.get("epochs_run", "?")),
               "Training images": f"{meta['n_train']:,}" if isinstance(meta.get("n_train"), int) else "?"}
    if ev:
        metric_row(ev, details)
    else:
        cols = st.columns(len(details))
        for col, (label, value) in zip(cols, details.items()):
            col.metric(label, value)
    st.caption(f"Emotions: {', '.join(entry.classes)} · file `{entry.path}`"
               + (f" · made by `{entry.command}`" if entry.command else ""))
    if meta.get("history"):
        st.plotly_chart(training_curves(meta["history"], title=f"{name}: training curves"), key="cnn_saved_curves")
    if ev:
        st.caption(f"Scores on its validation images ({ev.n:,}), as saved when training ended; those images "
                   "also picked the best epoch, so the score is a little optimistic.")
        show_evaluation(ev, "cnn_saved")
    evaluate_section(entry)


def evaluate_section(entry: dict) -> None:
    with st.expander("Evaluate this CNN on a folder of labelled images", expanded=False):
        c1, c2, c3 = st.columns([4, 1.3, 1])
        default = config.fer_split_dir("val")
        folder = c1.text_input("Folder", value=str(default) if default.is_dir() else "", key="cnn_eval_folder",
                               help=DATA_LAYOUT_HELP).strip()
        per = c2.number_input("Images per emotion (0 = all)", 0, 100_000, 100, step=50, key="cnn_eval_per")
        c3.write("")
        go = c3.button("Evaluate", key="cnn_eval_button")
        results: dict = st.session_state.setdefault("cnn_eval", {})
        key = (entry.name, entry.sha256 or "", folder, int(per))
        if go:
            if not folder:
                show_error(f"type the path of a folder with emotion subfolders. {DATA_LAYOUT_HELP}")
                return
            bar, progress = fraction_bar()
            try:
                from fer_core.evaluation.compare import evaluate_images

                items = sample_per_class(dataset_items(str(Path(folder).expanduser()), tuple(entry.classes)),
                                         int(per))
                results[key], _ = evaluate_images(load_predictor(entry), items, progress=progress)
            except FerError as exc:
                show_error(exc)
                return
            finally:
                bar.empty()
        ev = results.get(key)
        if ev is None:
            st.caption("Runs the model on the images (the first CNN starts TensorFlow, ~15 s). Pick a folder "
                       "the model was not trained on, e.g. FER2013 val for a model trained on train.")
            return
        metric_row(ev, {"Images": f"{ev.n:,}"}, label=f"Accuracy on {Path(folder).name}")
        show_evaluation(ev, "cnn_eval")


# -- training --------------------------------------------------------------------------------
def training_form(job: CNNTrainingJob | None) -> None:
    st.subheader("Train a CNN")
    running = job is not None and job.running
    other = active_training()
    c1, c2 = st.columns(2)
    train_default, val_default = config.fer_split_dir("train"), config.fer_split_dir("val")
    train_dir = c1.text_input("Training folder", value=str(train_default) if train_default.is_dir() else "",
                              key="cnn_train_dir", help=DATA_LAYOUT_HELP, disabled=running).strip()
    val_dir = c2.text_input("Validation folder (empty: hold out 10% of the training images)",
                            value=str(val_default) if val_default.is_dir() else "", key="cnn_val_dir",
                            help="Picks the best epoch and gives the scores below; keep it apart from any "
                                 "test set you compare on later.", disabled=running).strip()
    c1, c2, c3, c4, c5 = st.columns([1.6, 1.2, 1, 1, 1.3])
    preset = c1.selectbox("Architecture", list(PRESET_NAMES), format_func=PRESET_NAMES.get, key="cnn_preset",
                          disabled=running, help=PRESET_HELP)
    classes = c2.radio("Emotions", list(CLASS_SETS), key="cnn_classes", horizontal=True, disabled=running,
                       format_func=lambda k: f"{k} ({len(CLASS_SETS[k])})",
                       help="six: the study's classes (no fear); seven: all of FER2013's")
    epochs = c3.number_input("Epochs", 1, 300, 20, key="cnn_epochs", disabled=running,
                             help="At most; training stops early when validation accuracy has not improved "
                                  "for 10 epochs, and the best epoch is kept.")
    batch = c4.selectbox("Batch size", [16, 32, 64, 128, 256], index=2, key="cnn_batch", disabled=running)
    limit = c5.number_input("Images per emotion (0 = all)", 0, 100_000, 0, step=100, key="cnn_limit",
                            disabled=running, help="A quick run on a sample of each folder; 0 uses every image.")
    st.caption("On this kind of machine (CPU only) the strong preset needs about a minute per epoch on all "
               "of FER2013 train; tiny with 100 images per emotion finishes in seconds. One training runs "
               "per server at a time.")
    if other is not None and other is not job:
        st.warning(f"Another CNN training is running on this server ({other.settings.describe()}, "
                   f"{other.elapsed() / 60:.0f} min so far); start yours when it has finished.")
    start = st.button("Start training", type="primary", key="cnn_start", disabled=running or other is not None)
    if not start:
        return
    for label, folder in (("training", train_dir), ("validation", val_dir)):
        if label == "validation" and not folder:
            continue
        if not folder:
            show_error(f"type the path of a training folder. {DATA_LAYOUT_HELP}")
            return
        if not Path(folder).expanduser().is_dir():
            show_error(f"{folder}: {label} folder does not exist; set FER_DATA_DIR or type another folder")
            return
    if job is not None and job.result is not None and not job.saved_as:
        st.toast("The previous unsaved CNN was discarded.")
    settings = CNNSettings(str(Path(train_dir).expanduser()), str(Path(val_dir).expanduser()) if val_dir else None,
                           CLASS_SETS[classes], preset, int(epochs), int(batch), int(limit) or None)
    new_job = CNNTrainingJob(settings)
    try:
        new_job.start()
    except FerError as exc:
        show_error(exc)
        return
    st.session_state["cnn_job"] = new_job
    st.rerun()


def live_view(job: CNNTrainingJob, polling: bool) -> None:
    """Status, progress and the growing curves of a running job (a fragment re-run every second)."""
    if polling and not job.running:
        st.rerun()  # finished: redraw the whole page (results, save, the form enabled again)
    st.subheader("Training")
    # A click re-runs only this fragment; the flag is read by train_cnn after every batch.
    if st.button("Stop training", key="cnn_stop", disabled=job.stop_event.is_set(),
                 help="Stops after the current batch; the best epoch so far is kept and can be saved."):
        job.stop()
    status, bar, curves = st.empty(), st.empty(), st.empty()
    s = job.settings
    done, total = job.epochs_done, s.epochs
    minutes = job.elapsed() / 60
    if job.stop_event.is_set():
        status.warning(f"Stopping… the best epoch so far is kept and evaluated ({minutes:.1f} min).")
    elif job.phase == "loading" and done == 0:
        n, of = job.loaded
        starting = "" if "tensorflow" in sys.modules else " (the first run starts TensorFlow, ~15 s)"
        status.info(f"Reading images{f': {n:,} of {of:,}' if of else ''}…{starting}")
        bar.progress(n / of if of else 0.0)
    else:
        status.info(f"Epoch {min(done + 1, total)} of {total} running · {minutes:.1f} min · {s.describe()}")
        bar.progress(done / total, text=f"{done} of {total} epochs done")
    history = job.snapshot()
    if history:
        curves.plotly_chart(training_curves(history, epochs=total, title="Training curves (live)"),
                            key="cnn_live_curves")
    else:
        curves.caption("The curves appear after the first epoch.")


def result_view(job: CNNTrainingJob) -> None:
    if job.phase == "cancelled":
        st.warning("Training was stopped before the first epoch finished: there is nothing to save.")
        return
    if job.phase == "failed":
        show_error(job.error or "training failed")
        return
    result = job.result
    if result is None:
        return
    st.subheader("Result")
    ev = result.evaluation
    how = ("stopped by you" if result.stopped_by_user
           else "stopped early (no improvement)" if result.epochs_run < job.settings.epochs else "all epochs")
    metric_row(ev, {"Epochs run": f"{result.epochs_run} of {job.settings.epochs}",
                    "Training time": f"{result.seconds / 60:.1f} min"})
    st.caption(f"{job.settings.describe()} · {how}; the best epoch by validation accuracy is kept.")
    if result.skipped:
        st.warning(f"{len(result.skipped)} image(s) could not be read and were skipped, e.g. {result.skipped[0]}")
    st.plotly_chart(training_curves(result.history, title="Training curves"), key="cnn_result_curves")
    show_evaluation(ev, "cnn_result")
    st.subheader("Save")
    if job.saved_as:
        st.success(f"Saved as **{job.saved_as}**: it is listed on the home page and can be compared on the "
                   "Compare page.")
        return
    s = job.settings
    default = f"cnn-{s.preset}-{Path(s.train_dir).name}"[:60].replace(" ", "-")
    c1, c2 = st.columns([3, 1])
    name = c1.text_input("Model name", value=default, key="cnn_save_name",
                         help="Letters, digits, '-' and '_'; saved as models/<name>.keras (+ <name>.meta.json)")
    c2.write("")
    if c2.button("Save model", key="cnn_save"):
        try:
            job.save(name)
        except FerError as exc:
            show_error(exc)
        else:
            st.rerun()


def main() -> None:
    st.title("CNN")
    st.caption("A convolutional network on the 48×48 gray pixels, the comparison model of the study: "
               "accurate where AUs are hard to measure, but it cannot say why.")
    saved_section()
    job: CNNTrainingJob | None = st.session_state.get("cnn_job")
    training_form(job)
    if job is None:
        return
    if job.running:
        st.fragment(run_every=POLL_SECONDS)(live_view)(job, True)
    else:
        result_view(job)


run_page(main)
