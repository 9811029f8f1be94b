"""Bad input gets a one-line ImageError; good images of any mode come out as upright RGB."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_core.config import fer_split_dir
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
    assert out16.shape == (4, 4, 3) and out16.max() == 233  # 60000 of 65535
    # a dim photo saved with 16 bits reads as its 8-bit twin (it was stretched to its maximum)
    dim = (np.arange(64 * 64).reshape(64, 64) % 128).astype(np.uint8)
    assert np.array_equal(load_image(_png(Image.fromarray(dim.astype(np.uint16) * 257))), load_image(_png(Image.fromarray(dim))))
    # a transparent colour in a gray or RGB PNG is background (white), as in RGBA and palette images
    key = Image.new("L", (4, 4), 10)
    assert (load_image(_png(key, transparency=10)) == 255).all()
    rgb_key = Image.new("RGB", (4, 4), (1, 2, 3))
    assert (load_image(_png(rgb_key, transparency=(1, 2, 3))) == 255).all()
    gray = load_image(np.zeros((6, 7), dtype=np.uint8))
    assert gray.shape == (6, 7, 3)


def test_a_damaged_exif_block_or_tiff_costs_one_line_or_nothing():
    """A JPEG whose EXIF block Pillow cannot rewrite (a text value under a number's tag) still
    loads, turned by its orientation tag; a TIFF with a broken second page (Pillow: TypeError,
    once an exception that took a whole batch down) gives its first page, the image, which is
    whole: the pages after it are never read."""
    import struct

    ex = Image.Exif()
    ex[0x0112], ex[0x010F] = 6, "Cam"
    buf = io.BytesIO()
    Image.new("RGB", (40, 20), (10, 20, 30)).save(buf, format="JPEG", exif=ex)
    damaged = buf.getvalue().replace(b"\x01\x0f\x00\x02", b"\x01\x15\x00\x02", 1)  # Make -> SamplesPerPixel
    assert load_image(damaged, name="x.jpg").shape[:2] == (40, 20)
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (1, 2, 3)).save(buf, format="TIFF")
    tiff = bytearray(buf.getvalue())
    pointer = 8 + 2 + 12 * struct.unpack("<H", tiff[8:10])[0]
    second = len(tiff) + len(tiff) % 2  # a second page without width or height
    tiff += b"\x00" * (second - len(tiff)) + struct.pack("<HHHII", 1, 0x0103, 3, 1, 1) + struct.pack("<I", 0)
    tiff[pointer:pointer + 4] = struct.pack("<I", second)
    assert load_image(bytes(tiff), name="bad.tif")[0, 0].tolist() == [1, 2, 3]


def test_the_frames_of_an_animation_are_not_counted(monkeypatch):
    """The first frame is the image, where Pillow opens it. Counting a GIF's frames walks all of
    them: 2.8 million 1-pixel frames fit under the 50 MB limit, 8 s of a busy server's time."""
    from PIL import GifImagePlugin

    def walked(self):
        raise AssertionError("the frames were counted")

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "n_frames", property(walked))
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "is_animated", property(walked))
    frames = [Image.new("RGB", (6, 4), c) for c in ((200, 0, 0), (0, 0, 200))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    assert load_image(buf.getvalue(), name="a.gif")[0, 0].tolist() == [200, 0, 0]


def test_pillows_own_size_guard_reads_as_a_size_problem(monkeypatch):
    """Over Pillow's decompression-bomb guard (about 89 MP), refused before our own size check
    could read the size: the message still says the image is too large, not unreadable."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50 * 50)
    with pytest.raises(ImageError, match=r"^big.png: image has 10,000 pixels, over the limit of .*; resize it first$"):
        load_image(_png(Image.new("L", (100, 100))), name="big.png")


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
    # Korean class names as Teachable Machine users write them: adjective forms, with spaces
    assert normalize_emotion("화가 난") == "angry"
    assert normalize_emotion("웃는 얼굴") == "happy"
    assert normalize_emotion("슬픈") == "sad" and normalize_emotion("놀란 얼굴") == "surprise"
    assert emotion_from_filename("angry001") == "angry"
    assert emotion_from_filename("Surprised_3") == "surprise"
    assert emotion_from_filename("img_001") is None
    assert emotion_from_filename("슬픔_03") == "sad" and emotion_from_filename("웃는얼굴1") == "happy"
    # a Korean alias that only begins a longer word is no label ("normal photo", "crying child")
    assert emotion_from_filename("보통사진_01") is None and emotion_from_filename("우는아이") is None
    # an alias at the start of another word is that word (a happy photo "madison_beach" was scored as angry)
    for other_word in ("madison_beach", "made_1", "sadie", "joyce2", "calmer", "fearless", "smiley_face"):
        assert emotion_from_filename(other_word) is None, other_word
    assert emotion_from_filename("mad_03") == "angry" and emotion_from_filename("Happy-7") == "happy"
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


def test_a_folder_named_like_an_image_is_reported_at_the_top_too(tmp_path):
    """``extract`` gives every image-like name a row: a folder called ``x.jpg`` (or a link to one)
    beside flat images is listed as skipped, as it is inside an emotion's folder; other folders
    that are no emotion's stay unremarked."""
    from fer_core.images import scan_images

    _write(tmp_path / "angry001.jpg")
    _write(tmp_path / "happy" / "b.png")
    (tmp_path / "happy" / "inner.jpg").mkdir()
    (tmp_path / "sad002.jpg").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "link.png").symlink_to(tmp_path / "notes")
    listing = scan_images(tmp_path)
    assert [(i.name, i.label) for i in listing.items] == [("angry001.jpg", "angry"), ("b.png", "happy")]
    assert sorted((s.file, s.label, s.reason) for s in listing.skipped) == [
        ("happy/inner.jpg", "happy", "a folder"), ("link.png", None, "a folder"), ("sad002.jpg", "sad", "a folder")]


