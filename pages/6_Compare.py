"""Compare: every chosen model (AU models, CNNs, Teachable Machine, unsaved ones) on exactly the same test images."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from fer_core.errors import FerError, one_line
from fer_core.evaluation.compare import Comparison, explain_image, run_comparison
from fer_core.figures import plots
from fer_core.figures.compare import (
    accuracy_ci_bars,
    accuracy_summary,
    answer_calibration_figure,
    answer_calibration_frame,
    answer_calibration_words,
    au_contribution_bars,
    calibration_frame,
    calibration_reading,
    calibration_summary,
    calibration_words,
    column_titles,
    comparison_tables,
    group_figure,
    group_frames,
    group_gap_words,
    group_notes,
    mcnemar_frame,
    p_text,
    per_emotion_grouped_bars,
    percent,
    reliability_diagram,
    with_difference_text,
)
from fer_core.fileio import csv_bytes
from fer_core.i18n import current_language, emotion_label, kind_label, message, t
from fer_core.images import png_data_uri, relative_file
from fer_core.measure.extract import default_workers
from ui.common import (
    MISSING,
    against_text,
    choose_models,
    choose_scored_emotions,
    choose_test_set,
    chosen_groups,
    fraction_bar,
    held_folder,
    keep_for,
    kept_choice,
    kept_for,
    load_predictor,
    model_version,
    page_setup,
    run_page,
    show_crops_hint,
    show_error,
    show_scoring_notes,
    shown_literally,
    thumbnail,
)

page_setup("nav.compare")

MAX_THUMBS = 120  # wrong images shown per model; the CSV has them all


def shown_as(emotions, everything: str | None = None) -> dict[str, str]:
    """Option → its label, translated now: a widget's ``format_func`` must not read the language
    later (Streamlit's test harness calls it outside the run)."""
    labels = {e: emotion_label(e) for e in emotions}
    if everything is not None:
        labels = {"all": everything, **labels}
    return labels


def _explains(model) -> bool:
    """Whether a chosen model (manifest entry or Predictor) explains in AUs."""
    from fer_core.predictors.registry import kinds

    if hasattr(model, "predict_proba"):
        return bool(model.explains)
    kind = kinds().get(getattr(model, "kind", ""))
    return bool(kind and kind.explains)


# -- results ---------------------------------------------------------------------------------
def _titles(*columns: str) -> dict:
    titles = column_titles()
    return {c: st.column_config.Column(titles[c]) for c in columns}


def show_overall(res: Comparison) -> None:
    st.header(t("compare.overall_heading"))
    summary = accuracy_summary(res)
    shown = summary.assign(accuracy=summary["accuracy"] * 100, kind=summary["kind"].map(kind_label),
                           ci95=[f"{percent(lo)} – {percent(hi)}" for lo, hi in zip(summary["ci95_low"],
                                                                                summary["ci95_high"])],
                           kappa_ci95=[MISSING if pd.isna(lo) else f"{lo:.3f} – {hi:.3f}"
                                       for lo, hi in zip(summary["kappa_ci95_low"], summary["kappa_ci95_high"])],
                           macro_f1_ci95=[MISSING if pd.isna(lo) else f"{lo:.3f} – {hi:.3f}"
                                          for lo, hi in zip(summary["macro_f1_ci95_low"], summary["macro_f1_ci95_high"])])
    titles = column_titles()
    st.dataframe(shown[["model", "kind", "accuracy", "ci95", "macro_f1", "macro_f1_ci95", "kappa", "kappa_ci95",
                        "no_face", "n"]],
                 hide_index=True,
                 placeholder=MISSING,
                 column_config={
                     **_titles("model", "kind", "n"),
                     "accuracy": st.column_config.NumberColumn(titles["accuracy"], format="%.1f%%"),
                     "ci95": st.column_config.TextColumn(titles["ci95"]),
                     "macro_f1": st.column_config.NumberColumn(titles["macro_f1"], format="%.3f"),
                     "kappa": st.column_config.NumberColumn(titles["kappa"], format="%.3f", help=t("compare.kappa_help")),
                     "kappa_ci95": st.column_config.TextColumn(t("compare.col_kappa_ci95")),
                     "macro_f1_ci95": st.column_config.TextColumn(t("compare.col_macro_f1_ci95"),
                                                                  help=t("compare.macro_f1_ci95_help")),
                     "no_face": st.column_config.NumberColumn(titles["no_face"], help=t("compare.no_face_help")),
                 })
    st.plotly_chart(accuracy_ci_bars(summary), key="cmp_overall")
    st.caption(t("compare.overall_caption") + (" " + t("compare.crops_caption") if res.crops else ""))


def show_per_emotion(res: Comparison) -> None:
    st.header(t("compare.per_emotion_heading"))
    overall = {name: r.accuracy for name, r in res.reports.items()}
    frame = res.per_emotion_frame()
    st.plotly_chart(per_emotion_grouped_bars(frame, order=res.classes, overall=overall), key="cmp_per_emotion")
    st.caption(t("compare.per_emotion_caption"))
    with st.expander(t("compare.per_emotion_table")):  # the chart's numbers, for a screen reader or a keyboard
        table = frame.pivot(index="model", columns="emotion", values="accuracy").reindex(
            index=res.names, columns=list(res.classes)) * 100
        st.dataframe(table.rename(columns=emotion_label).rename_axis(t("compare.col_model")).reset_index(),
                     hide_index=True, placeholder=MISSING,
                     column_config={emotion_label(e): st.column_config.NumberColumn(format="%.1f%%")
                                    for e in res.classes})


def show_confusions(res: Comparison) -> None:
    st.header(t("compare.confusion_heading"))
    st.caption(t("compare.confusion_caption"))
    for tab, name in zip(st.tabs([shown_literally(n) for n in res.names]), res.names):
        with tab:
            st.plotly_chart(plots.confusion_heatmap(res.reports[name], unscored=res.unscored_answers(name)),
                            key=f"cmp_confusion_{name}")


def show_mcnemar(res: Comparison) -> None:
    st.header(t("compare.mcnemar_heading"))
    if len(res.names) < 2:
        st.info(t("compare.mcnemar_one"))
        return
    shown = with_difference_text(mcnemar_frame(res))
    for column in ("p-value", "p (Holm)"):  # "< 0.0001", not a 0.0000 that reads as impossible
        shown[column] = [p_text(p) for p in shown[column]]
    st.dataframe(shown, hide_index=True, placeholder=MISSING, column_config=_titles(*shown.columns))
    st.caption(t("compare.mcnemar_caption"))


def show_calibration(res: Comparison) -> None:
    """How sure each model said it was against how often it was right: whether its percentages,
    shown beside every answer, can be read as chances."""
    st.header(t("compare.calibration_heading"))
    summary = calibration_summary(res)
    if summary.empty:
        st.info(t("compare.calibration_none"))
        return
    if len(summary) <= MAX_SENTENCES:
        for name in summary["model"]:
            st.markdown(calibration_words(shown_literally(name), res.reports[name].calibration))
    else:  # nine paragraphs of one pattern read as a wall: a table, each model's reading in words
        readings = [calibration_reading(res.reports[name].calibration) for name in summary["model"]]
        st.dataframe(summary.assign(reading=readings)[["model", "answers", "mean_confidence", "accuracy_answered",
                                                        "reading", "ece", "chance_ece", "log_loss", "brier"]],
                     hide_index=True, column_config=_calibration_columns())
    for name, emotions in res.cannot_predict.items():
        if name in set(summary["model"]):  # its answers on those images are wrong however sure it is
            st.caption(t("compare.calibration_cannot", model=shown_literally(name),
                         emotions=", ".join(emotion_label(e) for e in emotions)))
    st.plotly_chart(reliability_diagram(calibration_frame(res), order=res.names), key="cmp_calibration")
    st.caption(t("compare.calibration_caption"))
    if len(summary) <= MAX_SENTENCES:
        with st.expander(t("compare.calibration_table")):  # the sentences' numbers, for a screen reader or a keyboard
            st.dataframe(summary, hide_index=True, column_config=_calibration_columns())
    show_answer_calibration(res)


def show_answer_calibration(res: Comparison) -> None:
    """The same per emotion answered: the percentage beside a "sad" can mean more or less than the
    one beside a "happy" from a model calibrated on the whole."""
    frame = answer_calibration_frame(res)
    if frame.empty:
        return
    st.subheader(t("compare.answer_heading"))
    for line in answer_calibration_words(frame) or [t("compare.answer_none")]:
        st.markdown(line)
    st.plotly_chart(answer_calibration_figure(frame, order=res.names, classes=res.classes), key="cmp_answer_calibration")
    st.caption(t("compare.answer_caption"))
    with st.expander(t("compare.answer_table")):
        shown = frame.assign(emotion_answered=[emotion_label(e) for e in frame["emotion_answered"]],
                             reading=[calibration_reading(res.reports[m].calibration_by_answer[e])
                                      for m, e in zip(frame["model"], frame["emotion_answered"])])
        st.dataframe(shown, hide_index=True, column_config=_calibration_columns())


MAX_SENTENCES = 3  # models whose calibration is said in a sentence each; more get a table


def _calibration_columns() -> dict:
    return {**_titles("model", "answers", "emotion_answered"), "reading": st.column_config.TextColumn(t("compare.col_reading")),
            **{c: st.column_config.NumberColumn(column_titles()[c], format="%.3f")
               for c in ("mean_confidence", "accuracy_answered", "gap", "gap_ci95_low", "gap_ci95_high", "ece",
                         "chance_ece", "log_loss", "brier")}}


def _caption(row: pd.Series, name: str) -> str:
    pred = row[name]
    return f"{emotion_label(row['label'])} → {t('compare.no_face') if pd.isna(pred) else emotion_label(pred)}"


def _alt_text(row: pd.Series, name: str) -> str:
    """What a screen reader says for a wrong image's thumbnail (the caption's arrow reads as nothing)."""
    pred = row[name]
    return t("compare.thumb_alt", true=emotion_label(row["label"]),
             answer=t("compare.no_face") if pd.isna(pred) else emotion_label(pred))


def _thumb_grid(res: Comparison, rows: pd.DataFrame, name: str) -> None:
    shown = rows.head(MAX_THUMBS)
    images, captions, alts, failed = [], [], [], 0
    for _, row in shown.iterrows():
        try:
            images.append(thumbnail(res.path_of(row["file"]), 72))
        except FerError:
            failed += 1
            continue
        captions.append(_caption(row, name))
        alts.append(_alt_text(row, name))
    if images:
        st.image(images, caption=captions, width=72, alt=alts)
    if len(rows) > MAX_THUMBS:
        st.caption(t("compare.thumbs_first", shown=MAX_THUMBS, total=len(rows)))
    if failed:
        st.caption(t("compare.thumbs_failed", n=failed))


def _thumb_table(res: Comparison, rows: pd.DataFrame, name: str, root: str | None) -> str | None:
    """The wrong images as a table of thumbnails; a click on a row picks that face (its file). Files are
    named relative to the test set's folder, as in the downloads (a drawn set's folder is a temporary one)."""
    shown = rows.head(MAX_THUMBS)
    records, failed = [], 0
    for _, row in shown.iterrows():
        try:
            image = png_data_uri(thumbnail(res.path_of(row["file"]), 72))
        except FerError:
            failed += 1
            image = None
        pred = row[name]
        records.append({"face": image, "true": emotion_label(row["label"]),
                        "answer": t("compare.no_face") if pd.isna(pred) else emotion_label(pred),
                        "file": relative_file(row["file"], root)})
    frame = pd.DataFrame(records, columns=["face", "true", "answer", "file"])
    event = st.dataframe(frame, hide_index=True, on_select="rerun", selection_mode="single-row", row_height=78,
                         key=f"cmp_wrong_table_{name}", column_config={
                             # The grid draws on a canvas and an image cell takes no alt text: the
                             # column's help says what the pictures are and which columns name them.
                             "face": st.column_config.ImageColumn(t("compare.wrong_face"), width="small", help=t(
                                 "compare.wrong_face_help", true=t("compare.wrong_true"),
                                 answer=t("compare.wrong_answer"), file=t("compare.wrong_file"))),
                             "true": st.column_config.TextColumn(t("compare.wrong_true")),
                             "answer": st.column_config.TextColumn(t("compare.wrong_answer")),
                             "file": st.column_config.TextColumn(t("compare.wrong_file"))})
    if len(rows) > MAX_THUMBS:
        st.caption(t("compare.thumbs_first", shown=MAX_THUMBS, total=len(rows)))
    if failed:
        st.caption(t("compare.thumbs_failed", n=failed))
    picked = list(getattr(getattr(event, "selection", None), "rows", None) or [])
    return str(shown["file"].iloc[picked[0]]) if picked and picked[0] < len(frame) else None


def show_explanation(res: Comparison, rows: pd.DataFrame, name: str, explainer, clicked: str | None) -> None:
    """The wrong image clicked in the table (or picked here) and how the AU model reads that face."""
    if explainer is None:
        st.caption(t("compare.explain_no_model"))
        return
    files = rows["file"].tolist()[:MAX_THUMBS]
    captions = {f: f"{Path(f).name}: {_caption(row, name)}" for f, (_, row) in zip(files, rows.iterrows())}
    alts = {f: _alt_text(row, name) for f, (_, row) in zip(files, rows.iterrows())}
    key = f"cmp_explain_{name}"
    if clicked is not None and clicked != st.session_state.get(f"{key}_clicked"):
        st.session_state[f"{key}_clicked"] = clicked  # a new click moves the picker to that face
        st.session_state[key] = clicked
    picked = st.selectbox(t("compare.explain_pick", model=explainer.name), files, index=None,
                          key=key, format_func=captions.__getitem__,
                          placeholder=t("compare.explain_placeholder"), help=t("compare.explain_help"))
    if picked is None:
        return
    # Kept with this comparison: a new run (a model retrained or replaced under the same name, a
    # file that was unreadable a moment ago) explains the face again.
    found = kept_for(res, "cmp_explained", (picked, explainer.name))
    if found is None:
        with st.spinner(t("compare.explain_running")):
            try:
                label = rows.set_index("file").loc[picked, "label"]
                found = explain_image(res.path_of(picked), label, explainer, crops=res.crops)
            except FerError as exc:
                found = one_line(exc)
        keep_for(res, "cmp_explained", (picked, explainer.name), found)
    if isinstance(found, str):
        show_error(found)
        return
    c1, c2, c3 = st.columns([1, 1.3, 1.3])
    try:
        c1.image(thumbnail(res.path_of(picked), 192), caption=captions[picked], alt=alts[picked])
    except FerError as exc:
        c1.caption(one_line(exc))
    ex = found.explanation
    if ex is None:
        c2.warning(t("compare.explain_no_face"))
        return
    reasons = ex.active_reasons  # the AUs the face shows as reasons, highlighted
    with c1:  # the sentence and what speaks against it, as Try it gives them for the same face
        st.markdown(t("compare.explain_reads", model=explainer.name, emotion=emotion_label(ex.emotion),
                      p=percent(ex.probabilities[ex.emotion])))
        st.markdown(ex.sentence[0].upper() + ex.sentence[1:])
        if ex.against:
            st.caption(against_text(ex))
    c2.plotly_chart(au_contribution_bars(ex), key=f"cmp_contrib_{name}")
    network = ex.extra.get("aus_network")  # an AU-bottleneck network reasons from its own AU reading
    c3.plotly_chart(plots.au_intensity_bars(network if network is not None else found.aus,
                                            highlight=[c.au for c in reasons],
                                            title=t("try_it.network_title") if network is not None
                                            else t("compare.fig_intensities")), key=f"cmp_aus_{name}")


def show_wrong(res: Comparison, explainer, root: str | None) -> None:
    st.header(t("compare.wrong_heading"))
    labels = shown_as(res.classes, everything=t("compare.all_emotions"))
    focus = st.selectbox(t("compare.true_emotion"), list(labels), key=kept_choice("cmp_wrong_emotion"),
                         format_func=labels.__getitem__)
    wrong_of = {name: res.wrong_rows(name, None if focus == "all" else focus) for name in res.names}
    tabs = st.tabs([f"{shown_literally(n)} ({len(wrong_of[n])})" for n in res.names])
    for tab, name in zip(tabs, res.names):
        with tab:
            wrong = wrong_of[name]
            if wrong.empty:
                st.success(t("compare.none_wrong") if focus == "all"
                           else t("compare.none_wrong_of", emotion=emotion_label(focus)))
                continue
            st.caption(t("compare.thumbs_caption"))
            clicked = _thumb_table(res, wrong, name, root)
            show_explanation(res, wrong, name, explainer, clicked)


def show_no_face(res: Comparison) -> None:
    missing = {n: res.no_face_files(n) for n in res.names if res.no_face_files(n)}
    if not missing:
        return
    st.header(t("compare.no_face_heading"))
    show_crops_hint(len(res.crop_like_no_face))
    for name, files in missing.items():
        st.warning(t("compare.no_face_warning", model=name, n=len(files), total=res.n),
                   icon=":material/face_retouching_off:")
        with st.expander(t("compare.no_face_expander", model=name, n=len(files))):
            rows = res.table[res.table["file"].isin(files)]
            _thumb_grid(res, rows, name)
            st.dataframe(pd.DataFrame({"file": [Path(f).name for f in files],
                                       "label": [emotion_label(label) for label in
                                                 rows.set_index("file").reindex(files)["label"]]}),
                         hide_index=True, column_config={"file": st.column_config.Column(t("compare.wrong_file")),
                                                         "label": st.column_config.Column(t("compare.col_label"))})


def report_html(saved: dict, lang: str, faces: bool = True) -> bytes:
    """The self-contained HTML report of this comparison, built when the button is pressed (in the
    server's download request, outside this run: so the language and the faces switch are passed)."""
    from fer_core.evaluation.report import ReportSettings, comparison_report_html

    settings = saved.get("settings") or ReportSettings.now(saved["description"].plain(), saved["root"],
                                                           temporary=saved.get("folder") is not None)
    entries = [m for m in saved.get("models", []) if not hasattr(m, "predict_proba")]
    return comparison_report_html(saved["comparison"], settings, entries, lang=lang, faces=faces).encode("utf-8")


def show_downloads(saved: dict) -> None:
    res: Comparison = saved["comparison"]
    st.header(t("compare.download_heading"))
    files = {name: csv_bytes(frame) for name, frame in
             comparison_tables(res, saved["root"], saved.get("passed_over", ())).items()}
    labels = {"compare_predictions.csv": t("compare.dl_predictions"),
              "compare_probabilities.csv": t("compare.dl_probabilities"),
              "compare_summary.csv": t("compare.dl_summary"),
              "compare_precision_recall_f1.csv": t("compare.dl_precision_recall"),
              "compare_confusion.csv": t("compare.dl_confusion"),
              "compare_mcnemar.csv": t("compare.dl_mcnemar"),
              "compare_calibration.csv": t("compare.dl_calibration"),
              "compare_calibration_by_answer.csv": t("compare.dl_calibration_by_answer"),
              "compare_groups.csv": t("compare.dl_groups"), "compare_group_gaps.csv": t("compare.dl_group_gaps"),
              "compare_left_out.csv": t("compare.dl_left_out")}
    columns = st.columns(3)
    for i, (file_name, data) in enumerate(files.items()):
        columns[i % 3].download_button(labels[file_name], data, file_name=file_name, mime="text/csv",
                                       key=f"cmp_download_{Path(file_name).stem}", icon=":material/download:", on_click="ignore")
    lang = current_language()
    columns[len(files) % 3].download_button(
        t("compare.dl_report"), lambda: report_html(saved, lang), file_name="compare_report.html", mime="text/html",
        key="cmp_download_report", icon=":material/description:", help=t("compare.dl_report_help"),
        type="primary", on_click="ignore")
    # a button of its own, under a name of its own: a switch left the other file one click away, and
    # both were compare_report.html
    columns[(len(files) + 1) % 3].download_button(
        t("compare.dl_report_no_faces"), lambda: report_html(saved, lang, faces=False),
        file_name="compare_report_no_faces.html", mime="text/html", key="cmp_download_report_no_faces",
        icon=":material/face_retouching_off:", help=t("compare.dl_report_no_faces_help"), on_click="ignore")


def show_groups(res: Comparison) -> None:
    """Each model's accuracy per group of the faces (a column of the labels sheet), the gaps between
    groups and whether two models' gaps differ: the fairness question, each emotion weighted alike."""
    for problem in res.group_problems().values():  # one group among the images scored, or one value per person
        show_error(problem, warning=True)
    analyses = res.group_analyses()
    scores, gaps = group_frames(res, analyses)
    for column, analysis in analyses.items():
        st.header(t("compare.groups_heading") + f": {shown_literally(column)}")
        for line in group_gap_words(analysis):
            st.markdown(line)
        for note in group_notes(analysis):
            st.caption(note)
        st.plotly_chart(group_figure(analysis, order=res.names), key=f"cmp_groups_{column}")
        st.caption(t("compare.groups_caption"))
        with st.expander(t("compare.groups_table")):
            st.dataframe(gaps[gaps["column"] == column].drop(columns="column"), hide_index=True, placeholder=MISSING)
            st.dataframe(scores[scores["column"] == column].drop(columns="column"), hide_index=True, placeholder=MISSING)


def show_results(saved: dict, current: str | None) -> None:
    res: Comparison = saved["comparison"]
    groups, cluster = chosen_groups("cmp")
    res.attach_groups(groups, cluster_column=cluster)  # chosen, or changed, after the run: no model runs again
    st.divider()
    if current != saved["signature"]:  # also when the test set or the models were cleared
        st.info(t("compare.stale"))
    st.caption(t("compare.run_caption", description=saved["description"], n=f"{res.n:,}",
                 emotions=", ".join(emotion_label(e) for e in res.classes), models=len(res.names),
                 seconds=f"{res.seconds:.1f}")
               + (t("compare.run_caption_kept", kept=", ".join(
                   t("compare.kept_of", model=shown_literally(name), n=f"{n:,}", total=f"{res.n:,}")
                   for name, n in res.answers_from_cache.items())) if res.answers_from_cache else ""))
    for problem in res.failed_models:
        show_error(problem, prefix=t("compare.left_out"), warning=True)
    if res.unreadable:
        st.warning(t("compare.unreadable", n=len(res.unreadable), example=shown_literally(message(res.unreadable[0]))))
        if len(res.unreadable) > 1:
            with st.expander(t("compare.unreadable_all", n=len(res.unreadable))):
                st.dataframe(pd.DataFrame({t("compare.col_problem"): res.unreadable}), hide_index=True)
    show_scoring_notes(res)
    show_overall(res)
    show_per_emotion(res)
    show_confusions(res)
    show_mcnemar(res)
    show_calibration(res)
    show_groups(res)
    explainers = [m for m in saved.get("models", []) if _explains(m)]
    explainer = None
    if explainers:
        first = explainers[0]
        try:
            explainer = first if hasattr(first, "predict_proba") else load_predictor(first)
        except FerError as exc:
            show_error(exc, warning=True)
    show_wrong(res, explainer, saved.get("root"))
    show_no_face(res)
    show_downloads(saved)


def main() -> None:
    st.title(t("compare.title"))
    st.caption(t("compare.intro"))
    previous: dict | None = st.session_state.get("cmp_result")
    current = None
    try:
        chosen = choose_test_set("cmp", groups=True)
        models = choose_models("cmp") if chosen is not None else []
        if chosen is not None and models:
            items, root, description, passed_over = chosen
            classes = choose_scored_emotions("cmp", items, models)
            crops = st.toggle(t("compare.crops_on"), key=kept_choice("cmp_crops"), help=t("compare.crops_help"))
            current = f"{root}|{len(items)}|{description!r}|{[model_version(m) for m in models]}|{classes}|{crops}"
            if st.button(t("compare.run"), type="primary", key="cmp_run"):
                if classes is not None and not classes:
                    show_error(t("compare.no_classes"))
                else:
                    from fer_core.evaluation.report import ReportSettings

                    # any click stops a run; this one says so (leaving the page did, unsaid). It goes
                    # with the run: left under finished results, a click said "stopped" above them.
                    stop = st.empty()
                    stop.button(t("compare.stop"), key="cmp_stop", help=t("compare.stop_help"))
                    bar, progress = fraction_bar(t("compare.starting"))
                    try:
                        comparison = run_comparison(models, items, classes, progress=progress, loader=load_predictor,
                                                    workers=default_workers(), root=root, crops=crops)
                    finally:
                        bar.empty()
                        stop.empty()
                    # "folder": a drawn set's or a zip's temporary folder, kept while these results
                    # show (their thumbnails, explanations and report read its images)
                    folder = held_folder("cmp", root)
                    previous = {"comparison": comparison, "root": root, "description": description,
                                "passed_over": passed_over,  # for the left-out CSV
                                "signature": current, "models": list(models),
                                "settings": ReportSettings.now(description.plain(), root,
                                                               temporary=folder is not None,
                                                               paths=[it.path for it in items]),
                                "folder": folder}
                    st.session_state["cmp_result"] = previous
    except FerError as exc:
        show_error(exc)
    if st.session_state.get("cmp_stop"):  # the run the Stop click ended
        st.info(t("compare.stopped"))
    if previous is not None:
        show_results(previous, current)


run_page(main)
