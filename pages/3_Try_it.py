"""Try it: upload photos (or take one); each face gets AUs, emotion probabilities and a reason.

Faces are numbered left to right; a group photo is shown whole with numbered boxes, then one panel
per face in that order, and a face table. Every result can be downloaded: the faces (CSV, JSON)
and the numbered image (PNG).
"""

from __future__ import annotations

# ruff: noqa: E402  (the worker starts before this page's heavy imports)
# MediaPipe's worker (a process of its own, seconds to start) starts first thing, before pandas and
# plotly are imported here, so it is ready sooner after a photo is uploaded: a no-op when it runs
# already (app.py starts it when people arrive from Home; an address typed in skips app.py).
from fer_core.measure.tasks import TURNED_UPRIGHT, start_photo_worker

start_photo_worker()

import io
import json
import tempfile
import uuid
import weakref
from pathlib import Path

import pandas as pd
import streamlit as st
from PIL import Image

from fer_core.au_table import au_in_plain_words, au_label
from fer_core.emotions import close_call
from fer_core.errors import FerError, one_line
from fer_core.figures import plots
from fer_core.fileio import csv_bytes
from fer_core.i18n import FONT_FAMILY, current_language, emotion_label, kind_label, message, t
from fer_core.images import crop_shaped
from fer_core.masks import MASK_NOT_PLACED_REASON, STYLES, mark_options, shifted_by_mask
from fer_core.pipeline import (
    NO_FACE_MESSAGE,
    ModelOutput,
    PhotoResult,
    analyze_masked,
    analyze_photo,
    face_answers,
    face_order,
    nearest_face,
    photo_rows,
    photo_to_dict,
    probabilities_for,
)
from fer_core.predictors.ensemble import KIND as ENSEMBLE_KIND
from ui.common import (
    IMAGE_TYPES,
    VIDEO_FPS_CHOICES,
    add_new_options,
    against_text,
    caption_aus_read,
    digest,
    entries_of,
    keep_for,
    kept_choice,
    kept_for,
    load_predictor,
    log,
    page_setup,
    reading_notes,
    run_page,
    show_error,
    shown_in_code,
    shown_literally,
    warn_manifest_problems,
)

page_setup("nav.try_it")

SESSION_MODEL = "__session_model__"  # the selectbox value of the model trained in this session
MAX_KEPT_RESULTS = 64


def choose_models() -> tuple[object | None, str, str, list]:
    """(the explaining model, a key naming its version, its name, the other models' entries to show too)."""
    warn_manifest_problems()
    au_entries = entries_of(explains=True)
    names = [e.name for e in au_entries]
    trained = st.session_state.get("au_train")
    if trained and not trained.get("saved_as"):
        names.append(SESSION_MODEL)
    if not names:
        st.warning(t("try_it.no_au_model"))
        return None, "", "", []
    default = names.index("au-logreg-fer2013") if "au-logreg-fer2013" in names else 0
    # the model trained on the AU page this session (or saved from there) is the one to try, once
    newest = (trained.get("saved_as") or SESSION_MODEL) if trained else None
    offered = st.session_state.get("_try_model_offered")
    if newest in names and (offered is None or newest not in offered):
        st.session_state["try_model"] = newest
    st.session_state["_try_model_offered"] = names
    others = entries_of(explains=False)
    # named as Compare and Masks name it, with where it comes from
    session_label = t("try_it.session_model", name=trained.get("name", "")) if trained else ""
    c1, c2 = st.columns(2)
    name = c1.selectbox(t("try_it.au_model"), names, index=default, key=kept_choice("try_model"),
                        format_func={n: session_label if n == SESSION_MODEL else n for n in names}.__getitem__)
    chosen: list[str] = []
    if others:
        other_names = [e.name for e in others]
        add_new_options(kept_choice("try_others"), other_names)
        chosen = c2.multiselect(t("try_it.others"), other_names, default=other_names, key="try_others",
                                help=t("try_it.others_help"), placeholder=t("common.choose_options"))
    picked = [e for e in others if e.name in chosen]
    if name == SESSION_MODEL:
        from fer_core.predictors.au_models import AUPredictor

        label = trained.get("name") or session_label  # in tables and downloads, the name Compare gives it
        # A token made once per training (not id(), which a later model can reuse): results kept
        # for the model trained before must not be shown for the one trained after it.
        token = trained.setdefault("try_key", uuid.uuid4().hex)
        return AUPredictor(trained["model"], name="session model"), f"session:{token}", label, picked
    entry = au_entries[names.index(name)]
    return load_predictor(entry), f"{name}:{entry.sha256 or ''}", name, picked


def collect_inputs() -> list[tuple[str, bytes]]:
    uploads = st.file_uploader(t("try_it.upload"), type=IMAGE_TYPES, accept_multiple_files=True, key="try_upload")
    inputs = [(f.name, f.getvalue()) for f in uploads or []]
    if st.toggle(t("try_it.camera_on"), key="try_camera_on"):
        shot = st.camera_input(t("try_it.camera"), key="try_camera")
        if shot is not None:
            inputs.append((t("try_it.camera_photo"), shot.getvalue()))
    return inputs


def result_for(name: str, data: bytes, model, model_key: str, keep: int = MAX_KEPT_RESULTS,
               crop: bool = False) -> dict:
    """Kept in session state, so revisiting the page (or another rerun) does not recompute.
    ``keep``: how many results to keep, at least the photos on the page (with fewer kept, every
    rerun analysed them all again, each evicting the next). ``crop``: measured as a face crop."""
    results: dict = st.session_state.setdefault("try_results", {})
    key = (digest(data), name, model_key, crop)
    if key not in results:
        with st.spinner(t("try_it.analysing", name=name)):
            results[key] = (analyze_photo(data, name, model, crop=crop), model_key)
        while len(results) > max(keep, MAX_KEPT_RESULTS):
            results.pop(next(iter(results)))
    return results[key]