def test_images_in_folders_this_layout_does_not_read_are_said_not_lost(tmp_path):
    """Images in a folder not named after an emotion ("Sad Faces/"), in a folder inside an emotion's
    folder (happy/day1/) or videos among the photos were passed over without a word: evaluate scored
    the rest as if they were all. They are now listed as skipped, with what to do; a folder with
    no image in it (notes, models) and hidden ones stay unremarked."""
    from fer_core.images import NESTED_FOLDER, NOT_EMOTION_FOLDER, VIDEO_IN_FOLDER, scan_images

    _write(tmp_path / "angry" / "a.jpg")
    _write(tmp_path / "Sad Faces" / "s.jpg")
    _write(tmp_path / "happy" / "h.jpg")
    _write(tmp_path / "happy" / "day1" / "deeper" / "h2.JPG")
    _write(tmp_path / "sessions" / "one" / "x.png")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images")
    _write(tmp_path / ".thumbnails" / "t.jpg")
    (tmp_path / "clip.MOV").write_bytes(b"\0" * 64)
    listing = scan_images(tmp_path)
    assert [(i.name, i.label) for i in listing.items] == [("a.jpg", "angry"), ("h.jpg", "happy")]
    assert sorted((s.file, s.label, s.reason) for s in listing.skipped) == [
        ("Sad Faces/", None, NOT_EMOTION_FOLDER), ("clip.MOV", None, VIDEO_IN_FOLDER),
        ("happy/day1/", "happy", NESTED_FOLDER), ("sessions/", None, NOT_EMOTION_FOLDER)]
    only_angry = scan_images(tmp_path, classes=["angry"])  # happy/ is not wanted: nor is what it holds
    assert "happy/day1/" not in [s.file for s in only_angry.skipped] and "Sad Faces/" in [s.file for s in only_angry.skipped]


