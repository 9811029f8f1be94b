"""Try it: upload photos (or take one); each face gets AUs, emotion probabilities and a reason."""

from __future__ import annotations

import streamlit as st

from fer_core.errors import FerError, one_line
from fer_core.figures import plots
from fer_core.masks import STYLES
from fer_core.pipeline import analyze_masked, analyze_photo, probabilities_for
from ui.common import (
    IMAGE_TYPES,
    digest,
    entries_of,
    load_predictor,
    log,
    page_setup,
    run_page,
    show_error,
)

page_setup("nav.try_it", ":material/photo_camera:")

SESSION_MODEL = "model trained in this session (not saved)"
MAX_KEPT_RESULTS = 64


def choose_models() -> tuple[object | None, str, list]:
    """(the explaining model, a key naming its version, the other models' entries to show too)."""
    au_entries = entries_of(explains=True)
    names = [e.name for e in au_entries]
    trained = st.session_state.get("au_train")
    if trained and not trained.get("saved_as"):
        names.append(SESSION_MODEL)
    if not names:
        st.warning("No AU model is available: train one on the **AU model** page (the bundled FER2013 "
                   "AU table needs no images) or restore models/manifest.json.")
        return None, "", []
    default = names.index("au-logreg-fer2013") if "au-logreg-fer2013" in names else 0
    others = entries_of(explains=False)
    c1, c2 = st.columns(2)
    name = c1.selectbox("AU model (explains its prediction)", names, index=default, key="try_model")
    chosen: list[str] = []
    if others:
        other_names = [e.name for e in others]
        chosen = c2.multiselect("Show beside it", other_names, default=other_names, key="try_others",
                                help="CNN and Teachable Machine models from models/manifest.json. "
                                     "The first one starts TensorFlow (~15 s, once).")
    picked = [e for e in others if e.name in chosen]
    if name == SESSION_MODEL:
        from fer_core.predictors.au_models import AUPredictor

        return AUPredictor(trained["model"], name="session model"), f"session:{id(trained['model'])}", picked
    entry = au_entries[names.index(name)]
    return load_predictor(entry), f"{name}:{entry.sha256 or ''}", picked


def collect_inputs() -> list[tuple[str, bytes]]:
    uploads = st.file_uploader("Face photos (JPEG, PNG, …; several at once is fine)", type=IMAGE_TYPES,
                               accept_multiple_files=True, key="try_upload")
    inputs = [(f.name, f.getvalue()) for f in uploads or []]
    if st.toggle("Use the camera", key="try_camera_on"):
        shot = st.camera_input("Take a photo", key="try_camera")
        if shot is not None:
            inputs.append(("camera photo", shot.getvalue()))
    return inputs


def result_for(name: str, data: bytes, model, model_key: str) -> dict:
    """Kept in session state, so revisiting the page (or another rerun) does not recompute."""
    results: dict = st.session_state.setdefault("try_results", {})
    key = (digest(data), name, model_key)
    if key not in results:
        with st.spinner(f"Analysing {name}…"):
            results[key] = (analyze_photo(data, name, model), model_key)
        while len(results) > MAX_KEPT_RESULTS:
            results.pop(next(iter(results)))
    return results[key]


def show_face(result, index: int, face, others: list, slot: int) -> None:
    ex = face.explanation
    emotion, proba = ex.emotion, ex.probabilities[ex.emotion]
    reasons = [c.au for c in ex.reasons if c.present]
    overlay = plots.draw_face_overlay(result.image, face.box, face.landmarks, reasons,
                                      label=f"{emotion} {proba:.0%}", crop_margin=0.35)
    c1, c2, c3 = st.columns([1.1, 1, 1.1])
    c1.image(overlay, caption=f"Face {index + 1}: the AUs that explain it, marked on the landmarks",
             width="stretch")
    with c2:
        st.markdown(f"### Predicted: {emotion} ({proba:.0%})")
        if face.low_confidence:
            how = ("the detector found no face; the whole image was measured as one"
                   if face.method == "crop" else f"the detector is unsure this is a face ({face.confidence:.0%})")
            st.badge(f"Low confidence: {how}", icon=":material/help:", color="orange")
        st.markdown(ex.sentence[0].upper() + ex.sentence[1:])
        if ex.against:
            st.caption("Speaking against it: " + ", ".join(
                f"{a.name} ({a.intensity:.1f})" if a.present else f"{a.name} (absent)" for a in ex.against))
        st.plotly_chart(plots.probability_bars(ex.probabilities, title="AU model: probabilities"),
                        key=f"proba_{slot}_{index}")
    network = ex.extra.get("aus_network")
    if network is None:
        c3.plotly_chart(plots.au_intensity_bars(face.aus, highlight=reasons,
                                                title="AU intensities (orange: the reasons)"),
                        key=f"aus_{slot}_{index}")
    else:  # an AU-bottleneck network: what it read from the pixels, next to what the landmarks measured
        c3.plotly_chart(plots.au_intensity_bars(network, highlight=reasons,
                                                title="What the network read from the pixels (orange: the reasons)"),
                        key=f"aus_{slot}_{index}")
        c3.plotly_chart(plots.au_intensity_bars(face.aus, title="What the landmarks measured"),
                        key=f"aus_measured_{slot}_{index}")
        c3.caption("The network's emotion rests only on its own AU reading (left); the landmark AUs are "
                   "shown for comparison. Both are estimates, not a FACS coder's scores.")
    if others:
        show_other_models(face, index, others, slot)


