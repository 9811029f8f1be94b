"""Korean and English text: one catalogue per language, the current language per session.

The catalogue of a language is the folder ``fer_core/locales/<lang>/``; each JSON file in it holds
the keys of one area (``home.json`` → ``home.*``) so pages can be translated side by side. Keys
and ``{placeholders}`` must match across languages (``tests/test_i18n.py``). The language in use
is a context variable: the dashboard sets it once per script run, the HTML report and the CLI
with :func:`using_language`, and everything in ``fer_core`` that writes for people calls :func:`t`.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import json
import re
import string
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path

LANGUAGES: dict[str, str] = {"en": "English", "ko": "한국어"}
DEFAULT_LANGUAGE = "en"
LOCALES_DIR = Path(__file__).parent / "locales"
# The fonts of figures and reports, in the order a browser tries them for each character: the
# dashboard's own (its theme's "Source Sans, NanumGothic"), then common system fonts. Source Sans
# draws digits and points: NanumGothic's point reads as a comma at screen size ("0,42"). It has no
# Hangul, so Korean falls to NanumGothic (served by the dashboard; cut into a report, limited to
# Hangul there so that its digits come from the Latin system fonts after it). NanumGothic stays
# before those: Chromium left Hangul as empty boxes when a system font came before a web font
# still loading.
HANGUL_CHARACTERS = "U+3131-318E, U+AC00-D7A3"  # compatibility jamo and syllables
FONT_FAMILY = ("'Source Sans', NanumGothic, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, 'Liberation Sans', "
               "'Noto Sans KR', 'Noto Sans CJK KR', 'Malgun Gothic', 'Apple SD Gothic Neo', sans-serif")

# None: no run has set it in this context (a fresh thread); then ``_language_source`` answers.
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("fer_language", default=None)
_language_source: Callable[[], str | None] | None = None


def normalise(lang: str | None) -> str:
    """A supported language code from user input (``?lang=KO`` → ``ko``); unknown → English."""
    code = (lang or "").strip().lower()[:2]
    return code if code in LANGUAGES else DEFAULT_LANGUAGE


@cache
def catalogue(lang: str) -> Mapping[str, str]:
    """Every key of one language, ``area.key`` → text."""
    folder = LOCALES_DIR / lang
    if not folder.is_dir():
        raise KeyError(f"no catalogue for language {lang!r}")
    merged: dict[str, str] = {}
    for path in sorted(folder.glob("*.json")):
        area = path.stem
        for key, text in json.loads(path.read_text(encoding="utf-8")).items():
            merged[f"{area}.{key}"] = text
    return merged


def current_language() -> str:
    code = _current.get()
    if code is None and _language_source is not None:
        code = _language_source()
    return normalise(code) if code else DEFAULT_LANGUAGE


def follow_language(source: Callable[[], str | None] | None) -> None:
    """Where the language comes from in a thread that has not set one: the dashboard's current
    session (``ui.common``). Streamlit runs a fragment's rerun (the CNN page's live view) and a
    widget's callback in a fresh thread, before the page sets its language: without this they
    wrote English in a Korean session. ``source`` returns None outside a session."""
    global _language_source
    _language_source = source


def set_language(lang: str | None) -> str:
    """Use this language for the rest of this thread's work (a dashboard script run)."""
    code = normalise(lang)
    _current.set(code)
    return code


@contextlib.contextmanager
def using_language(lang: str | None) -> Iterator[str]:
    """Write in this language inside the block (reports, CLI output), then go back."""
    token = _current.set(normalise(lang))
    try:
        yield current_language()
    finally:
        _current.reset(token)


def t(key: str, /, **values: object) -> str:
    """The text of ``key`` in the current language, with ``{placeholders}`` filled in.

    A key missing from the current language falls back to English, and a key missing everywhere
    shows as itself: a page never fails over a missing string (the test suite catches those).
    """
    text = catalogue(current_language()).get(key)
    if text is None:
        text = catalogue(DEFAULT_LANGUAGE).get(key, key)
    return attach_particles(text.format(**values)) if values else text


