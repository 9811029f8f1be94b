"""Masks: every model on the same faces with and without a drawn mask, per emotion, beside people."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from fer_core.au_table import au_label
from fer_core.errors import FerError
from fer_core.evaluation.mask_report import MaskReport, run_mask_report
from fer_core.evaluation.metrics import p_text, share_text
from fer_core.figures.masks import (
    confidence_frame,
    confidence_shift_figure,
    confidence_words,
    left_out_images_frame,
    masked_vs_original_bars,
    per_emotion_frame,
    reasons_bars,
    shift_heatmap,
    summary_frame,
)
from fer_core.fileio import csv_bytes
from fer_core.i18n import emotion_label, kind_label, message, t
from fer_core.masks import HIDDEN_AUS, HUMAN_FINDINGS, STYLES, VISIBLE_AUS
from fer_core.measure.extract import default_workers
from ui.common import (
    MISSING,
    choose_models,
    choose_scored_emotions,
    choose_test_set,
    fraction_bar,
    kept_choice,
    load_predictor,
    model_version,
    page_setup,
    run_page,
    show_crops_hint,
    show_error,
    show_scoring_notes,
    shown_literally,
)

page_setup("nav.masks")


def style_label(style: str) -> str:
    return {"surgical": t("masks.style_surgical"), "white": t("masks.style_white"),
            "cloth": t("masks.style_cloth")}.get(style, STYLES[style].label)


def people_finding(key: str) -> str:
    """Carbon (2020)'s finding for an emotion (or the summary), in the page's language."""
    return {"summary": t("masks.human_summary"), "angry": t("masks.human_angry"), "disgust": t("masks.human_disgust"),
            "happy": t("masks.human_happy"), "sad": t("masks.human_sad"), "neutral": t("masks.human_neutral"),
            "fear": t("masks.human_fear")}.get(key, t("masks.not_studied"))


def choose_mask() -> tuple[str, int, bool]:
    """The mask's style and seed, and whether the images are face crops; drawn on every run (also
    before a test set is chosen), so Streamlit keeps the person's choice while they switch the
    test set's source."""
    c1, c2 = st.columns(2)
    # labels made during the run: AppTest formats options outside it, in the default language
    style = c1.selectbox(t("masks.mask"), list(STYLES), format_func={s: style_label(s) for s in STYLES}.__getitem__,
                         key=kept_choice("mask_style"))
    seed = int(c2.number_input(t("masks.seed"), 0, 1_000_000, 0, key=kept_choice("mask_draw_seed"), help=t("masks.seed_help")))
    crops = st.toggle(t("masks.crops_on"), key=kept_choice("mask_crops"), help=t("masks.crops_help"))
    return style, seed, crops


def show_summary(report: MaskReport) -> None:
    st.header(t("masks.costs"))
    frame = summary_frame(report)
    # shares as percentages with one decimal each ("41.7%", "25.0%": the "percent" format wrote
    # "41.67%" beside "25%"), p as text ("< 0.0001", not a 0.0000 that reads as impossible)
    shares = ("original", "masked", "drop")
    shown = frame.assign(**{c: frame[c] * 100 for c in shares}, **{"McNemar p": frame["McNemar p"].map(p_text)},
                         kind=frame["kind"].map(kind_label))
    shown.insert(shown.columns.get_loc("drop") + 1, "drop ci95",
                 [t("masks.drop_interval", low=share_text(lo, 1, points=True, signed=True),
                    high=share_text(hi, 1, points=True, signed=True))
                  for lo, hi in zip(frame["drop ci95_low"], frame["drop ci95_high"])])
    shown = shown.drop(columns=["drop ci95_low", "drop ci95_high"])
    st.dataframe(shown, hide_index=True, placeholder=MISSING, column_config={
        "model": st.column_config.TextColumn(t("masks.col_model")),
        "kind": st.column_config.TextColumn(t("masks.col_kind")),
        "original": st.column_config.NumberColumn(t("masks.col_original"), format="%.1f%%"),
        "masked": st.column_config.NumberColumn(t("masks.col_masked"), format="%.1f%%"),
        # percentage points, signed: a rise reads "-8.3 pp", not a "-8.3%" share
        "drop": st.column_config.NumberColumn(t("masks.col_drop"), format=t("masks.points_format"), help=t("masks.col_drop_help")),
        "drop ci95": st.column_config.TextColumn(t("masks.col_drop_ci"), help=t("masks.col_drop_ci_help")),
        "original macro F1": st.column_config.NumberColumn(t("masks.col_original_f1"), format="%.3f"),
        "masked macro F1": st.column_config.NumberColumn(t("masks.col_masked_f1"), format="%.3f"),
        "McNemar p": st.column_config.TextColumn(t("masks.col_mcnemar"), help=t("masks.col_mcnemar_help")),
        "n": st.column_config.NumberColumn(t("compare.col_n"), format="localized")})
    st.plotly_chart(masked_vs_original_bars(report), key="mask_bars")


