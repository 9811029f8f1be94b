"""Masks: every model on the same faces with and without a drawn mask, per emotion, beside people."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from fer_core.au_table import au_label
from fer_core.emotions import shared_classes
from fer_core.errors import FerError
from fer_core.evaluation.mask_report import MaskReport, run_mask_report
from fer_core.figures.masks import (
    masked_vs_original_bars,
    per_emotion_frame,
    reasons_bars,
    shift_heatmap,
    summary_frame,
)
from fer_core.masks import HIDDEN_AUS, HUMAN_FINDINGS, STYLES, VISIBLE_AUS
from ui.common import (
    choose_models,
    choose_test_set,
    fraction_bar,
    load_predictor,
    page_setup,
    run_page,
    show_error,
)

page_setup("nav.masks", ":material/masks:")


def choose_mask() -> tuple[str, int]:
    c1, c2 = st.columns(2)
    style = c1.selectbox("Mask", list(STYLES), format_func=lambda s: STYLES[s].label, key="mask_style")
    seed = int(c2.number_input("Seed", 0, 1_000_000, 0, key="mask_seed",
                               help="Varies the shade and the folds; the same seed draws the same masks."))
    return style, seed


def show_summary(report: MaskReport) -> None:
    st.subheader("What the mask costs")
    frame = summary_frame(report)
    st.dataframe(frame, hide_index=True, column_config={
        "original": st.column_config.NumberColumn("accuracy, no mask", format="percent"),
        "masked": st.column_config.NumberColumn("accuracy, masked", format="percent"),
        "drop": st.column_config.NumberColumn("drop", format="percent"),
        "original macro F1": st.column_config.NumberColumn(format="%.3f"),
        "masked macro F1": st.column_config.NumberColumn(format="%.3f")})
    st.plotly_chart(masked_vs_original_bars(report), key="mask_bars")


def show_people(report: MaskReport) -> None:
    st.subheader("Beside people")
    st.info(f"**People** ({HUMAN_FINDINGS['source']}): {HUMAN_FINDINGS['summary']}", icon=":material/groups:")
    rows = []
    for emotion in report.original.classes:
        row = {"emotion": emotion, "people with a mask": HUMAN_FINDINGS.get(emotion, "not studied")}
        for name in report.names:
            shift = report.shift(name).get(emotion, {})
            gained = {k: v for k, v in shift.items() if k != emotion and v > 0}
            row[name] = (f"more often read as {max(gained, key=gained.get)} (+{100 * max(gained.values()):.0f} pts)"
                         if gained else "no new confusion")
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True)


def show_shift(report: MaskReport) -> None:
    st.subheader("What each emotion turns into")
    tabs = st.tabs(report.names)
    for tab, name in zip(tabs, report.names):
        tab.plotly_chart(shift_heatmap(report, name), key=f"mask_shift_{name}")
    st.caption("Red: an answer given more often once the face is masked, blue: less often, in points of the "
               "row (true emotion). The diagonal is what the model still gets right.")


def show_aus(report: MaskReport) -> None:
    st.subheader("Which AUs remain")
    c1, c2 = st.columns(2)
    c1.success("**Visible above a mask**: " + ", ".join(au_label(c) for c in VISIBLE_AUS))
    c2.warning("**Hidden (unknown, not zero)**: " + ", ".join(au_label(c) for c in HIDDEN_AUS))
    st.caption("Measured by `bench/mask_effect.py` on FER2013 val: the hidden AUs lose their correlation with "
               "the unmasked face (r near 0) once a mask is drawn; the visible ones keep it (r 0.5–0.7). "
               "AU models treat hidden AUs as unknown, so they neither count for nor against an emotion.")
    if report.reasons:
        tabs = st.tabs(list(report.reasons))
        for tab, name in zip(tabs, report.reasons):
            tab.plotly_chart(reasons_bars(report, name), key=f"mask_reasons_{name}")


def show_examples(report: MaskReport) -> None:
    if not report.examples:
        return
    st.subheader("Examples")
    cols = st.columns(len(report.examples))
    for col, (name, face, masked) in zip(cols, report.examples):
        col.image([face, masked], width=96, caption=["", ""])
        col.caption(name.split("/")[0])


def show_downloads(report: MaskReport) -> None:
    st.subheader("Download")
    c1, c2 = st.columns(2)
    c1.download_button("Mask report (JSON)", json.dumps(report.to_dict(), indent=1).encode(),
                       file_name="mask_report.json", mime="application/json", key="mask_download_json",
                       icon=":material/download:")
    c2.download_button("Per emotion, with and without the mask (CSV)", per_emotion_frame(report).to_csv(index=False).encode(),
                       file_name="mask_per_emotion.csv", mime="text/csv", key="mask_download_csv",
                       icon=":material/download:")


def show_results(saved: dict) -> None:
    report: MaskReport = saved["report"]
    st.divider()
    st.caption(f"Test set: {saved['description']} · {report.original.n:,} faces · mask: "
               f"{STYLES[report.style].label}, seed {report.seed}")
    for problem in report.original.failed_models:
        show_error(problem, prefix="left out", warning=True)
    if report.unmaskable:
        st.warning(f"{len(report.unmaskable)} image(s) had no face to put a mask on and were left out, "
                   f"e.g. {report.unmaskable[0]}")
    show_summary(report)
    show_people(report)
    show_shift(report)
    show_aus(report)
    show_examples(report)
    show_downloads(report)


def main() -> None:
    st.title("Masks")
    st.caption("What survives a mask: every model on the same faces, first as they are, then with a mask drawn "
               "from each face's landmarks over nose, mouth and chin. Per emotion, next to what people do.")
    saved: dict | None = st.session_state.get("mask_result")
    try:
        chosen = choose_test_set("mask")
        entries = choose_models("mask") if chosen is not None else []
        if chosen is not None and entries:
            items, _root, description = chosen
            style, seed = choose_mask()
            present = {it.label for it in items}
            classes = list(shared_classes([e.classes for e in entries if e.classes], present)) or sorted(present)
            if st.button("Run with and without masks", type="primary", key="mask_run"):
                bar, progress = fraction_bar()
                try:
                    report = run_mask_report(entries, items, classes, style=style, seed=seed, progress=progress,
                                             loader=load_predictor)
                finally:
                    bar.empty()
                saved = {"report": report, "description": description}
                st.session_state["mask_result"] = saved
    except FerError as exc:
        show_error(exc)
    if saved is not None:
        show_results(saved)


run_page(main)