def test_folders_of_videos_and_videos_of_other_formats_are_said_not_dropped(tmp_path):
    """A folder per participant (p01/session.mp4), a video in a folder inside an emotion's, and
    an MKV or camcorder MTS beside the photos vanished from the listing without a word (only image
    files made a folder worth saying); now each is listed as skipped with what to do."""
    from fer_core.images import NESTED_FOLDER, NOT_EMOTION_FOLDER_OF_VIDEOS, OTHER_VIDEO, scan_images

    for path in ("p01/session.mp4", "happy/extra/deep.mov", "happy/c.mkv", "take.MTS"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"\0" * 64)
    _write(tmp_path / "happy" / "h.jpg")
    assert sorted((s.file, s.label, s.reason) for s in scan_images(tmp_path).skipped) == [
        ("happy/c.mkv", "happy", OTHER_VIDEO), ("happy/extra/", "happy", NESTED_FOLDER),
        ("p01/", None, NOT_EMOTION_FOLDER_OF_VIDEOS), ("take.MTS", None, OTHER_VIDEO)]
    # a participant's folder of videos is measured on its own, not renamed (a reviewer's p01/)
    assert "measure it on its own (extract that folder --fps 10)" in NOT_EMOTION_FOLDER_OF_VIDEOS


def test_missing_folder_is_a_clear_error_with_the_dataset_hint_only_for_the_datasets(tmp_path, monkeypatch):
    """A folder the user typed wrong is just missing; only a default dataset folder that is
    missing points at FER_DATA_DIR (the datasets live somewhere else)."""
    monkeypatch.setenv("FER_DATA_DIR", str(tmp_path / "datasets"))
    with pytest.raises(DatasetError, match=r"absent: folder does not exist\Z"):
        list_images(tmp_path / "absent")
    with pytest.raises(DatasetError, match="val: folder does not exist; set FER_DATA_DIR"):
        list_images(fer_split_dir("val"))


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


def test_size_refusals_read_in_korean():
    from fer_core.i18n import message, using_language

    lines = []
    for size in ((2000, 20), (21000, 1800)):
        with pytest.raises(ImageError) as caught:
            load_image(np.zeros((size[1], size[0]), dtype=np.uint8), name="w.png")
        lines.append(str(caught.value))
    assert "times longer than wide" in lines[0] and "sides over 20,000 px" in lines[1]
    with using_language("ko"):
        assert [message(line) for line in lines] == [
            "w.png: 이미지가 2000x20 픽셀로, 길이가 폭의 12배를 넘습니다. 얼굴 주변만 잘라 주세요",
            "w.png: 이미지가 21000x1800 픽셀입니다. 한 변이 20,000 픽셀을 넘는 이미지는 받지 않습니다. 먼저 크기를 줄이세요"]


def test_a_pixel_limit_one_sets_holds_for_jpegs_too(monkeypatch):
    import fer_core.images as images

    monkeypatch.setenv("FER_MAX_PIXELS", "1000")
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)  # as read when the module is imported
    buf = io.BytesIO()
    Image.new("L", (48, 48)).save(buf, format="JPEG")
    with pytest.raises(ImageError, match="over the limit of 1,000"):
        images.load_image(buf.getvalue(), name="small.jpg")


def test_a_phone_photo_of_48_megapixels_loads():
    """An 8064x6048 JPEG (a 48 MP phone camera) was refused as over 40 MP; JPEGs are decoded at a
    fraction of their size, so it loads scaled to the decoding limit. A PNG that size is still refused."""
    buf = io.BytesIO()
    Image.new("L", (8064, 6048), 128).save(buf, format="JPEG", quality=50)
    rgb = load_image(buf.getvalue(), name="phone.jpg")
    assert rgb.shape == (3024, 4032, 3)
    buf = io.BytesIO()  # a JPEG with a second picture after it (MPF), as many phones write: Pillow's MPO
    Image.new("RGB", (8064, 6048), (90, 90, 90)).save(buf, format="MPO", save_all=True,
                                                      append_images=[Image.new("RGB", (64, 48))])
    assert Image.open(io.BytesIO(buf.getvalue())).format == "MPO"
    assert load_image(buf.getvalue(), name="IMG_0001.jpg").shape == (3024, 4032, 3)
    buf = io.BytesIO()
    Image.new("1", (8064, 6048)).save(buf, format="PNG")
    with pytest.raises(ImageError, match="over the limit of 40,000,000"):
        load_image(buf.getvalue(), name="big.png")