def run_other(entry, result, said: list[dict]) -> ModelOutput:
    """One other model's answer for every face of ``result``; a model that cannot be loaded is
    loaded once, and its one-line reason stands for every face."""
    per_face: list = []
    try:
        predictor = load_predictor(entry)
    except Exception as exc:
        log.exception("model %s failed to load", entry.name)
        failed = t("try_it.model_failed", name=entry.name, reason=message(one_line(exc)))
        return ModelOutput(entry.name, entry.kind, [failed] * len(result.faces))
    for face, known in zip(result.faces, said):
        try:
            per_face.append(probabilities_for(predictor, face.face, known))
        except Exception as exc:
            log.exception("model %s failed", entry.name)
            per_face.append(t("try_it.model_failed", name=entry.name, reason=message(one_line(exc))))
    return ModelOutput(entry.name, entry.kind, per_face)


def other_outputs(result, others: list, shown=None, explained_by: str = "") -> list[ModelOutput]:
    """The other models' probabilities for every face of a result (the crop every pixel model
    sees), computed once and kept with the result: the face table, the panels and the downloads
    all read these. ``shown(position, output)`` is called as each model's output is ready, so the
    page shows it before the next model is loaded. Ensembles run last and take what their members
    (and ``explained_by``, the explaining model) already said about each face, so no network runs
    twice."""
    said = [{explained_by: face.explanation.probabilities} if explained_by and face.explanation else {}
            for face in result.faces]
    outputs: list = [None] * len(others)
    for position in sorted(range(len(others)), key=lambda k: others[k].kind == ENSEMBLE_KIND):
        entry = others[position]
        key = (entry.name, entry.sha256 or "")
        output = kept_for(result, "try_other_probs", key)
        if output is None:
            with st.spinner(t("try_it.running", name=entry.name)):
                output = keep_for(result, "try_other_probs", key, run_other(entry, result, said),
                                  limit=MAX_KEPT_RESULTS * max(len(others), 1))
        for known, answer in zip(said, output.per_face):
            known[entry.name] = answer
        outputs[position] = output
        if shown is not None:
            shown(position, output)
    return outputs


def chart(target, fig, key: str) -> None:
    """A plotly chart in a font that draws Hangul."""
    fig.update_layout(font=dict(family=FONT_FAMILY))
    target.plotly_chart(fig, key=key)


def _percent(p: float) -> str:
    return f"{p:.0%}"


def probabilities_text(probs: dict[str, float]) -> str:
    """Every emotion's probability in words, most likely first, under its chart: the chart's numbers
    were in its hover alone, out of reach of a screen reader or a keyboard."""
    ranked = sorted(probs.items(), key=lambda kv: -kv[1])
    return t("try_it.proba_text", probabilities=", ".join(f"{emotion_label(e)} {_percent(p)}" for e, p in ranked))


def show_close_call(probabilities: dict[str, float]) -> None:
    """Under an answer whose runner-up is nearly as likely: the headline alone reads surer than the
    model is."""
    runner_up = close_call(probabilities)
    if runner_up:
        st.caption(t("try_it.close_call", runner=emotion_label(runner_up[0]), p=_percent(runner_up[1])))


def plain_words(codes: list[str]) -> str:
    """"In plain words: the corners of the mouth are pulled up and back, as in a smile (AU12); …"."""
    return t("try_it.plain_words", aus="; ".join(f"{au_in_plain_words(c)} ({c})" for c in codes if au_in_plain_words(c)))


def card_lines(ex, extra: list[str] = ()) -> list[str]:
    """A card's paragraphs: the sentence, each reason AU in plain words, ``extra`` (what the mask
    hides or moved), and whether the answer is a close call."""
    runner_up = close_call(ex.probabilities)
    return [ex.sentence[0].upper() + ex.sentence[1:],
            *(f"{au_label(c.au)}: {au_in_plain_words(c.au)}" for c in ex.active_reasons if au_in_plain_words(c.au)),
            *extra,
            t("try_it.close_call", runner=emotion_label(runner_up[0]), p=_percent(runner_up[1])) if runner_up else ""]


def card_png(result, picture, title: str, paragraphs: list[str], number: int):
    """A face's card (``plots.explanation_card``: the picture, the answer, its reasons in words and
    what a prediction is not) as a PNG, to print or put on a slide: made when it is clicked (a
    fifth of a second a face), from words put in the page's language now."""
    footer = t("try_it.card_footer", name=result.name, n=number) + " " + t("try_it.card_limits")
    title, paragraphs = title.replace("**", ""), [p.replace("**", "") for p in paragraphs]

    def made() -> bytes:  # runs outside the page's script: no Streamlit and no t() in here
        return png_bytes(plots.explanation_card(picture, title, paragraphs, footer))

    return made


def show_card_button(target, png, result, number: int, slot: int, i: int, masked: bool = False,
                     file_stem: str | None = None) -> None:
    stem = (file_stem or Path(result.name).stem or "photo") + ("_masked" if masked else "")
    target.download_button(t("try_it.download_card_masked" if masked else "try_it.download_card"), png,
                           mime="image/png", file_name=f"{stem}_face{number}_card.png",
                           key=f"try_card_{'masked_' if masked else ''}{slot}_{i}", help=t("try_it.download_card_help"),
                           on_click="ignore")


def face_cautions(face) -> list[str]:
    """What the page says under a face that its card must say too: measured whole (no face
    found), turned upright, a masked file's hidden AUs, an unsure detection."""
    out = []
    if face.method == "crop":
        out.append(t("try_it.whole_picture"))
    elif face.method == TURNED_UPRIGHT:
        out.append(t("try_it.turned_upright"))
    elif face.low_confidence:
        out.append(t("try_it.low_confidence", how=t("try_it.low_unsure", p=_percent(face.confidence))))
    if face.face.masked:
        from fer_core.masks import HIDDEN_AUS

        out.append(t("try_it.marked_masked") + " " + t("try_it.hidden_by_mask", aus=", ".join(au_label(c) for c in HIDDEN_AUS)))
    return out