def show_confidence(report: MaskReport) -> None:
    """How sure each model is and how often right, without and with the mask: whether its
    percentage under a mask still means what it says."""
    frame = confidence_frame(report)
    st.header(t("masks.confidence_heading"))
    silent = [name for name in report.names if name not in set(frame["model"])]
    if silent:  # every masked face unjudged (an AU model reading only the AUs a mask hides)
        st.caption(t("masks.no_masked_answers", models=shown_literally(", ".join(silent))))
    if frame.empty:
        return
    for _, row in frame.iterrows():
        st.markdown(confidence_words(row, shown_literally(row["model"])))
    st.plotly_chart(confidence_shift_figure(frame, order=report.names), key="mask_confidence")
    st.caption(t("masks.confidence_caption"))


def show_people(report: MaskReport) -> None:
    st.header(t("masks.beside_people"))
    st.info(t("masks.people_line", source=HUMAN_FINDINGS["source"], summary=people_finding("summary")),
            icon=":material/groups:")
    rows = []
    empty = set(report.empty_classes)  # every image unmaskable: nothing was read, no "no change"
    for emotion in report.original.classes:
        row = {t("masks.col_emotion"): emotion_label(emotion), t("masks.col_people"): people_finding(emotion)}
        for name in report.names:
            tied, most = report.most_gained(name, emotion)
            row[name] = (t("masks.no_images") if emotion in empty else
                         t("masks.read_as", emotion=" / ".join(emotion_label(k) for k in tied),
                           points=f"{100 * most:.0f}") if tied else t("masks.no_new_confusion"))
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    from fer_core.evaluation.report import few_images_note

    few = few_images_note(report.original)  # as the Compare report says it
    if few:
        st.caption(few)


def show_shift(report: MaskReport) -> None:
    st.header(t("masks.turns_into"))
    tabs = st.tabs([shown_literally(n) for n in report.names])
    for tab, name in zip(tabs, report.names):
        tab.plotly_chart(shift_heatmap(report, name), key=f"mask_shift_{name}")
    st.caption(t("masks.shift_caption"))


def show_aus(report: MaskReport) -> None:
    st.header(t("masks.which_aus"))
    c1, c2 = st.columns(2)
    c1.success(t("masks.visible", aus=", ".join(au_label(c) for c in VISIBLE_AUS)))
    c2.warning(t("masks.hidden", aus=", ".join(au_label(c) for c in HIDDEN_AUS)))
    st.caption(t("masks.aus_caption"))
    if report.reasons:
        tabs = st.tabs([shown_literally(n) for n in report.reasons])
        for tab, name in zip(tabs, report.reasons):
            tab.plotly_chart(reasons_bars(report, name), key=f"mask_reasons_{name}")


def show_examples(report: MaskReport) -> None:
    if not report.examples:
        return
    st.header(t("masks.examples"))
    cols = st.columns(len(report.examples))
    for col, example in zip(cols, report.examples):
        # each picture says which it is: a screen reader reads the caption, and no caption read as two
        # unnamed images
        emotion = emotion_label(example.emotion)
        col.image([example.face, example.masked], width=96, caption=[t("figures.original"), t("figures.masked")],
                  alt=[t("masks.example_alt", emotion=emotion), t("masks.example_masked_alt", emotion=emotion)])
        col.caption(emotion)