def test_pillows_guard_quotes_the_limit_that_holds_for_the_format(monkeypatch):
    """A PNG over Pillow's bomb guard (89 MP) was told Pillow's limit, 89,478,485 pixels, while a
    PNG is refused from 40,000,000 (only a JPEG, decoded scaled down, goes up to Pillow's)."""
    buf = io.BytesIO()
    Image.new("1", (10_000, 9_000)).save(buf, format="PNG")  # 90 MP, 1 bit a pixel: small to write
    with pytest.raises(ImageError, match=r"^big.png: image has 90,000,000 pixels, over the limit of 40,000,000; "):
        load_image(buf.getvalue(), name="big.png")
    import fer_core.images as images

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50 * 50)  # the guard at 2,500, ours below it
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    for fmt, limit in (("PNG", "1,000"), ("JPEG", "2,500")):  # a JPEG goes up to Pillow's guard
        buf = io.BytesIO()
        Image.new("L", (100, 100)).save(buf, format=fmt)
        with pytest.raises(ImageError, match=rf"^x: image has 10,000 pixels, over the limit of {limit}; "):
            load_image(buf.getvalue(), name="x")


def test_an_avif_is_an_image_wherever_pillow_decodes_it(tmp_path):
    """Pillow decodes AVIF (11.2+, built with libavif): an .avif photo was listed as "AVIF is not
    supported" and the upload widget refused it, while the same file renamed .jpg loaded. One rule,
    the installed Pillow's, now decides for the folder listing, the zip upload and the widget."""
    from PIL import features

    import fer_core.images as images
    from ui.common import IMAGE_TYPES

    decodes = features.check("avif")
    assert (".avif" in images.IMAGE_SUFFIXES) == ("avif" in IMAGE_TYPES) == decodes
    assert (".avif" in images.UNSUPPORTED_SUFFIXES) != decodes
    photo = tmp_path / "happy" / "smile.avif"
    photo.parent.mkdir()
    if decodes:
        Image.new("RGB", (64, 48), (200, 30, 30)).save(photo, format="AVIF", quality=90)
    else:
        photo.write_bytes(b"\x00\x00\x00\x1cftypavif")
    listing = images.scan_images(tmp_path)
    if decodes:
        assert [it.name for it in listing.items] == ["smile.avif"] and not listing.skipped
        rgb = load_image(photo)
        assert rgb.shape == (48, 64, 3) and np.abs(rgb.astype(int) - (200, 30, 30)).max() < 20
    else:
        assert listing.skipped_lines == ["happy/smile.avif: AVIF is not supported; convert it to PNG or JPEG"]


def _zip_with_raw_names(files: dict[bytes, bytes]) -> bytes:
    """A zip whose member names are these bytes with no UTF-8 flag, as Linux's zip (UTF-8) and Korean
    Windows (CP949) write them: written under ASCII stand-ins of the same length, then swapped."""
    import io
    import zipfile

    buf = io.BytesIO()
    stand_ins = {}
    with zipfile.ZipFile(buf, "w") as archive:
        for i, (raw, data) in enumerate(files.items()):
            stand_in = (f"Z{i:03d}" + "Q" * len(raw))[:len(raw)].encode()
            assert len(stand_in) == len(raw) and stand_in not in data
            stand_ins[stand_in] = raw
            archive.writestr(stand_in.decode(), data)
    out = buf.getvalue()
    for stand_in, raw in stand_ins.items():
        out = out.replace(stand_in, raw)
    return out