def track_record_text(model_name: str, confidence: float, masked: bool = False) -> str | None:
    """What the model's percentage has meant: how often it was right on the shared images when it
    was about as sure (a bundled model whose score still belongs to its file), or None; none for a
    face the mask command wrote, which those unmasked images say nothing of (a photo of a real mask
    is not known as such). The bin is the shown percentage's (0.8996 reads "90%", and is told with
    the 90–100 % answers)."""
    from fer_core.evaluation.scores import own_record, track_record

    shown = int(_percent(confidence).rstrip("%")) / 100  # the bin of the percentage as shown (0.295 reads 30%)
    record = track_record(model_name, shown) if model_name and not masked else None
    if record is None:
        return own_record_text(own_record(model_name)) if model_name and not masked else None
    b = record.bin
    low, high = b.accuracy_ci95 or (b.accuracy, b.accuracy)
    return t("try_it.track_record", model=shown_literally(model_name), low=f"{b.low:.0%}", high=f"{b.high:.0%}",
             test_set=record.test_set, accuracy=_percent(b.accuracy), n=f"{b.n:,}", ci_low=_percent(low),
             ci_high=_percent(high), emotions=t("try_it.track_seven" if "fear" in record.classes else "try_it.track_six"))


def own_record_text(entry) -> str | None:
    """A model of one's own, which has no track record on the shared images: how it scored and on
    what when it was trained, and the emotions it can answer where it cannot answer all six (a
    lab's happy/sad/neutral network said nothing of either)."""
    if entry is None or entry.metrics.accuracy is None or not entry.metrics.evaluated_on:
        return None
    text = t("try_it.own_record", model=shown_literally(entry.name), accuracy=_percent(entry.metrics.accuracy),
             on=f"`{shown_in_code(entry.metrics.evaluated_on)}`")  # the record's own (English) words
    if entry.classes and len(entry.classes) < 6:
        text += " " + t("try_it.own_classes", emotions=", ".join(emotion_label(c) for c in entry.classes))
    return text


def show_face(result, number: int, i: int, others: list, slot: int, charts: list, notes: dict | None = None,
              file_stem: str | None = None, model_name: str = "") -> list:
    """The face's panel; returns one empty column per model in ``others``, filled in as each
    model's output is ready (``show_other_output``). Its charts keep their places but are only
    added to ``charts`` (placeholder, figure maker, key), drawn by the caller after every model's
    text: a cold browser stops drawing for most of a second to load its first chart. ``notes``
    gets the face's place for a note under the other models' answers (``show_disagreement``)."""
    face = result.faces[i]
    ex = face.explanation
    emotion, proba = ex.emotion, ex.probabilities[ex.emotion]
    reasons = [c.au for c in ex.active_reasons]  # the AUs the face shows as reasons, drawn on it
    overlay = plots.draw_face_overlay(result.image, face.box, face.landmarks, reasons,
                                      label=f"{emotion_label(emotion)} {proba:.0%}", crop_margin=0.35)
    st.markdown(f"### {t('try_it.face_title', n=number)}")
    c1, c2, c3 = st.columns([1.1, 1, 1.1])
    c1.image(overlay, caption=t("try_it.overlay_caption", n=number), width="stretch",
             alt=t("try_it.overlay_alt", n=number, emotion=emotion_label(emotion)))
    cautions = face_cautions(face) + ([against_text(ex)] if ex.against else [])
    show_card_button(c1, card_png(result, overlay, t("try_it.predicted", emotion=emotion_label(emotion), p=_percent(proba)),
                                  card_lines(ex, cautions), number),
                     result, number, slot, i, file_stem=file_stem)
    with c2:
        st.markdown(f"#### {t('try_it.predicted', emotion=emotion_label(emotion), p=_percent(proba))}")
        show_close_call(ex.probabilities)
        if (record := track_record_text(model_name, proba, face.face.masked)) is not None:
            st.caption(record)
        if face.face.masked:  # a file the mask command wrote: what the mask hides is unknown, not read off it
            from fer_core.masks import HIDDEN_AUS

            st.caption(t("try_it.marked_masked") + " " + t("try_it.hidden_by_mask", aus=", ".join(au_label(c) for c in HIDDEN_AUS)))
        if face.method == "crop":  # no detection: a cup or the moon measured whole reads as a face too
            st.warning(t("try_it.whole_picture"), icon=":material/help:")
        elif face.method == TURNED_UPRIGHT:
            st.caption(t("try_it.turned_upright"))
        elif face.low_confidence:
            # a badge does not wrap: the reason goes below it, where a narrow column cut it off
            st.badge(t("try_it.low_confidence_badge"), icon=":material/help:", color="orange")
            st.caption(t("try_it.low_confidence", how=t("try_it.low_unsure", p=_percent(face.confidence))))
        st.markdown(ex.sentence[0].upper() + ex.sentence[1:])
        if reasons:  # the movements as a parent or a child would say them
            st.caption(plain_words(reasons))
        if ex.against:
            st.caption(against_text(ex))
        for note in reading_notes(ex):
            st.caption(note)
        charts.append((st.empty(), lambda: plots.probability_bars(ex.probabilities, title=t("try_it.proba_title")),
                       f"proba_{slot}_{i}"))
        st.caption(probabilities_text(ex.probabilities))
    network = ex.extra.get("aus_network")
    if network is None:
        charts.append((c3.empty(), lambda: plots.au_intensity_bars(face.aus, highlight=reasons,
                                                                   title=t("try_it.aus_title")), f"aus_{slot}_{i}"))
    else:  # an AU-bottleneck network: what it read from the pixels, next to what the landmarks measured
        charts.append((c3.empty(), lambda: plots.au_intensity_bars(network, highlight=reasons,
                                                                   title=t("try_it.network_title")), f"aus_{slot}_{i}"))
        charts.append((c3.empty(), lambda: plots.au_intensity_bars(face.aus, title=t("try_it.measured_title")),
                       f"aus_measured_{slot}_{i}"))
        c3.caption(t("try_it.network_caption"))
    c3.caption(t("try_it.scale_caption"))
    columns = []
    if others:
        st.markdown(t("try_it.other_models", n=number))
        columns = list(st.columns(len(others)))
        if notes is not None:
            notes[i] = st.empty()
    return columns


