"""Compare: every chosen model (AU models, CNNs, Teachable Machine) on exactly the same test images."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from fer_core.emotions import shared_classes
from fer_core.errors import FerError
from fer_core.evaluation.compare import Comparison, run_comparison
from fer_core.figures import plots
from fer_core.figures.compare import (
    NO_FACE,
    accuracy_ci_bars,
    accuracy_summary,
    mcnemar_frame,
    per_emotion_grouped_bars,
    predictions_frame,
    summary_frame,
)
from ui.common import (
    choose_models,
    choose_test_set,
    fraction_bar,
    load_predictor,
    page_setup,
    run_page,
    show_error,
    thumbnail,
)

page_setup("nav.compare", ":material/compare_arrows:")

MAX_THUMBS = 120  # wrong images shown per model; the CSV has them all
PER_ROW = 3  # confusion matrices side by side


def choose_classes(items: list, entries: list) -> list[str]:
    present = list(shared_classes([], {it.label for it in items}))
    common = list(shared_classes([e.classes for e in entries if e.classes], present))
    return st.multiselect("Emotions scored", present, default=common or present, key="cmp_classes",
                          help="Images of other emotions are left out. The default is the emotions of the test "
                               "set that every chosen model can predict.")


# -- results ---------------------------------------------------------------------------------
def show_overall(res: Comparison) -> None:
    st.subheader("Overall accuracy")
    summary = accuracy_summary(res)
    shown = summary.assign(ci95=[f"{lo:.1%} – {hi:.1%}" for lo, hi in zip(summary["ci95_low"], summary["ci95_high"])])
    st.dataframe(shown[["model", "kind", "accuracy", "ci95", "macro_f1", "no_face", "n"]], hide_index=True,
                 column_config={
                     "accuracy": st.column_config.NumberColumn(format="percent"),
                     "ci95": st.column_config.TextColumn("95% CI"),
                     "macro_f1": st.column_config.NumberColumn("macro F1", format="%.3f"),
                     "no_face": st.column_config.NumberColumn("no face", help="counted as wrong"),
                 })
    left, right = st.columns([3, 2])
    left.plotly_chart(accuracy_ci_bars(summary), key="cmp_overall")
    right.caption("95% intervals: percentile bootstrap over the test images (2,000 resamples); they overlap "
                  "easily on a small test set, so read the paired McNemar tests below for differences. "
                  "Images where an AU model found no face count as wrong.")


def show_per_emotion(res: Comparison) -> None:
    st.subheader("Per emotion")
    frame = res.per_emotion_frame()
    st.plotly_chart(per_emotion_grouped_bars(frame, order=res.classes), key="cmp_per_emotion")


def show_confusions(res: Comparison) -> None:
    st.subheader("Confusion matrices")
    names = res.names
    per_row = min(PER_ROW, len(names))
    for start in range(0, len(names), per_row):
        cols = st.columns(per_row)
        for col, name in zip(cols, names[start:start + per_row]):
            r = res.reports[name]
            fig = plots.confusion_heatmap(r.confusion, r.labels, title=f"{name}")
            fig.update_traces(showscale=False)
            col.plotly_chart(fig, key=f"cmp_confusion_{name}")
            if r.no_face:
                col.caption(f"{r.no_face} image(s) without a face are not in the matrix (counted wrong).")
    st.caption("Rows: true emotion, columns: predicted; colour and percentage are the share of the row.")


def show_mcnemar(res: Comparison) -> None:
    st.subheader("Pairwise McNemar tests")
    if len(res.names) < 2:
        st.info("Choose at least two models to test their differences.")
        return
    st.dataframe(mcnemar_frame(res), hide_index=True, column_config={
        "p-value": st.column_config.NumberColumn(format="%.4f")})
    st.caption("Exact McNemar test on the images where exactly one of the two models is right. With few test "
               "images only large differences reach significance.")


def _thumb_grid(res: Comparison, rows: pd.DataFrame, name: str) -> None:
    shown = rows.head(MAX_THUMBS)
    images, captions, failed = [], [], 0
    for _, row in shown.iterrows():
        try:
            images.append(thumbnail(res.path_of(row["file"]), 72))
        except FerError:
            failed += 1
            continue
        pred = row[name]
        captions.append(f"{row['label']} → {NO_FACE if pd.isna(pred) else pred}")
    if images:
        st.image(images, caption=captions, width=72)
    if len(rows) > MAX_THUMBS:
        st.caption(f"The first {MAX_THUMBS} of {len(rows)} are shown; the CSV below lists them all.")
    if failed:
        st.caption(f"{failed} image(s) are no longer available (the temporary test set was cleared); "
                   "press Compare again.")


def show_wrong(res: Comparison) -> None:
    st.subheader("Images each model got wrong")
    table = res.table
    focus = st.selectbox("True emotion", ["all"] + list(res.classes), key="cmp_wrong_emotion")
    if focus != "all":
        table = table[table["label"] == focus]
    tabs = st.tabs([f"{n} ({int((table[n] != table['label']).sum())})" for n in res.names])
    for tab, name in zip(tabs, res.names):
        with tab:
            wrong = table[table[name] != table["label"]]
            if wrong.empty:
                st.success("None wrong." if focus == "all" else f"No {focus} image wrong.")
                continue
            st.caption("Caption: true → predicted.")
            _thumb_grid(res, wrong, name)


def show_no_face(res: Comparison) -> None:
    missing = {n: res.no_face_files(n) for n in res.names if res.no_face_files(n)}
    if not missing:
        return
    st.subheader("No face found (counted as wrong)")
    for name, files in missing.items():
        st.warning(f"{name}: no face found in {len(files)} of {res.n} images; they count as wrong.",
                   icon=":material/face_retouching_off:")
        with st.expander(f"The {len(files)} image(s) {name} could not judge"):
            rows = res.table[res.table["file"].isin(files)]
            _thumb_grid(res, rows, name)
            st.dataframe(pd.DataFrame({"file": [Path(f).name for f in files],
                                       "label": rows.set_index("file").reindex(files)["label"].tolist()}),
                         hide_index=True)


def show_downloads(res: Comparison, root: str) -> None:
    st.subheader("Download")
    c1, c2 = st.columns(2)
    predictions = predictions_frame(res.table, res.names, root).to_csv(index=False).encode()
    summary = summary_frame(res).to_csv(index=False).encode()
    c1.download_button("Per-image predictions (CSV)", predictions, file_name="compare_predictions.csv",
                       mime="text/csv", key="cmp_download_predictions", icon=":material/download:")
    c2.download_button("Per-emotion summary (CSV)", summary, file_name="compare_summary.csv", mime="text/csv",
                       key="cmp_download_summary", icon=":material/download:")


def show_results(saved: dict, current: str | None) -> None:
    res: Comparison = saved["comparison"]
    st.divider()
    if current is not None and current != saved["signature"]:
        st.info("The results below are for the previous choice; press **Compare** to update them.")
    st.caption(f"Test set: {saved['description']} · {res.n:,} images scored on "
               f"{', '.join(res.classes)} · {len(res.names)} models · {res.seconds:.1f} s")
    for problem in res.failed_models:
        show_error(problem, prefix="left out", warning=True)
    if res.unreadable:
        st.warning(f"{len(res.unreadable)} image(s) could not be read and were left out, e.g. {res.unreadable[0]}")
    show_overall(res)
    show_per_emotion(res)
    show_confusions(res)
    show_mcnemar(res)
    show_wrong(res)
    show_no_face(res)
    show_downloads(res, saved["root"])


def main() -> None:
    st.title("Compare")
    st.caption("The AU model, CNNs and Teachable Machine models on exactly the same images: accuracy with "
               "bootstrap intervals, per emotion, confusions, paired tests and the images each one gets wrong.")
    previous: dict | None = st.session_state.get("cmp_result")
    current = None
    try:
        chosen = choose_test_set("cmp")
        entries = choose_models("cmp") if chosen is not None else []
        if chosen is not None and entries:
            items, root, description = chosen
            classes = choose_classes(items, entries)
            current = f"{root}|{len(items)}|{[e.name for e in entries]}|{classes}"
            if st.button("Compare", type="primary", key="cmp_run"):
                if not classes:
                    show_error("pick at least one emotion to score")
                else:
                    bar, progress = fraction_bar()
                    try:
                        comparison = run_comparison(entries, items, classes, progress=progress, loader=load_predictor)
                    finally:
                        bar.empty()
                    previous = {"comparison": comparison, "root": root, "description": description,
                                "signature": current}
                    st.session_state["cmp_result"] = previous
    except FerError as exc:
        show_error(exc)
    if previous is not None:
        show_results(previous, current)


run_page(main)