def show_other_models(face, index: int, others: list, slot: int) -> None:
    """The other models' probabilities for the same face (the crop every pixel model sees),
    computed on first view and kept with the result."""
    st.markdown(f"**Other models on face {index + 1}** (they see the face crop, not the AUs)")
    cache: dict = st.session_state.setdefault("try_other_probs", {})
    for col, entry in zip(st.columns(len(others)), others):
        with col:
            key = (id(face), entry.name, entry.sha256 or "")
            if key not in cache:
                with st.spinner(f"Running {entry.name}…"):
                    try:
                        cache[key] = probabilities_for(load_predictor(entry), face.face)
                    except Exception as exc:
                        log.exception("model %s failed", entry.name)
                        cache[key] = f"{entry.name}: could not run ({one_line(exc)})"
            probs = cache[key]
            if isinstance(probs, str):
                show_error(probs, warning=True)
                continue
            best = max(probs, key=probs.get)
            st.markdown(f"{entry.name} ({entry.kind}): **{best}** ({probs[best]:.0%})")
            st.plotly_chart(plots.probability_bars(probs, title=entry.name),
                            key=f"other_{slot}_{index}_{entry.name}")


def masked_result(result, model, model_key: str, style: str) -> tuple | str:
    """(masked image, its faces) for a result, kept in session state; or the one-line error."""
    cache: dict = st.session_state.setdefault("try_masked", {})
    key = (id(result), model_key, style)
    if key not in cache:
        with st.spinner(f"Putting a mask on {result.name}…"):
            try:
                cache[key] = analyze_masked(result.image, model, style)
            except FerError as exc:
                cache[key] = one_line(exc)
        while len(cache) > MAX_KEPT_RESULTS:
            cache.pop(next(iter(cache)))
    return cache[key]


def show_masked(result, model, model_key: str, style: str, slot: int) -> None:
    """The same faces under a mask: what the prediction and its explanation become."""
    masked = masked_result(result, model, model_key, style)
    if isinstance(masked, str):
        show_error(masked, warning=True)
        return
    image, faces = masked
    st.markdown("**With a mask** (drawn from the landmarks over nose, mouth and chin)")
    for i, (before, after) in enumerate(zip(result.faces, faces)):
        a, b = before.explanation, after.explanation
        c1, c2 = st.columns([1, 2])
        c1.image(plots.draw_face_overlay(image, after.box, None, [], label=f"{b.emotion} {b.probabilities[b.emotion]:.0%}",
                                         crop_margin=0.35), caption=f"Face {i + 1} masked", width="stretch")
        with c2:
            changed = "changes to" if b.emotion != a.emotion else "stays"
            st.markdown(f"Without a mask: **{a.emotion}** ({a.probabilities[a.emotion]:.0%}) → with a mask it "
                        f"{changed} **{b.emotion}** ({b.probabilities[b.emotion]:.0%}).")
            st.markdown(b.sentence[0].upper() + b.sentence[1:])
            unknown = b.extra.get("unknown_aus", [])
            if unknown:
                st.caption("Hidden by the mask, so unknown (not counted for or against any emotion): "
                           + ", ".join(unknown))
            st.plotly_chart(plots.probability_bars(b.probabilities, title="AU model under the mask"),
                            key=f"masked_proba_{slot}_{i}")


def show_result(result, others: list, slot: int, model=None, model_key: str = "", mask: str | None = None) -> None:
    with st.container(border=True):
        st.markdown(f"#### {result.name}")
        if result.error:
            # A file that is not an image is an error; a photo without a face is a warning.
            show_error(result.error, warning=result.image is not None)
            return
        n = len(result.faces)
        st.caption(f"{n} face{'s' if n > 1 else ''} found, analysed in {result.seconds:.2f} s"
                   + (" (image scaled down for analysis)" if result.scaled else "") + ".")
        for i, face in enumerate(result.faces):
            show_face(result, i, face, others, slot)
        if mask and model is not None:
            show_masked(result, model, model_key, mask, slot)


def main() -> None:
    st.title("Try it")
    st.caption("Upload photos with faces. For every face: where its strongest Action Units are, "
               "how intense all 17 are, the emotion probabilities and the AUs that explain them.")
    model, model_key, others = choose_models()
    if model is None:
        return
    inputs = collect_inputs()
    mask = None
    if st.toggle("Put a mask on", key="try_mask",
                 help="The same faces with a mask drawn from their landmarks: how the prediction and its AU "
                      "explanation change when nose, mouth and chin are hidden."):
        mask = st.selectbox("Mask", list(STYLES), format_func=lambda s: STYLES[s].label, key="try_mask_style")
    if not inputs:
        st.info("Upload one or more photos above (nothing is stored on disk), or switch on the camera. "
                "Frontal, well-lit faces work best.")
        last = [r for r, key in st.session_state.get("try_last", []) if key == model_key]
        if last:  # the uploader forgets its files when you visit another page; the results stay
            st.subheader("Last results")
            for slot, result in enumerate(last):
                show_result(result, others, slot, model, model_key, mask)
        return
    shown = []
    for slot, (name, data) in enumerate(inputs):
        try:
            result, key = result_for(name, data, model, model_key)
            shown.append((result, key))
            show_result(result, others, slot, model, model_key, mask)
        except Exception as exc:
            log.exception("analysis of %s failed", name)
            show_error(exc, prefix=name)
    st.session_state["try_last"] = shown


run_page(main)