def show_disagreement(target, result, i: int, explainer: str, outputs: list) -> None:
    """Under the models' answers, when they name different emotions for the face: a high
    percentage of one model read as certainty, while another said something else."""
    answers = face_answers(result, i, explainer, outputs)
    if len(set(answers.values())) > 1:
        target.warning(t("try_it.models_disagree", answers=", ".join(
            f"{shown_literally(name)} {emotion_label(emotion)}" for name, emotion in answers.items())),
            icon=":material/call_split:")


def show_other_output(column, out: ModelOutput, i: int, slot: int, charts: list, masked: bool = False) -> None:
    """One other model's probabilities for face ``i``, in that model's column; its chart is added
    to ``charts`` (placeholder, figure maker, key), drawn by the caller. ``masked``: the face is a
    file the mask command wrote."""
    with column:
        probs = out.per_face[i]
        if isinstance(probs, str):
            show_error(probs, warning=True)
            return
        best = max(probs, key=probs.get)
        st.markdown(f"{out.name} ({kind_label(out.kind)}): **{emotion_label(best)}** ({probs[best]:.0%})")
        show_close_call(probs)
        if (record := track_record_text(out.name, probs[best], masked)) is not None:
            st.caption(record)
        charts.append((st.empty(), lambda: plots.probability_bars(probs, title=out.name),
                       f"other_{slot}_{i}_{out.name}"))
        st.caption(probabilities_text(probs))


def masked_result(result, model, model_key: str, style: str) -> tuple | str:
    """(masked image, its faces) for a result, kept in session state; or the one-line error,
    naming the upload. When no face could take a mask, each face says so, as one left bare among
    masked faces does."""
    crop = getattr(result, "crop", False)  # masked as the unmasked photo was measured
    masked = kept_for(result, "try_masked", (model_key, style, crop))
    if masked is None:
        with st.spinner(t("try_it.masking", name=result.name)):
            try:
                masked = analyze_masked(result.image, model, style, crop=crop)
            except FerError as exc:
                problem = one_line(exc).removeprefix("image: ")
                masked = ((result.image, [None] * len(result.faces)) if problem == MASK_NOT_PLACED_REASON
                          else f"{result.name}: {problem}")
        keep_for(result, "try_masked", (model_key, style, crop), masked, MAX_KEPT_RESULTS)
    return masked


def show_masked(result, model, model_key: str, style: str, slot: int, others: list | None = None,
                model_name: str = "", file_stem: str | None = None) -> None:
    """The same faces under a mask: what the prediction and its explanation become, and what each
    other model (``others``: its entry and its output for the unmasked faces) answers on the same
    masked face, as the Masks page runs every model on it; then the masked faces' downloads."""
    if any(face.face.masked for face in result.faces):  # masked by the mask command: a second mask says nothing
        st.info(t("try_it.masked_already"), icon=":material/masks:")
        return
    masked = masked_result(result, model, model_key, style)
    if isinstance(masked, str):
        show_error(masked, warning=True)
        return
    image, faces = masked
    st.markdown(t("try_it.with_mask"))
    if model is not None and getattr(model, "inputs", None) == "aus":
        from fer_core.predictors.base import au_columns_used

        if {"AU06_r", "AU07_r"} & set(au_columns_used(model)):  # seen above the mask, but read low
            st.caption(t("try_it.cheeks_under_mask"))
    pairs = list(zip(result.faces, faces))  # the masked faces come in the order of the unmasked ones
    for number, i in enumerate(face_order(result.faces), start=1):
        if i >= len(pairs):  # a face the landmarker did not find again under the mask
            continue
        before, after = pairs[i]
        if after is None:  # the mask would have missed this face: it stays bare, not shown as masked
            st.caption(t("try_it.mask_not_placed", n=number))
            continue
        a, b = before.explanation, after.explanation
        c1, c2 = st.columns([1, 2])
        masked_face = plots.draw_face_overlay(image, after.box, None, [],
                                              label=f"{emotion_label(b.emotion)} {b.probabilities[b.emotion]:.0%}",
                                              crop_margin=0.35)
        c1.image(masked_face, caption=t("try_it.masked_caption", n=number),
                 width="stretch", alt=t("try_it.masked_alt", n=number, emotion=emotion_label(b.emotion)))
        with c2:
            values = dict(before=emotion_label(a.emotion), p_before=_percent(a.probabilities[a.emotion]),
                          after=emotion_label(b.emotion), p_after=_percent(b.probabilities[b.emotion]))
            st.markdown(t("try_it.mask_changes", **values) if b.emotion != a.emotion
                        else t("try_it.mask_stays", **values))
            show_close_call(b.probabilities)
            st.markdown(b.sentence[0].upper() + b.sentence[1:])
            unknown = b.extra.get("unknown_aus", [])
            if unknown:
                st.caption(t("try_it.hidden_by_mask", aus=", ".join(au_label(c) for c in unknown)))
            shifted = shifted_by_mask(a.extra.get("aus_network") or before.aus, b.extra.get("aus_network") or after.aus)
            notes = [t("try_it.hidden_by_mask", aus=", ".join(au_label(c) for c in unknown))] if unknown else []
            if shifted:  # the brows read higher under a drawn mask: a reason named for that is the mask's
                notes.append(t("try_it.mask_shifted", aus=", ".join(f"{au_label(c)} {x:.1f} → {y:.1f}"
                                                                    for c, x, y in shifted)))
                st.caption(notes[-1])
            change = t("try_it.mask_changes", **values) if b.emotion != a.emotion else t("try_it.mask_stays", **values)
            show_card_button(c1, card_png(result, masked_face, change, card_lines(b, notes), number), result, number,
                             slot, i, masked=True, file_stem=file_stem)
            for entry, out in others or []:
                st.markdown(masked_other_line(result, entry, out, i, after.face, (model_key, style)))
            chart(st, plots.probability_bars(b.probabilities, title=t("try_it.masked_proba_title")),
                  f"masked_proba_{slot}_{i}")
    # A face the mask missed stays bare in the masked picture, and so in its table; one the
    # landmarker did not find again under the mask is not in it, as in the panels above.
    faces = [before if after is None else after for before, after in pairs]
    outputs = [ModelOutput(entry.name, entry.kind,
                           [out.per_face[i] if after is None
                            else masked_other_answer(result, entry, i, after.face, (model_key, style))
                            for i, (_, after) in enumerate(pairs)]) for entry, out in others or []]
    # boxes in the masked picture's pixels (a photo over 1,600 px was masked as analysed, scaled down)
    masked_photo = PhotoResult(result.name, image, faces, scaled=result.scaled, crop=getattr(result, "crop", False))
    png = kept_for(result, "try_masked_png", (model_key, style))  # encoded once, not on every rerun (0.6 s)
    if png is None:
        png = keep_for(result, "try_masked_png", (model_key, style),
                       png_bytes(Image.fromarray(image), **mark_options(".png", style, 0)), MAX_KEPT_RESULTS)
    st.caption(t("try_it.masked_downloads"))
    show_downloads(photo_to_dict(masked_photo, model_name, getattr(model, "kind", ""), outputs), None, slot, file_stem,
                   masked_png=png)