# A Korean particle written for either word ending ("은(는)": 은 after a final consonant, 는 after a
# vowel), as a template must write it before a name it does not know; a number in brackets between
# them is the word's value ("AU06 뺨 올림(0.7)이"), and the particle goes by the word.
_PARTICLES = re.compile(r"(?<=[가-힣0-9])(\([0-9][0-9.,]*\))?(은\(는\)|이\(가\)|을\(를\)|과\(와\)|\(으\)로)")
# The final consonant of a number's last digit as read aloud (영 일 이 삼 사 오 육 칠 팔 구; a
# number ending in 0 reads 십, 백, 천, 만 or 영: a final consonant, never ㄹ), as ``pick`` counts it.
_DIGIT_FINALS = {"0": 21, "1": 8, "2": 0, "3": 16, "4": 0, "5": 0, "6": 1, "7": 8, "8": 8, "9": 0}


def attach_particles(text: str) -> str:
    """Korean text with each "은(는)", "이(가)", "을(를)", "과(와)", "(으)로" after a Hangul syllable
    or a digit written as the one it takes ("AU26 턱 내림은", "AU14 보조개는", "행복으로", "놀람으로",
    "AU12가", "AU17이", "AU06 뺨 올림(0.7)이"); other text unchanged."""
    if "(" not in text:
        return text

    def pick(found: re.Match) -> str:
        before = text[found.start() - 1]
        final = _DIGIT_FINALS[before] if before.isascii() else (ord(before) - 0xAC00) % 28  # 0: none, 8: ㄹ
        value, particle = found.group(1) or "", found.group(2)
        if particle == "(으)로":  # 으로 after a final consonant other than ㄹ
            return value + ("으로" if final not in (0, 8) else "로")
        return value + (particle[0] if final else particle[2])

    return _PARTICLES.sub(pick, text)


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def emotion_label(emotion: str) -> str:
    """An emotion's name in the current language (``happy`` → ``행복``); unknown names unchanged."""
    return catalogue(current_language()).get(f"emotions.{emotion}", emotion)


def kind_label(kind: str) -> str:
    """A model kind as a person reads it, in the current language ("AU 병목 신경망" for
    ``au-bottleneck``); a plugin's kind without a name of its own stays as it is."""
    return catalogue(current_language()).get(f"kinds.{kind}", kind)


def emotion_labels(emotions) -> list[str]:
    return [emotion_label(e) for e in emotions]


@cache
def _message_patterns(lang: str) -> tuple[tuple[re.Pattern, str], ...]:
    """English templates of area ``messages`` as regular expressions, with this language's text."""
    english, here = catalogue(DEFAULT_LANGUAGE), catalogue(lang)
    patterns = []
    for key, template in english.items():
        if key.startswith("messages."):
            parts = re.split(r"\{(\w+)\}", template)
            # a placeholder may be empty ("rows{labelled} ("); an exit code is digits, so that
            # "code {code}{detail}" splits 137 from what follows it
            regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>-?\\d+)" if part == "code"
                            else f"(?P<{part}>.*?)" for i, part in enumerate(parts))
            patterns.append((re.compile(regex + r"\Z", re.S), here[key]))
    return tuple(sorted(patterns, key=lambda p: -len(p[0].pattern)))


def message(text: str) -> str:
    """A one-line error or notice from ``fer_core`` in the current language.

    ``fer_core`` writes its messages in English (logs, CLI); the common ones have a template in
    area ``messages`` (``"{label}: file is empty"``) and are rewritten here; the rest keep their
    English text, with known failure reasons translated (:func:`reason`).
    """
    if current_language() == DEFAULT_LANGUAGE:
        return text
    for pattern, translated in _message_patterns(current_language()):
        found = pattern.match(text)
        if found:
            return attach_particles(translated.format(**{k: _placeholder(k, v) for k, v in found.groupdict().items()}))
    return reason(text)


