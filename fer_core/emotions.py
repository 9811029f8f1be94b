"""Emotion names, their aliases, and the class sets the study uses."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

from .errors import FerError

SIX_EMOTIONS: tuple[str, ...] = ("angry", "disgust", "happy", "neutral", "sad", "surprise")
SEVEN_EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

# The original study's OpenFace table codes its labels 0..5 in this order.
OPENFACE_STUDY_CODES: dict[int, str] = dict(enumerate(SIX_EMOTIONS))

_ALIASES: dict[str, str] = {
    "anger": "angry", "angry": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust", "disgusting": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "smile": "happy", "smiling": "happy",
    "neutral": "neutral", "calm": "neutral",
    "sad": "sad", "sadness": "sad", "unhappy": "sad",
    "surprise": "surprise", "surprised": "surprise", "suprise": "surprise",
    # Korean, as the dashboard writes them and as people name folders and classes
    "화남": "angry", "분노": "angry", "혐오": "disgust", "두려움": "fear", "공포": "fear",
    "행복": "happy", "기쁨": "happy", "무표정": "neutral", "중립": "neutral", "슬픔": "sad",
    "놀람": "surprise", "놀라움": "surprise",
    # adjective and everyday forms Korean class names use ("화가 난", "웃는 얼굴"); spaces are dropped
    "화난": "angry", "화가난": "angry", "화남얼굴": "angry", "화난얼굴": "angry", "혐오감": "disgust",
    "역겨움": "disgust", "역겨운": "disgust", "무서움": "fear", "무서운": "fear", "겁먹은": "fear",
    "행복한": "happy", "기쁜": "happy", "웃음": "happy", "웃는얼굴": "happy", "웃는": "happy",
    "무표정한": "neutral", "보통": "neutral", "평온": "neutral", "슬픈": "sad", "슬픈얼굴": "sad",
    "우는": "sad", "놀란": "surprise", "놀란얼굴": "surprise",
}


# The words a file name may give an emotion by anywhere in it (``emotion_from_filename``): the
# emotions' own names, not the everyday aliases a name holds for other reasons ("smile", "calm", "mad")
_NAME_WORDS: dict[str, str] = {w: e for w, e in _ALIASES.items() if w in {
    "anger", "angry", "disgust", "disgusted", "fear", "fearful", "afraid", "scared", "happy", "happiness",
    "neutral", "sad", "sadness", "surprise", "surprised", "화남", "분노", "혐오", "두려움", "공포", "행복", "기쁨",
    "무표정", "중립", "슬픔", "놀람"}}


# Emotions some datasets label (CK+ and AffectNet: contempt) that no model here predicts: such a
# label is read as what it is, so its rows are left out as another emotion's, not refused as unknown.
_UNMODELLED_ALIASES: dict[str, str] = {"contempt": "contempt", "contemptuous": "contempt", "경멸": "contempt"}


def _alias_key(name: str) -> str:
    key = unicodedata.normalize("NFC", str(name)).lower()  # NFC: macOS writes Korean file names decomposed (NFD)
    return "".join(key.split()).replace("-", "").replace("_", "")


def unmodelled_emotion(name: str) -> str | None:
    """An emotion a dataset may label that no model here predicts ("Contempt" → ``contempt``), or None."""
    return _UNMODELLED_ALIASES.get(_alias_key(name))


def normalize_emotion(name: str) -> str | None:
    """Map a label as people write it ("Happiness", " ANGER ") to this project's name, or None."""
    return _ALIASES.get(_alias_key(name))


_PICTURE_WORDS = frozenset({"face", "faces", "expression", "expressions", "look"})  # "Happy face"


def emotion_in_name(name: str) -> str | None:
    """``normalize_emotion``, also past what people add to a class name ("Happy :)", "Angry 1",
    "Surprised!"): the name's letters alone are tried when the whole name is not an emotion."""
    core = re.sub(r"^[\W\d_]+|[\W\d_]+$", "", str(name))
    found = normalize_emotion(name) or (normalize_emotion(core) if core else None)
    # "Happy face", "Surprised faces", "Angry expression": Teachable Machine classes named for the picture
    words = core.split()
    if found is None and len(words) > 1 and words[-1].lower() in _PICTURE_WORDS:
        found = normalize_emotion(" ".join(words[:-1]))
    return found