def masked_other_answer(result, entry, i: int, face, masked_key: tuple) -> dict[str, float] | str:
    """Another model's probabilities for masked face ``i``, or why it could not judge it: computed
    once and kept with the result, for its line and the downloads."""
    key = (*masked_key, entry.name, entry.sha256 or "", i)
    after = kept_for(result, "try_masked_other", key)
    if after is None:
        try:
            after = probabilities_for(load_predictor(entry), face)
        except Exception as exc:  # a model that cannot load here said so above the mask, in its column
            log.exception("model %s failed on a masked face", entry.name)
            after = t("try_it.model_failed", name=entry.name, reason=message(one_line(exc)))
        keep_for(result, "try_masked_other", key, after, MAX_KEPT_RESULTS * 8)
    return after


def masked_other_line(result, entry, out: ModelOutput, i: int, face, masked_key: tuple) -> str:
    """'cnn-fer2013: happy (88%) → sad (41%)': another model on face ``i`` without and with the
    mask."""
    after = masked_other_answer(result, entry, i, face, masked_key)
    before = out.per_face[i]
    if isinstance(before, str) or isinstance(after, str):
        return shown_literally(message(after if isinstance(after, str) else before))
    a, b = max(before, key=before.get), max(after, key=after.get)
    line = t("try_it.mask_other", model=shown_literally(entry.name), before=emotion_label(a), p_before=_percent(before[a]),
             after=emotion_label(b), p_after=_percent(after[b]))
    runner_up = close_call(after)
    if runner_up:  # a masked answer is the least sure: said as under the bare face's answer
        line += " " + t("try_it.close_call_short", runner=emotion_label(runner_up[0]), p=_percent(runner_up[1]))
    return line


def face_table(photo: dict) -> pd.DataFrame:
    """The face table a person reads: number, box, detection score, each model's emotion (``photo``:
    ``photo_to_dict`` unrounded, so its percentages are those of the panels)."""
    rows = []
    for face in photo["faces"]:
        row = {t("try_it.col_face"): face["face"], t("try_it.col_box"): ", ".join(f"{v:.0f}" for v in face["box"]),
               t("try_it.col_score"): f"{face['confidence']:.2f}"}
        for name, out in face["models"].items():
            row[name] = (f"{emotion_label(out['emotion'])} ({out['probabilities'][out['emotion']]:.0%})"
                         if "emotion" in out else message(out.get("error", "")))
        rows.append(row)
    return pd.DataFrame(rows)


def numbered_image(result, order: list[int]):
    """The whole photo, faces boxed and numbered left to right with the explaining model's emotion."""
    faces = [result.faces[i] for i in order]
    labels = [emotion_label(f.explanation.emotion) if f.explanation is not None else None for f in faces]
    return plots.draw_numbered_faces(result.image, [f.box for f in faces], labels)


def png_bytes(image, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **options)
    return buf.getvalue()


def show_downloads(photo: dict, image, slot: int, file_stem: str | None = None, masked_png: bytes | None = None) -> None:
    """The photo's faces as CSV, JSON and the numbered picture, named ``file_stem``_faces.* (by
    default the photo's name without its extension). ``masked_png``: the faces under the mask
    instead, and the masked picture itself, marked as the mask command marks its files."""
    stem = (file_stem or photo["file"].rsplit(".", 1)[0] or "photo") + ("_masked" if masked_png else "")
    key = "try_masked" if masked_png else "try"
    c1, c2, c3 = st.columns(3)
    c1.download_button(t("try_it.download_csv"), csv_bytes(photo_rows(photo)),
                       file_name=f"{stem}_faces.csv", mime="text/csv", key=f"{key}_csv_{slot}",
                       help=t("try_it.download_csv_help"), on_click="ignore")
    c2.download_button(t("try_it.download_json"),
                       json.dumps(photo, ensure_ascii=False, indent=2, default=float).encode("utf-8"),
                       file_name=f"{stem}_faces.json", mime="application/json", key=f"{key}_json_{slot}",
                       help=t("try_it.download_json_help"), on_click="ignore")
    if masked_png:
        c3.download_button(t("try_it.download_masked_png"), masked_png, file_name=f"{stem}.png", mime="image/png",
                           key=f"{key}_png_{slot}", help=t("try_it.download_masked_png_help"), on_click="ignore")
    else:
        c3.download_button(t("try_it.download_png"), png_bytes(image), file_name=f"{stem}_faces.png",
                           mime="image/png", key=f"{key}_png_{slot}", on_click="ignore")


