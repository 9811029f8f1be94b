"""Bad input gets a one-line ImageError; good images of any mode come out as upright RGB."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fer_core.emotions import emotion_from_filename, normalize_emotion, parse_classes
from fer_core.errors import DatasetError, FerError, ImageError
from fer_core.images import draw_test_set, list_images, load_image


def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


@pytest.mark.parametrize("payload, expected", [
    (b"", "empty"),
    (b"this is not an image at all", "not a readable image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a readable image"),
])
def test_non_images_are_refused_with_one_line(payload, expected):
    with pytest.raises(ImageError) as err:
        load_image(payload, name="upload.png")
    assert expected in str(err.value)
    assert "upload.png" in str(err.value) and "\n" not in str(err.value)


def test_truncated_jpeg_is_reported_as_corrupt(tmp_path, astronaut):
    path = tmp_path / "cut.jpg"
    Image.fromarray(astronaut).save(path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ImageError) as err:
        load_image(path)
    assert "cut.jpg" in str(err.value) and "corrupt" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.jpg")


def test_decompression_bomb_is_refused_before_decoding(monkeypatch):
    import fer_core.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)
    data = _png(Image.new("L", (200, 200)))
    with pytest.raises(ImageError, match="over the limit"):
        images.load_image(data, name="huge.png")


def test_modes_are_converted_to_rgb():
    rgba = Image.new("RGBA", (10, 8), (255, 0, 0, 0))  # fully transparent -> white background
    out = load_image(_png(rgba))
    assert out.shape == (8, 10, 3) and out.dtype == np.uint8 and (out == 255).all()
    pal = Image.new("P", (5, 5))
    pal.putpalette([0, 128, 255] * 256)
    assert load_image(_png(pal))[0, 0].tolist() == [0, 128, 255]
    sixteen = Image.fromarray(np.full((4, 4), 60000, dtype=np.uint16))
    out16 = load_image(_png(sixteen))
    assert out16.shape == (4, 4, 3) and out16.max() == 255
    gray = load_image(np.zeros((6, 7), dtype=np.uint8))
    assert gray.shape == (6, 7, 3)


def test_exif_rotation_is_applied():
    im = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    assert load_image(buf.getvalue()).shape[:2] == (40, 20)


def test_emotion_names_and_aliases():
    assert normalize_emotion(" Happiness ") == "happy"
    assert normalize_emotion("ANGER") == "angry"
    assert normalize_emotion("sadness") == "sad"
    assert normalize_emotion("bored") is None
    assert emotion_from_filename("angry001") == "angry"
    assert emotion_from_filename("Surprised_3") == "surprise"
    assert emotion_from_filename("img_001") is None
    assert parse_classes("six") == ("angry", "disgust", "happy", "neutral", "sad", "surprise")
    assert "fear" in parse_classes("seven")
    assert parse_classes("Happy,anger") == ("angry", "happy")
    with pytest.raises(FerError, match="unknown emotion"):
        parse_classes("happy,bored")


def _write(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (48, 48), value).save(path)


def test_kaggle_and_flat_layouts(tmp_path):
    _write(tmp_path / "kaggle" / "Anger" / "a.jpg")
    _write(tmp_path / "kaggle" / "happy" / "b.png")
    _write(tmp_path / "kaggle" / "notes" / "c.jpg")  # not an emotion: ignored
    items = list_images(tmp_path / "kaggle")
    assert [(i.name, i.label) for i in items] == [("a.jpg", "angry"), ("b.png", "happy")]
    _write(tmp_path / "flat" / "angry001.jpg")
    _write(tmp_path / "flat" / "surprise002.jpg")
    (tmp_path / "flat" / "readme.txt").write_text("x")
    flat = list_images(tmp_path / "flat")
    assert [(i.name, i.label) for i in flat] == [("angry001.jpg", "angry"), ("surprise002.jpg", "surprise")]
    assert [i.label for i in list_images(tmp_path / "flat", classes=("angry",))] == ["angry"]


def test_missing_dataset_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        list_images(tmp_path / "absent")


def test_draw_test_set_is_reproducible(tmp_path):
    for emotion in ("angry", "happy"):
        for i in range(15):
            _write(tmp_path / "src" / emotion / f"{emotion}_{i:02d}.jpg", value=i)
    a = draw_test_set(tmp_path / "src", tmp_path / "a", per_class=10, classes=("angry", "happy"), seed=3)
    b = draw_test_set(tmp_path / "src", tmp_path / "b", per_class=10, classes=("angry", "happy"), seed=3)
    assert [x.name for x in a] == [x.name for x in b] and len(a) == 20
    assert len(list((tmp_path / "a" / "happy").iterdir())) == 10
    with pytest.raises(DatasetError, match="only 15 angry"):
        draw_test_set(tmp_path / "src", tmp_path / "c", per_class=20, classes=("angry",))