def emotion_from_filename(stem: str) -> str | None:
    """Emotion from a flat-folder file name such as ``angry001``, ``Happy_12`` (a name that starts with
    any alias: the longest wins) or ``P07_session2_happy03`` (an emotion's plain name further in). An
    alias followed by more letters is another word, not an emotion label: "madison_beach" is not
    angry, "sadie" not sad, "보통사진" and "우는아이" not neutral and sad. A name that names two
    emotions ("happy_rated_sad", "sad_vs_happy") names none: it is left unlabelled, and counted so."""
    low = unicodedata.normalize("NFC", stem).lower()
    best = None
    for alias, emotion in _ALIASES.items():
        if not low.startswith(alias) or low[len(alias):len(alias) + 1].isalpha():
            continue
        if best is None or len(alias) > len(best[0]):
            best = (alias, emotion)
    named = {_NAME_WORDS[w] for w in re.findall(r"[^\W\d_]+", low) if w in _NAME_WORDS}
    if best:  # "happy_rated_sad" names two emotions: no label, rather than the first one's, unsaid
        return best[1] if not named - {best[1]} else None
    # a lab's names put the participant first ("P07_session2_happy03", "P07happy(1)"): further in, one
    # emotion's plain name as a run of letters of its own labels it, as long as the name names one
    # emotion only ("P07_sad_vs_happy" names none) and by its plain name ("P07_no_smile" is no smile)
    return named.pop() if len(named) == 1 else None


def parse_classes(spec: str | None, least: int = 2) -> tuple[str, ...]:
    """Parse a class-set option: "six", "seven" or a comma list of emotion names, at least
    ``least`` (a model tells two emotions apart; ``extract --classes happy`` measures one)."""
    if spec is None or spec.strip().lower() in ("", "six", "6"):
        return SIX_EMOTIONS
    if spec.strip().lower() in ("seven", "7"):
        return SEVEN_EMOTIONS
    out = []
    for part in spec.split(","):
        emotion = normalize_emotion(part)
        if emotion is None and unmodelled_emotion(part):
            raise FerError(f"{part.strip()!r}: no model here learns {unmodelled_emotion(part)}; "
                           f"use names from {', '.join(SEVEN_EMOTIONS)}")
        if emotion is None:
            import difflib

            word = part.strip().lower()
            close = difflib.get_close_matches(word, ["six", "seven", *SEVEN_EMOTIONS], n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise FerError(f"unknown emotion {part.strip()!r}: use names from {', '.join(SEVEN_EMOTIONS)}, or six "
                           f"or seven{hint}")
        if emotion not in out:
            out.append(emotion)
    if len(out) < least:
        raise FerError("a class set needs at least two emotions")
    return tuple(e for e in SEVEN_EMOTIONS if e in out)


def classes_given(classes: str | Sequence[str]) -> tuple[str, ...]:
    """A script's emotions, read as ``--classes`` reads them: "six", "happy,sad" or a list of names
    ("Happy" is happy; "hapy" or an empty name a one-line error), at least one."""
    if isinstance(classes, str):
        return parse_classes(classes, least=1)
    names = [str(c) for c in classes]
    if any(not name.strip() or "," in name for name in names):
        raise FerError(f"classes: {names!r} holds an empty name or a comma; give one emotion per item")
    return parse_classes(",".join(names), least=1)


def shared_classes(class_sets: Iterable[Sequence[str]], present: Iterable[str] | None = None) -> tuple[str, ...]:
    """The emotions every model in ``class_sets`` predicts (and, if given, that occur in
    ``present``, e.g. the test set's labels), in the canonical order: the one rule by which a
    comparison picks the classes it scores."""
    sets = [set(s) for s in class_sets]
    wanted = set.intersection(*sets) if sets else set(SEVEN_EMOTIONS)
    if present is not None:
        wanted &= set(present)
    return tuple(e for e in SEVEN_EMOTIONS if e in wanted)


# Two emotions this close in probability (0.30 against 0.29) are about equally the model's answer:
# the sentence naming the first reads surer than the model is. Fixed beforehand, not fitted to a
# test set; bench/close_calls.py measures how often such answers are right.
CLOSE_CALL_MARGIN = 0.10


def close_call(probabilities: dict[str, float], margin: float = CLOSE_CALL_MARGIN) -> tuple[str, float] | None:
    """The runner-up emotion and its probability when it is within ``margin`` of the answer; None
    when the answer is clear (or there are no numbers to read, e.g. no face). The answer is the
    first of the highest, as every model's answer is taken; a tie's runner-up is the other one."""
    known = {e: float(p) for e, p in probabilities.items() if p is not None and p == p}  # NaN, None: not judged
    if len(known) < 2:
        return None
    answer = max(known, key=known.get)
    runner_up = max((e for e in known if e != answer), key=known.get)
    return None if known[answer] - known[runner_up] >= margin else (runner_up, known[runner_up])