def show_result(result, others: list, slot: int, model=None, model_key: str = "", model_name: str = "",
                mask: str | None = None, file_stem: str | None = None) -> None:
    with st.container(border=True):
        st.markdown(f"## {shown_literally(result.name)}")
        if result.error:
            # A file that is not an image is an error; a photo without a face is a warning.
            no_face = result.image is not None and result.error.endswith(NO_FACE_MESSAGE)
            if no_face:
                show_error(t("try_it.no_face", name=shown_literally(result.name)), warning=True)
                # a face filling the picture can be missed (a square one may be a crop); a photo searched as a crop too
                if getattr(result, "crop", False):
                    st.caption(t("try_it.no_face_crops_on"))
                elif crop_shaped(*result.image.shape[1::-1]):
                    st.caption(t("try_it.no_face_crop_hint"))
            else:
                show_error(result.error, warning=result.image is not None, literal=True)
            return
        n = len(result.faces)
        found = (t("try_it.found_one", s=f"{result.seconds:.2f}") if n == 1
                 else t("try_it.found_many", n=n, s=f"{result.seconds:.2f}"))
        st.caption(found
                   # a video's frames are all measured at 1,280 px, by extract too: no advice to give there
                   + (t("try_it.scaled", side=max(result.image.shape[:2])) if result.scaled and slot != VIDEO_SLOT
                      else "")
                   + (t("try_it.as_crop") if getattr(result, "crop", False) else ""))
        caption_aus_read(model)  # an upper-face model: which AUs its sentence can name
        order = face_order(result.faces)
        image = numbered_image(result, order) if n > 1 else None
        if image is not None:
            st.image(image, caption=t("try_it.numbered_caption", n=n), width="stretch",
                     alt=t("try_it.numbered_alt", n=n))
        st.markdown(t("try_it.table_title"))
        # The table and the downloads keep their place above the faces but are filled in after them:
        # the predictions show first, and the downloads' encoding (the PNG's, a tenth of a second or
        # more) comes after. Each face shows its explained prediction before any other model is
        # loaded; the other models' columns fill in one model at a time, and all charts come last.
        table, downloads = st.empty(), st.container()
        charts: list = []
        notes: dict = {}
        columns = {i: show_face(result, number, i, others, slot, charts, notes, file_stem, model_name)
                   for number, i in enumerate(order, start=1)}

        def shown(position: int, out: ModelOutput) -> None:
            for i in order:
                show_other_output(columns[i][position], out, i, slot, charts, result.faces[i].face.masked)

        outputs = other_outputs(result, others, shown, getattr(model, "name", ""))
        for i, target in notes.items():
            show_disagreement(target, result, i, model_name, outputs)
        for target, figure, key in charts:
            chart(target, figure(), key)
        photo = photo_to_dict(result, model_name, getattr(model, "kind", ""), outputs)
        shown = ([(model_name, tuple(model.classes))] if model is not None else []) + [(e.name, tuple(e.classes)) for e in others]
        no_fear = [name for name, classes in shown if "fear" not in classes]
        with table.container():
            st.dataframe(face_table(photo_to_dict(result, model_name, getattr(model, "kind", ""), outputs, digits=None)),
                         hide_index=True)
            if no_fear and len(no_fear) < len(shown):  # an "angry" beside "fear" read as a disagreement about the face
                st.caption(t("try_it.no_fear_models", names=shown_literally(", ".join(no_fear))))
        with downloads:
            show_downloads(photo, image if image is not None else numbered_image(result, order), slot, file_stem)
        if mask and model is not None:
            show_masked(result, model, model_key, mask, slot, list(zip(others, outputs)), model_name, file_stem)


# -- a video ------------------------------------------------------------------------------------
VIDEO_MAX_S = 300.0  # "a short video": five minutes at 5 fps is 1,500 frames, a few minutes to measure
VIDEO_SLOT = 1000  # widget keys of the chosen frame's panel, apart from the photos' slots


def _remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)


class VideoFile:
    """The upload as a temporary file of this session (PyAV and the worker process read a path).
    Removed when the session lets it go: its next video, the upload removed, the session ended
    (its state is dropped) or the server stopped; a researcher's video is not left behind."""

    def __init__(self, name: str, data: bytes) -> None:
        from fer_core.measure.video import VIDEO_TYPES

        suffix = Path(name).suffix.lower() if Path(name).suffix.lower().lstrip(".") in VIDEO_TYPES else ".mp4"
        handle, path = tempfile.mkstemp(prefix="fer-video-", suffix=suffix)
        self.path = Path(path)
        self._remove = weakref.finalize(self, _remove, path)
        with open(handle, "wb") as fh:
            fh.write(data)

    def remove(self) -> None:
        self._remove()


def forget_video() -> None:
    """Remove the session's video file and what was measured of it."""
    kept: dict = st.session_state.get("try_video_tables", {})
    for video, _ in kept.values():
        video.remove()
    kept.clear()


def video_table(name: str, data: bytes, fps: float):
    """(file, AU table of the sampled frames) kept in session state, or a one-line error."""
    from fer_core.measure.extract import default_workers
    from fer_core.measure.video import extract_video, probe_video

    kept: dict = st.session_state.setdefault("try_video_tables", {})
    key = (digest(data), fps)
    if key not in kept:
        forget_video()  # one video at a time: its file and table are the largest things kept
        video = VideoFile(name, data)
        try:
            info = probe_video(video.path, name)
            if info.duration_s > VIDEO_MAX_S:
                video.remove()
                return t("try_it.video_too_long", name=name, s=f"{info.duration_s:.0f}", max=f"{VIDEO_MAX_S / 60:.0f}")
            bar = st.progress(0.0, text=t("try_it.video_measuring", name=name, fps=f"{fps:g}"))
            table = extract_video(video.path, fps=fps, workers=default_workers(), name=name,
                                  progress=lambda done, total: bar.progress(done / max(total, 1)))
            bar.empty()
        except BaseException:
            video.remove()
            raise
        kept[key] = (video, table)
    video, table = kept[key]
    if (table["file"] != name).any():  # the same video uploaded again under another name
        table = table.assign(file=name)
        kept[key] = (video, table)
    return video.path, table