def _placeholder(name: str, value: str) -> str:
    """A message's placeholder in the current language: a JSON type's name ("an object", area
    ``json_types``) as a whole, anything else through :func:`reason`."""
    if name == "json_type":
        return catalogue(current_language()).get(f"json_types.{value}", value)
    if name == "labelled" and value.startswith(" labelled "):  # " labelled angry, happy": the emotions asked for
        emotions = [emotion_label(e.strip()) for e in value.removeprefix(" labelled ").split(",")]
        return t("table_rows.labelled_as", emotions=", ".join(emotions))
    return reason(value)


def reason(text: str) -> str:
    """A measuring failure (``"x.jpg: no face found"``) with the reasons ``fer_core`` gives in
    English replaced by the current language's (area ``reasons``); other text unchanged."""
    if current_language() == DEFAULT_LANGUAGE:
        return text
    english, here = catalogue(DEFAULT_LANGUAGE), catalogue(current_language())
    for key, phrase in sorted(english.items(), key=lambda kv: -len(kv[1])):
        if key.startswith("reasons.") and phrase in text:
            text = text.replace(phrase, here[key])
    return text


def hangul_font_path() -> Path | None:
    """A TrueType font that draws Hangul (NanumGothic from the ``koreanize-matplotlib`` package).

    The package is found, not imported: importing it imports matplotlib (most of a second), which
    would delay the first face drawn in Try it."""
    try:
        spec = importlib.util.find_spec("koreanize_matplotlib")
    except (ImportError, ValueError):
        return None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "fonts" / "NanumGothic.ttf"
        if path.is_file():
            return path
    return None


def embedded_font_css(text: str, family: str = "NanumGothic") -> str:
    """An ``@font-face`` rule carrying NanumGothic cut down to the Hangul of ``text``.

    For files opened offline (the HTML report): Hangul then renders on machines without a Korean
    font, for a few hundred kB rather than the whole 4.7 MB font. Only Hangul (``unicode-range``):
    digits and Latin letters go on to the Latin fonts of ``FONT_FAMILY``. Empty when the font is
    missing or ``text`` holds no Hangul.
    """
    import base64
    import io

    hangul = {ch for ch in text if "\uac00" <= ch <= "\ud7a3" or "\u3131" <= ch <= "\u318e"}
    source = hangul_font_path()
    if not hangul or source is None:
        return ""
    from fontTools import subset

    options = subset.Options()
    options.desubroutinize = True
    font = subset.load_font(str(source), options)
    # Listed as dropped, the font editor's TSI tables go quietly; unlisted, fontTools warns on
    # stderr for each ("TSI0 NOT subset") on every Korean report.
    options.drop_tables += [tag for tag in sorted(font.keys()) if tag.startswith("TSI")]
    subsetter = subset.Subsetter(options)
    subsetter.populate(text="".join(sorted(hangul)))
    subsetter.subset(font)
    _web_safe(font)
    out = io.BytesIO()
    font.save(out)
    data = base64.b64encode(out.getvalue()).decode("ascii")
    return (f"@font-face {{font-family: '{family}'; src: url(data:font/ttf;base64,{data}) format('truetype'); "
            f"unicode-range: {HANGUL_CHARACTERS};}}")


def install_browser_font(static_dir: Path) -> Path | None:
    """Copy the Hangul font where the dashboard serves static files (``app/static/``), once."""
    source = hangul_font_path()
    if source is None:
        return None
    target = static_dir / "NanumGothic.ttf"
    if not target.is_file() or target.stat().st_mtime < source.stat().st_mtime:
        import tempfile

        from fontTools.ttLib import TTFont

        static_dir.mkdir(parents=True, exist_ok=True)
        font = _web_safe(TTFont(str(source)))
        # A temporary name of its own: two servers (or sessions) starting at once on a fresh checkout
        # wrote one NanumGothic.tmp, and the second to rename it found it gone.
        fd, tmp_name = tempfile.mkstemp(dir=static_dir, prefix=".NanumGothic-", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with open(fd, "wb") as fh:
                font.save(fh)
            tmp.chmod(0o644)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def _web_safe(font):
    """Drop the font editor's tables (TSI0–TSI5: empty in NanumGothic) that browsers refuse."""
    tags = font.keys()
    for tag in [tag for tag in tags if tag.startswith("TSI")]:
        del font[tag]
    return font