def test_a_zip_without_the_utf8_flag_keeps_its_korean_and_emoji_names(tmp_path, astronaut_jpeg):
    """A Korean lab's zip (Linux zip: UTF-8 names without the flag; Korean Windows: CP949) was read
    as code page 437: 행복/ became φûëδ│╡/, an emotion folder refused ("no readable images"), and
    every name in the tables was garbled. A HEIC photo in it vanished without a word."""
    from fer_core.images import scan_images, unpack_image_zip

    photo = astronaut_jpeg.read_bytes()
    for encoding in ("utf-8", "cp949"):
        data = _zip_with_raw_names({"행복/웃음 1.jpg".encode(encoding): photo, "슬픔/b.jpg".encode(encoding): photo,
                                    "행복/웃음ㅋㅋ·２.jpg".encode(encoding): photo,  # jamo, middle dot, full-width
                                    b"happy/caf\x82.jpg": photo, b"happy/p.heic": b"\x00" * 64})
        root = unpack_image_zip(data, tmp_path / encoding)
        listing = scan_images(root)
        assert {(Path(it.path).relative_to(root).as_posix(), it.label) for it in listing.items} == {
            ("행복/웃음 1.jpg", "happy"), ("슬픔/b.jpg", "sad"), ("happy/café.jpg", "happy"), ("행복/웃음ㅋㅋ·２.jpg", "happy")}
        assert any("p.heic" in line and "HEIC is not supported" in line for line in listing.skipped_lines)
    data = _zip_with_raw_names({"happy/😀.jpg".encode(): photo})
    assert [p.name for p in (unpack_image_zip(data, tmp_path / "emoji") / "happy").iterdir()] == ["😀.jpg"]
    # a Western Windows zip (code page 437) keeps its accents: CP949 reads most of them as Hangul
    western = ["Überraschung/a.jpg", "happy/Schäfer_01.jpg", "sad/Müller_02.jpg", "happy/niño.jpg", "happy/colère.jpg"]
    root = unpack_image_zip(_zip_with_raw_names({n.encode("cp437"): photo for n in western}), tmp_path / "cp437")
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg")) == sorted(western)


def test_a_file_name_that_names_two_emotions_names_none():
    """A human-ratings review: "happy_rated_sad.jpg" was scored as happy without a word (the
    intended emotion first, the raters' appended), while "P07_sad_vs_happy" named none."""
    from fer_core.emotions import emotion_from_filename

    assert [emotion_from_filename(n) for n in ("happy_rated_sad", "sad_vs_happy", "happiness_sad")] == [None] * 3
    assert [emotion_from_filename(n) for n in ("happy001", "Happy_12", "angry_angry2", "happy_actor3")] == [
        "happy", "happy", "angry", "happy"]


def test_labels_exported_from_a_spreadsheet_in_another_locale_are_read(tmp_path):
    """A ratings sheet saved where the decimal mark is the comma has ';' between cells, names its
    image column Filename, and may give the labels in Korean: read as the comma CSV it means."""
    from fer_core.images import LabeledImage, relabel

    items = [LabeledImage(tmp_path / name, None) for name in ("a.png", "b.png", "c.png")]
    sheet = "Filename;Rater 1;label\na.png;4,5;행복\nb.png;3,0;Sadness\nc.png;1,0;\n".encode("utf-8-sig")
    labelled, record = relabel(items, "ratings.csv", tmp_path, data=sheet)
    assert [(it.path.name, it.label) for it in labelled] == [("a.png", "happy"), ("b.png", "sad")]
    assert record.not_emotions == {"(blank)": 1} and record.column == "label"