def pick_time(times: list[float], events: list) -> float:
    """The time a new click on a chart chose (the nearest sampled frame), else the slider's. A
    chart keeps its selection across reruns, so a click counts once: moving the slider later wins."""
    for event in events:
        points = (event or {}).get("selection", {}).get("points", [])
        clicked = float(points[0]["x"]) if points else None
        if clicked is not None and clicked != st.session_state.get("try_video_clicked"):
            st.session_state["try_video_clicked"] = clicked
            st.session_state["try_video_time"] = min(times, key=lambda v: abs(v - clicked))
    if st.session_state.get("try_video_time") not in times:
        st.session_state["try_video_time"] = times[0]
    shown = {v: t("try_it.video_seconds", s=f"{v:.2f}") for v in times}  # in the page's language, read when drawn
    return st.select_slider(t("try_it.video_time"), times, key="try_video_time", format_func=shown.__getitem__,
                            help=t("try_it.video_time_help"))


def video_part(model, model_key: str, model_name: str, others: list) -> None:
    """A short video: AU intensities and emotion probabilities over time, the frame at a chosen
    time with its explanation, and the per-frame table as CSV."""
    from fer_core.au_table import AU_COLUMNS, au_label
    from fer_core.measure.tasks import NO_FACE_REASON
    from fer_core.measure.video import VIDEO_TYPES, emotion_over_time, frame_rows

    upload = st.file_uploader(t("try_it.video_upload"), type=list(VIDEO_TYPES), key="try_video",
                              help=t("try_it.video_upload_help", max=f"{VIDEO_MAX_S / 60:.0f}",
                                     mb=st.get_option("server.maxUploadSize")))
    fps = st.select_slider(t("try_it.video_fps"), VIDEO_FPS_CHOICES, value=2, key=kept_choice("try_video_fps"),
                           help=t("try_it.video_fps_help"))
    if upload is None:
        forget_video()
        st.info(t("try_it.video_empty"))
        return
    name, data = upload.name, upload.getvalue()
    try:
        kept = video_table(name, data, float(fps))
    except FerError as exc:
        show_error(exc)
        return
    if isinstance(kept, str):
        show_error(kept)
        return
    path, table = kept
    firsts = table[table["face"] == 0].reset_index(drop=True)
    # rows of stretches never decoded have no frame to count, show or pick
    decoded = firsts[frame_rows(firsts)].reset_index(drop=True)
    measured = int((firsts["success"] == 1).sum())
    st.caption(t("try_it.video_found", frames=len(decoded), faces=measured, fps=f"{fps:g}"))
    for reason in firsts.loc[~frame_rows(firsts), "reason"].head(3):  # cut short, or a part that crashed
        show_error(message(str(reason)), prefix=name, warning=True)
    if not measured:
        reasons = firsts["reason"].fillna("").astype(str)
        other = reasons[~reasons.str.startswith(NO_FACE_REASON)]
        if other.empty:
            show_error(t("try_it.video_no_face", name=name), warning=True)
        else:  # the video could not be read: say why, not "no face"
            show_error(message(other.value_counts().index[0]), prefix=name)
        return
    times = decoded["time_s"].round(3).tolist()
    # The charts stay the same figure whatever time is chosen (no line marking it): Streamlit names
    # a chart by its figure, so a changed figure was a new chart and the click that changed it was
    # dropped (every other click did nothing). The slider and the panel's heading say the time.
    events = []
    x_title = t("try_it.video_time_axis")
    if getattr(model, "inputs", "") == "aus":
        probs = emotion_over_time(table, model)
        fig = plots.lines_over_time(probs, list(model.classes), [emotion_label(c) for c in model.classes],
                                    t("try_it.video_emotions_title", model=model_name), x_title,
                                    t("try_it.video_probability_axis"),
                                    [plots.emotion_color(c) for c in model.classes])
        events.append(st.plotly_chart(fig, key="try_video_emotions", on_select="rerun", selection_mode="points"))
    else:
        probs = None
        st.info(t("try_it.video_needs_au_model", model=model_name))
    au_choices = list(AU_COLUMNS)
    default = [c for c in ("AU06_r", "AU12_r", "AU04_r", "AU01_r") if c in au_choices]
    shown = st.multiselect(t("try_it.video_aus"), au_choices, default=default, key=kept_choice("try_video_aus"),
                           format_func=au_label, placeholder=t("common.choose_options"))
    if shown:
        fig = plots.lines_over_time(firsts, shown, [au_label(c) for c in shown], t("try_it.video_aus_title"),
                                    x_title, t("try_it.video_intensity_axis"))
        events.append(st.plotly_chart(fig, key="try_video_au_lines", on_select="rerun", selection_mode="points"))
    video_downloads(name, table, f"{digest(data)}:{fps}", model, model_key)
    when = pick_time(times, events)
    try:
        at, rgb = decoded_frame(path, digest(data), when, name)
    except FerError as exc:  # the file changed or broke since it was measured: say so, keep the charts
        show_error(exc)
        return
    result, _ = frame_result(name, digest(data), at, rgb, model, model_key, path)
    followed = charted_face(firsts, at, result.faces)
    if followed is not None:
        st.caption(t("try_it.video_panel_note", face=followed))
    show_result(result, others, VIDEO_SLOT, model, model_key, model_name,
                file_stem=f"{Path(name).stem or 'video'}_{at:.2f}s")


def charted_face(firsts: pd.DataFrame, at: float, faces: list) -> int | None:
    """The number (left to right, as the panel numbers them) of the face the charts follow at
    ``at``: the panel measures the frame again as a still photo, which may find other faces, so
    the one whose AUs are nearest the chart's is named."""
    from fer_core.au_table import AU_COLUMNS

    rows = firsts[(firsts["time_s"] - at).abs() < 1e-3]
    if rows.empty or rows.iloc[0]["success"] != 1 or not faces:
        return None
    return face_order(faces).index(nearest_face(faces, rows.iloc[0][list(AU_COLUMNS)].to_numpy(dtype=float))) + 1


