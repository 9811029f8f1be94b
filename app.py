"""Entry point and home page of the explainable facial-emotion workbench (``streamlit run app.py``).

Kept light on purpose: no MediaPipe, scikit-learn or TensorFlow import here, so the dashboard
opens in a few seconds; the pages load what they need when they are visited. ``st.navigation``
lists the files in ``pages/`` under readable titles (the sidebar would otherwise say "app").
"""

# ruff: noqa: E402 (the code-change check runs before the workbench's imports)
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import streamlit as st

from ui.freshness import stop_if_code_changed

stop_if_code_changed()  # before the imports below, which an update's new names would break

from fer_core import config
from fer_core.emotions import SEVEN_EMOTIONS, SIX_EMOTIONS
from fer_core.errors import FerError
from fer_core.evaluation.scores import (
    BundledScores,
    accuracy_text,
    predicts_all_seven,
    read_scores,
    scores_file,
    scores_table,
    statuses,
)
from fer_core.fileio import csv_bytes
from fer_core.i18n import emotion_label, install_browser_font, kind_label, t
from ui.common import (
    MISSING,
    PAGES,
    choose_language,
    data_layout_help,
    derived_tables,
    env_summary,
    manifest_entries,
    page_setup,
    run_page,
    show_error,
    warn_manifest_problems,
)

BENCH_COMMAND = "python bench/bundled_scores.py"


def _val_role_text(role: str) -> str:
    return {"yes": t("home.val_yes"), "trunk": t("home.val_trunk"), "no": t("home.val_no")}.get(
        role, t("home.val_unknown"))


def _models_frame(table: pd.DataFrame) -> pd.DataFrame:
    """``scores_table`` as people read it: each model's figures on the shared images (or that there
    are none), and apart from them, clearly labelled, the figure recorded when it was made and on what."""
    def interval(accuracy, low, high):
        return accuracy_text(accuracy, None if pd.isna(low) else (low, high))

    rows = []
    for r in table.itertuples(index=False):
        rows.append({
            t("home.col_model"): r.model, t("home.col_kind"): kind_label(r.kind),
            t("home.col_accuracy"): t("home.not_measured") if pd.isna(r.accuracy)
            else interval(r.accuracy, r.ci95_low, r.ci95_high),
            t("home.col_macro_f1"): None if pd.isna(r.macro_f1) else r.macro_f1,
            t("home.col_n"): None if pd.isna(r.n) else int(r.n),
            t("home.col_no_face"): None if pd.isna(r.no_face) else int(r.no_face),
            t("home.col_calibration"): None if pd.isna(r.calibration_error) else r.calibration_error,
            t("home.col_val_chose"): _val_role_text(r.val_chose_it),
            t("home.col_recorded"): "" if pd.isna(r.recorded_accuracy)
            else interval(r.recorded_accuracy, r.recorded_ci95_low, r.recorded_ci95_high),
            t("home.col_recorded_on"): r.recorded_on,
        })
    return pd.DataFrame(rows)


def _read_scores(classes=SIX_EMOTIONS) -> BundledScores | None:
    """A test set's shared-image scores, or None with a one-line warning when the file is damaged."""
    try:
        return read_scores(classes=classes)
    except FerError as exc:
        show_error(exc, warning=True)
        return None


def _scores_caption(scores: BundledScores, seven: bool) -> str:
    ts = scores.test_set
    per = ", ".join(f"{emotion_label(e)} {n:,}" for e, n in ts.per_emotion.items())
    if seven:
        return t("home.seven_scores_caption", test_set=ts.name, n=f"{ts.n:,}", per_emotion=per,
                 date=scores.date, command=scores.command)
    left = ", ".join(f"{emotion_label(e)} {n:,}" for e, n in ts.left_out.items()) or t("home.nothing")
    return t("home.scores_caption", test_set=ts.name, n=f"{ts.n:,}", per_emotion=per, left_out=left,
             date=scores.date, command=scores.command)