def show_downloads(report: MaskReport, passed_over: list[str] | tuple = ()) -> None:
    """Every result as a file; the JSON as ``mask-report --json`` writes it (``passed_over`` too)."""
    st.header(t("masks.download"))
    c1, c2 = st.columns(2)  # the per-image label is long: on a row of its own it is not cut off
    from fer_core.provenance import models_sha256, provenance

    # as mask-report --json ends: what made it (version, commit, libraries, each model file's SHA-256)
    document = {**report.to_dict(), "passed_over": list(passed_over),
                "provenance": provenance("the dashboard's Masks page", models_sha256(report.names))}
    c1.download_button(t("masks.download_json"), json.dumps(document, indent=1).encode(),
                       file_name="mask_report.json", mime="application/json", key="mask_download_json",
                       icon=":material/download:", on_click="ignore")
    c2.download_button(t("masks.download_csv"), csv_bytes(per_emotion_frame(report)),
                       file_name="mask_per_emotion.csv", mime="text/csv", key="mask_download_csv",
                       icon=":material/download:", on_click="ignore")
    st.download_button(t("masks.download_images_csv"), csv_bytes(report.per_image_frame()),
                       file_name="mask_per_image.csv", mime="text/csv", key="mask_download_images_csv",
                       icon=":material/download:", on_click="ignore")
    confidence = confidence_frame(report)
    if not confidence.empty:
        st.download_button(t("masks.download_confidence"), csv_bytes(confidence), file_name="mask_confidence.csv",
                           mime="text/csv", key="mask_download_confidence", icon=":material/download:",
                           on_click="ignore")
    left_out = left_out_images_frame(report, passed_over)
    if not left_out.empty:  # the images the page warns about, each with why, as Compare offers them
        st.download_button(t("masks.download_left_out"), csv_bytes(left_out), file_name="mask_left_out.csv",
                           mime="text/csv", key="mask_download_left_out", icon=":material/download:",
                           on_click="ignore")


def show_results(saved: dict, current: str | None) -> None:
    report: MaskReport = saved["report"]
    st.divider()
    if current != saved["signature"]:  # another choice, or none made yet (no test set)
        st.info(t("masks.stale"))
    st.caption(t("masks.result_line", description=saved["description"], n=f"{report.original.n:,}",
                 style=style_label(report.style), seed=report.seed)
               + (" · " + t("masks.crops_caption") if report.crops else ""))
    for problem in report.original.failed_models:
        show_error(problem, prefix=t("masks.left_out"), warning=True)
    for problem in report.reasons_failed:
        st.warning(t("masks.reasons_failed", problem=shown_literally(message(problem))))
    if report.unmaskable:
        st.warning(t("masks.unmaskable", n=len(report.unmaskable), example=shown_literally(message(report.unmaskable[0]))))
        if report.not_placed:
            st.caption(t("masks.not_placed", n=report.not_placed))
        show_crops_hint(len(report.crop_like_no_face))
        with st.expander(t("masks.unmaskable_all", n=len(report.unmaskable))):
            st.dataframe(pd.DataFrame({t("masks.col_problem"): [message(line) for line in report.unmaskable]}),
                         hide_index=True)
    unreadable = report.original.unreadable
    if unreadable:
        st.warning(t("compare.unreadable", n=len(unreadable), example=shown_literally(message(unreadable[0]))))
    if report.empty_classes:
        st.caption(t("masks.empty_classes", emotions=", ".join(emotion_label(e) for e in report.empty_classes)))
    show_scoring_notes(report.original)
    show_summary(report)
    show_confidence(report)
    show_people(report)
    show_shift(report)
    show_aus(report)
    show_examples(report)
    show_downloads(report, saved.get("passed_over", ()))


def main() -> None:
    st.title(t("masks.title"))
    st.caption(t("masks.intro"))
    st.caption(t("home.limits_short"))
    saved: dict | None = st.session_state.get("mask_result")
    current = None
    try:
        try:
            chosen, problem = choose_test_set("mask"), None
        except FerError as exc:  # a bad folder: said below the choices, which stay as they were
            chosen, problem = None, exc
        # Drawn on every run, with or without a test set: a widget not drawn on a run loses its
        # value, so switching the source would reset the models, the style and the seed.
        entries = choose_models("mask")
        style, seed, crops = choose_mask()
        if problem is not None:
            raise problem
        if chosen is not None and entries:
            items, root, description, passed_over = chosen
            # None when the models share no emotion with the images: the report says so in one line
            classes = choose_scored_emotions("mask", items, entries)
            current = f"{root}|{len(items)}|{description!r}|{[model_version(e) for e in entries]}|{style}|{seed}|{classes}|{crops}"
            if st.button(t("masks.run"), type="primary", key="mask_run"):
                if classes is not None and not classes:
                    show_error(t("compare.no_classes"))
                else:
                    bar, progress = fraction_bar()
                    try:
                        report = run_mask_report(entries, items, classes, style=style, seed=seed, progress=progress,
                                                 loader=load_predictor, workers=default_workers(), root=root,
                                                 crops=crops)
                    finally:
                        bar.empty()
                    saved = {"report": report, "description": description, "signature": current,
                             "passed_over": passed_over}  # for the downloads
                    st.session_state["mask_result"] = saved
    except FerError as exc:
        show_error(exc)
    if saved is not None:
        show_results(saved, current)


run_page(main)