def decoded_frame(path: Path, video: str, when: float, name: str):
    """``frame_at``, kept for the last few times chosen: a video with few keyframes decodes
    seconds of frames to reach one, and every click on the page runs this again. Errors name
    the upload (``name``), not its temporary file."""
    from fer_core.measure.video import frame_at

    frames: dict = st.session_state.setdefault("try_video_decoded", {})
    key = (video, when)
    if key not in frames:
        frames[key] = frame_at(path, when, label=name)
        while len(frames) > 8:
            frames.pop(next(iter(frames)))
    return frames[key]


def frame_result(name: str, video: str, at: float, rgb, model, model_key: str, path: Path):
    """The chosen frame analysed like a photo (kept, so moving between frames is quick); keyed by
    the video's content, as two uploads can share a name (IMG_0001.MOV)."""
    results: dict = st.session_state.setdefault("try_video_frames", {})
    key = (video, name, at, model_key, current_language())  # the frame's title names the file, translated
    if key not in results:
        from fer_core.measure.video import shown_frame_size

        with st.spinner(t("try_it.analysing", name=f"{name} {at:.2f} s")):
            results[key] = (analyze_photo(rgb, t("try_it.video_frame_name", name=name, s=f"{at:.2f}"), model,
                                          original_size=shown_frame_size(path, rgb, name)), model_key)
        while len(results) > MAX_KEPT_RESULTS:
            results.pop(next(iter(results)))
    return results[key]


@st.cache_data(max_entries=4, show_spinner=False)
def emotions_csv(_table: pd.DataFrame, video_key: str, _model, model_key: str) -> bytes:
    """``predict --au-table``'s table of a measured video (``video_key``: its digest and rate), once
    per video and model, not on every click on its charts."""
    from fer_core.pipeline import predict_table

    return csv_bytes(predict_table(_table, _model))


def video_downloads(name: str, table: pd.DataFrame, video_key: str, model, model_key: str) -> None:
    """The per-frame AU table and the AU model's answer for every frame and face, as CSV: what
    ``extract video --fps`` and ``predict --au-table`` write, so page and CLI results line up."""
    stem = Path(name).stem or "video"
    c1, c2 = st.columns(2)
    c1.download_button(t("try_it.video_download_aus"), csv_bytes(table),
                       file_name=f"{stem}_au.csv", mime="text/csv", key="try_video_csv",
                       help=t("try_it.video_download_aus_help"), on_click="ignore")
    if getattr(model, "inputs", "") == "aus":
        c2.download_button(t("try_it.video_download_emotions"), emotions_csv(table, video_key, model, model_key),
                           file_name=f"{stem}_emotions.csv", mime="text/csv", key="try_video_emotions_csv",
                           help=t("try_it.video_download_emotions_help"), on_click="ignore")


def photos_part(model, model_key: str, model_name: str, others: list) -> None:
    inputs = collect_inputs()
    mask = None
    if st.toggle(t("try_it.mask_on"), key=kept_choice("try_mask"), help=t("try_it.mask_help")):
        labels = {"surgical": t("try_it.mask_surgical"), "white": t("try_it.mask_white"),
                  "cloth": t("try_it.mask_cloth")}
        mask = st.selectbox(t("try_it.mask_style"), list(STYLES), format_func=lambda s: labels.get(s, s),
                            key=kept_choice("try_mask_style"))
    crop = st.toggle(t("try_it.crops_on"), key=kept_choice("try_crops"), help=t("try_it.crops_help"))
    if not inputs:
        st.info(t("try_it.empty"))
        kept = st.session_state.get("try_last", [])
        last = [r for r, key in kept if key == model_key]
        if last:  # the uploader forgets its files when you visit another page; the results stay
            st.header(t("try_it.last_results"))
            for slot, result in enumerate(last):
                show_result(result, others, slot, model, model_key, model_name, mask)
        elif kept:  # made by another model (the one chosen before, or before a model was just trained)
            st.info(t("try_it.last_other_model", n=len(kept), name=st.session_state.get("try_last_model", "")))
        return
    shown = []
    for slot, (name, data) in enumerate(inputs):
        try:
            result, key = result_for(name, data, model, model_key, keep=len(inputs), crop=crop)
            shown.append((result, key))
            show_result(result, others, slot, model, model_key, model_name, mask)
        except Exception as exc:
            if not isinstance(exc, FerError):  # a bug, for the log; not the upload's name (a participant's?)
                log.exception("analysis of an upload failed")
            show_error(exc, prefix=name)
    st.session_state["try_last"] = shown
    st.session_state["try_last_model"] = model_name


def main() -> None:
    st.title(t("try_it.title"))
    st.caption(t("try_it.intro"))
    st.caption(t("home.limits_short"))  # where a parent sees "happy (97%)", not on Home alone
    with st.expander(t("try_it.aus_glossary")):
        from fer_core.au_codes import AU_CODES

        st.markdown("\n".join(f"- **{au_label(c)}**: {au_in_plain_words(c)}" for c in AU_CODES))
    model, model_key, model_name, others = choose_models()
    if model is None:
        return
    from fer_core.evaluation.compare import au_source_note
    from fer_core.measure.extract import SOURCE

    learned_elsewhere = au_source_note(model, [SOURCE])  # an OpenFace-trained model reads this extractor's AUs
    if learned_elsewhere:
        st.warning(shown_literally(learned_elsewhere), icon=":material/swap_horiz:")
    photos, clip = st.tabs([t("try_it.tab_photos"), t("try_it.tab_video")])
    with photos:
        photos_part(model, model_key, model_name, others)
    with clip:
        video_part(model, model_key, model_name, others)


run_page(main)