def show_scores_table(entries, classes) -> None:
    """One test set's table (six emotions: every model; seven: the models that predict all seven),
    its captions, what is not measured, the per-emotion recall and the downloads."""
    seven = tuple(classes) == SEVEN_EMOTIONS
    scores = _read_scores(classes)
    state = statuses(entries, scores)  # reads the manifest for the ensembles: once per table
    table = scores_table(entries, scores, state)
    frame = _models_frame(table)
    st.dataframe(frame, hide_index=True, placeholder=MISSING, column_config={
        t("home.col_accuracy"): st.column_config.TextColumn(help=t("home.col_accuracy_help")),
        t("home.col_macro_f1"): st.column_config.NumberColumn(format="%.3f"),
        # counts with thousands separators, "3,093" as in the captions
        t("home.col_n"): st.column_config.NumberColumn(format="localized"),
        t("home.col_no_face"): st.column_config.NumberColumn(format="localized"),
        t("home.col_calibration"): st.column_config.NumberColumn(format="%.3f", help=t("home.col_calibration_help")),
        t("home.col_val_chose"): st.column_config.TextColumn(help=t("home.col_val_chose_help")),
        t("home.col_recorded"): st.column_config.TextColumn(help=t("home.col_recorded_help")),
    })
    if scores is not None:
        st.caption(_scores_caption(scores, seven))
    fear = [e.name for e in entries if "fear" in (e.classes or ())]
    if not seven and fear:
        st.caption(t("home.fear_counts_wrong", names=", ".join(fear)))
    if seven:
        st.caption(t("home.seven_references"))
    unmeasured = [name for name, s in state.items() if s.score is None]
    if unmeasured:
        st.warning(t("home.not_measured_seven" if seven else "home.not_measured_models",
                     names=", ".join(unmeasured), command=BENCH_COMMAND), icon=":material/warning:")
    for name, s in state.items():
        if s.state == "failed":
            st.caption(t("home.failed_model", name=name, reason=s.reason))
    if not seven:
        st.caption(t("home.recorded_caption"))
    current = [m for m in scores.models if m.name in state and state[m.name].state == "ok"] if scores else []
    if current:  # a model retrained since it was scored is "not measured" above, so not here either
        with st.expander(t("home.recall_title_seven" if seven else "home.recall_title")):
            recall = pd.DataFrame([{t("home.col_model"): m.name,
                                    **{emotion_label(e): None if m.recall.get(e) is None else 100 * m.recall[e]
                                       for e in scores.test_set.classes}}
                                   for m in current])
            st.dataframe(recall, hide_index=True, placeholder=MISSING, column_config={  # "41.7%", "25.0%": one decimal for every share
                emotion_label(e): st.column_config.NumberColumn(format="%.1f%%") for e in scores.test_set.classes})
            st.caption(t("home.recall_caption"))
    c1, c2 = st.columns(2)
    stem = Path(scores_file(classes)).stem.replace("scores_", "models_")
    c1.download_button(t("home.download_csv_seven" if seven else "home.download_csv"), csv_bytes(table),
                       f"{stem}.csv", "text/csv", key="home_csv_seven" if seven else "home_csv", on_click="ignore")
    if scores is not None:
        # as the table: a score of a file no longer registered (retrained, or an ensemble's member) is
        # not given as the model's; its name is listed instead
        changed = sorted(name for name, s in state.items() if s.state == "stale")
        kept = replace(scores, models=tuple(m for m in scores.models if m.name not in changed))
        document = {**kept.to_dict(), **({"changed_since_scored": changed} if changed else {})}
        c2.download_button(t("home.download_json_seven" if seven else "home.download_json"),
                           json.dumps(document, indent=2).encode("utf-8"), scores_file(classes),
                           "application/json", key="home_json_seven" if seven else "home_json", on_click="ignore")


def show_models() -> None:
    st.header(t("home.models"))
    warn_manifest_problems()
    entries = manifest_entries()
    if not entries:
        st.warning(t("home.no_models"))
        return
    show_scores_table(entries, SIX_EMOTIONS)
    seven = [e for e in entries if predicts_all_seven(e)]
    if seven:
        st.markdown(f"**{t('home.seven_title')}**")
        show_scores_table(seven, SEVEN_EMOTIONS)


def show_data() -> None:
    st.header(t("home.data"))
    for what, (where, note) in env_summary().items():
        st.markdown(f"- **{what}**: `{where}` {note}".rstrip())
    fer_root = config.fer_root()
    if fer_root.is_dir():
        splits = config.fer_splits()
        st.success(t("home.fer_found", root=fer_root, splits=", ".join(f"`{s}`" for s in splits) or t("home.nothing")))
    else:
        st.info(t("home.fer_missing", root=fer_root, layout=data_layout_help(),
                  tables=", ".join(f"`{n}`" for n in derived_tables())))


def main() -> None:
    st.title(t("home.title"))
    st.markdown(t("home.intro"))
    st.info(t("home.limits"), icon=":material/info:")

    st.header(t("home.start_here"))
    for path, label, icon in (
            ("pages/1_Dataset_explorer.py", t("home.step_explore"), ":material/bar_chart:"),
            ("pages/3_Try_it.py", t("home.step_try"), ":material/photo_camera:"),
            ("pages/6_Compare.py", t("home.step_compare"), ":material/compare_arrows:")):
        st.page_link(path, label=label, icon=icon)

    st.header(t("home.pages"))
    for path, label, icon in PAGES:
        st.page_link(path, label=t(label), icon=icon)
    st.caption(t("home.pages_caption"))

    show_models()
    show_data()


def home() -> None:
    page_setup("nav.home")
    run_page(main)


def run_app() -> None:
    install_browser_font(Path(__file__).parent / "static")
    choose_language()
    # no icons in the sidebar: st.navigation makes a page's icon the tab's, and a material one is
    # fetched from outside (ui.common.favicon draws the tab's)
    pages = {path: st.Page(path, title=t(label)) for path, label, _icon in PAGES}
    page = st.navigation([st.Page(home, title=t("nav.home"), default=True)] + list(pages.values()))
    from fer_core.measure.tasks import start_photo_worker

    # Try it's MediaPipe worker (a process of its own, seconds to start) starts before any page's
    # imports, without waiting: on Try it it is ready by the time a photo is uploaded, and a
    # researcher who opens Home first finds it ready for the first photo.
    start_photo_worker()
    page.run()


# Streamlit runs this file as __main__, so every worker process the dashboard spawns (MediaPipe's)
# imports it again as __mp_main__: there it must not run the dashboard (a second Home page, seconds).
if __name__ != "__mp_main__":
    run_app()