def test_a_stimulus_sheets_column_of_images_is_found_or_named(tmp_path):
    """Psychology's ratings sheets head the images Stimulus or Picture: found as a file column; one
    headed otherwise (Stim_ID) is named with ``file_column`` (--file-column), and without it the
    error says how."""
    from fer_core.errors import AUTableError
    from fer_core.images import LabeledImage, relabel

    items = [LabeledImage(tmp_path / name, None) for name in ("a.png", "b.png")]
    labelled, record = relabel(items, "s.csv", tmp_path, data=b"Stimulus,Majority\na.png,happy\nb.png,sad\n",
                               column="Majority")
    assert [it.label for it in labelled] == ["happy", "sad"] and record.file_column == "Stimulus"
    assert relabel(items, "s.csv", tmp_path, data=b"Picture;label\na;happy\n")[1].file_column == "Picture"
    sheet = b"Stim_ID,label\na.png,fear\nb.png,angry\n"
    with pytest.raises(AUTableError, match=r"has no file column \(.*--file-column\) \(its columns: Stim_ID, label\)"):
        relabel(items, "s.csv", tmp_path, data=sheet)
    labelled, record = relabel(items, "s.csv", tmp_path, data=sheet, file_column="stim_id")  # whatever the case
    assert [it.label for it in labelled] == ["fear", "angry"] and record.to_dict()["file_column"] == "Stim_ID"
    with pytest.raises(AUTableError, match="has no 'Stimulus' column"):
        relabel(items, "s.csv", tmp_path, data=sheet, file_column="Stimulus")


def test_labels_rows_match_the_image_they_name_and_no_other(tmp_path):
    """A top-level a.jpg beside P01/a.jpg is the row a.jpg's (it was refused as naming two images);
    a full path from the rater's machine ends in a top-level image's name; a row P02/a.jpg names no
    image when P02 has none (not the one a.jpg of another folder); the same emotion spelt twice is
    one label; a row pasted twice counts once in the raters' agreement; a quote never closed, and
    the file column named as the labels, are one line each."""
    from fer_core.errors import AUTableError
    from fer_core.images import LabeledImage, relabel

    (tmp_path / "P01").mkdir()
    items = [LabeledImage(tmp_path / "a.jpg", None), LabeledImage(tmp_path / "P01" / "a.jpg", None),
             LabeledImage(tmp_path / "b.jpg", None), LabeledImage(tmp_path / "P01" / "c.jpg", None)]
    sheet = ("file,label,R2\na.jpg,happy,happy\nC:\\lab\\stim\\b.jpg,sad,happy\nP01/A.JPG,angry,angry\n"
             "P02/c.jpg,sad,sad\nb.jpg,Sad,happy\nb.jpg,sadness,happy\n")
    labelled, record = relabel(items, "s.csv", tmp_path, data=sheet.encode())
    assert {str(it.path.relative_to(tmp_path)): it.label for it in labelled} == {
        "a.jpg": "happy", "b.jpg": "sad", "P01/a.jpg": "angry"}
    assert record.rows_without_image == ["P02/c.jpg"] and record.no_row == 1
    (pair,) = record.rater_agreement
    assert pair.n == 3, "b.jpg given three rows is one image"
    # a sheet naming the stimuli without their extension: P01/c and b (a beside P01/a stays ambiguous)
    labelled, record = relabel(items, "s.csv", tmp_path, data=b"file,label\nP01/c,fear\nB,sad\na,happy\n")
    assert {str(it.path.relative_to(tmp_path)): it.label for it in labelled} == {"P01/c.jpg": "fear", "b.jpg": "sad"}
    assert record.rows_without_image == ["a"]
    with pytest.raises(AUTableError, match="near line"):
        relabel(items, "s.csv", tmp_path, data=b'file,label\n"a.jpg,happy\nb.jpg,sad\n' + b"x" * 200_000)
    with pytest.raises(AUTableError, match="names the images; the labels are another column"):
        relabel(items, "s.csv", tmp_path, column="file", data=sheet.encode())


def test_every_folder_follows_a_linked_folder_once(tmp_path):
    """A folder per participant linked in from elsewhere is read; a link back up ends, not loops."""
    from fer_core.images import scan_images

    store = tmp_path / "store" / "P01"
    store.mkdir(parents=True)
    Image.new("L", (8, 8)).save(store / "x.png")
    root = tmp_path / "stim"
    root.mkdir()
    Image.new("L", (8, 8)).save(root / "y.png")
    (root / "P01").symlink_to(store)
    (store / "up").symlink_to(root)
    listing = scan_images(root, every_folder=True)
    assert sorted(str(it.path.relative_to(root)) for it in listing.items) == ["P01/x.png", "y.png"]
