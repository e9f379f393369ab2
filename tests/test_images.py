"""load_image for each kind of image file a collection holds, and the caption transforms."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmseq.data.images import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    check_image,
    encoder_transforms,
    image_transforms,
    load_image,
)
from mmseq.encoders.image import ImageEncoderConfig

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _two_halves(width: int = 16, height: int = 8) -> Image.Image:
    """Left half red, right half blue."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = RED
    pixels[:, width // 2 :] = BLUE
    return Image.fromarray(pixels)


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height RGB pixels but holds almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _rgb(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


# --- files that are refused ---------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match=r"nope\.png: image file does not exist"):
        load_image(tmp_path / "nope.png")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    for read in (load_image, check_image):
        with pytest.raises(ImageLoadError, match=r"empty\.jpg: image file is empty \(0 bytes\)"):
            read(path)


def test_text_renamed_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("a red square left of a blue circle\n")
    for read in (load_image, check_image):
        with pytest.raises(ImageLoadError, match=r"notes\.jpg: not an image"):
            read(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_image(tmp_path: Path, fmt: str) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = tmp_path / f"cut.{fmt.lower()}"
    Image.fromarray(noise).save(path, fmt)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageLoadError, match=rf"cut\.{fmt.lower()}: .*(truncated|corrupt)"):
        load_image(path)


def test_decompression_bomb_refused_before_decoding(tmp_path: Path) -> None:
    # Declares 10000 x 10000: above the default limit yet below Pillow's own error threshold
    # (twice its limit), so this is mmseq's check; the pixel data is never read.
    path = _png_header(tmp_path / "bomb.png", 10_000, 10_000)
    with pytest.raises(ImageLoadError, match=r"bomb\.png: 10000x10000 = 100000000 pixels exceeds"):
        load_image(path)
    with pytest.raises(ImageLoadError, match="max_pixels"):
        check_image(path)
    # Far above Pillow's threshold: Pillow refuses inside Image.open; still an ImageLoadError.
    huge = _png_header(tmp_path / "huge.png", 100_000, 100_000)
    with pytest.raises(ImageLoadError, match=r"huge\.png: .*decompression bomb"):
        load_image(huge)
    assert DEFAULT_MAX_PIXELS == 89_478_485


def test_max_pixels_can_be_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    _two_halves(100, 100).save(path)
    with pytest.raises(ImageLoadError, match="10000 pixels exceeds max_pixels=5000"):
        load_image(path, max_pixels=5000)
    assert load_image(path, max_pixels=10_000).size == (100, 100)
    # A limit above Pillow's process-wide one is honoured, not overruled by Pillow.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert load_image(path, max_pixels=20_000).size == (100, 100)
    assert load_image(path, max_pixels=None).size == (100, 100)


# --- files that load, converted to upright RGB --------------------------------------------


def test_rgb_png_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "halves.png"
    _two_halves().save(path)
    check_image(path)
    pixels = _rgb(load_image(path))
    assert pixels.shape == (8, 16, 3)
    assert (pixels[:, :8] == RED).all() and (pixels[:, 8:] == BLUE).all()


def test_grayscale(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.fromarray(np.full((4, 6), 77, np.uint8)).save(path)
    assert (_rgb(load_image(path)) == 77).all()


def test_16_bit_grayscale_scaled_to_8_bits(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    values = np.array([[0, 32896, 65535]], np.uint16)  # 32896 = 128 * 257
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    assert _rgb(load_image(path))[0, :, 0].tolist() == [0, 128, 255]


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path, quality=95)  # pure red
    assert Image.open(path).mode == "CMYK"
    pixels = _rgb(load_image(path))
    assert np.abs(pixels - RED).max() < 10


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[0, 0] = (255, 0, 0, 255)  # opaque red
    pixels[0, 1] = (255, 0, 0, 128)  # half-transparent red
    pixels[1, :] = (0, 0, 0, 0)  # fully transparent black
    Image.fromarray(pixels, "RGBA").save(path)
    rgb = _rgb(load_image(path))
    assert rgb[0, 0].tolist() == list(RED)
    assert np.abs(rgb[0, 1] - (255, 127, 127)).max() <= 1
    assert (rgb[1] == 255).all()


def test_palette_with_transparency(tmp_path: Path) -> None:
    path = tmp_path / "palette.png"
    image = Image.new("P", (4, 1))
    image.putpalette([0, 0, 0, 0, 128, 0] + [0] * 762)  # 0 black (transparent), 1 green
    image.putdata([0, 1, 1, 0])
    image.save(path, transparency=0)
    rgb = _rgb(load_image(path))
    assert rgb[0].tolist() == [[255, 255, 255], [0, 128, 0], [0, 128, 0], [255, 255, 255]]


def test_exif_rotation_applied(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    _two_halves(32, 16).save(path, exif=exif, quality=95)
    image = load_image(path)
    assert image.size == (16, 32)  # width and height swapped
    rgb = _rgb(image)
    # The stored left (red) half is displayed on top.
    assert np.abs(rgb[2:14, :] - RED).max() < 40
    assert np.abs(rgb[18:30, :] - BLUE).max() < 40


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (4, 4), colour) for colour in (RED, BLUE, (0, 255, 0))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 3
    assert (_rgb(load_image(path)) == RED).all()


# --- transforms ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (2000, 2), (3, 500), (40, 30)])
def test_transforms_give_the_encoder_size_for_any_shape(tmp_path: Path, size) -> None:
    path = tmp_path / "odd.png"
    Image.new("RGB", size, (255, 255, 255)).save(path)
    image = load_image(path)
    for train in (False, True):
        x = image_transforms((32, 48), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), train)(image)
        assert type(x) is torch.Tensor and x.dtype == torch.float32
        assert x.shape == (3, 32, 48)
        torch.testing.assert_close(x, torch.full_like(x, 2.0))  # (1 - 0.5) / 0.25


def test_eval_transform_keeps_the_whole_image_and_matches_the_encoder() -> None:
    config = ImageEncoderConfig(image_size=32, patch_size=16, image_mean=(0.1, 0.2, 0.3))
    x = encoder_transforms(config, train=False)(_two_halves(64, 32))
    assert x.shape == (3, 32, 32)
    red = (torch.tensor([1.0, 0, 0]) - torch.tensor([0.1, 0.2, 0.3])) / 0.5
    blue = (torch.tensor([0.0, 0, 1]) - torch.tensor([0.1, 0.2, 0.3])) / 0.5
    # Squashed, not cropped: both halves survive at the edges.
    torch.testing.assert_close(x[:, :, 0], red[:, None].expand(3, 32))
    torch.testing.assert_close(x[:, :, -1], blue[:, None].expand(3, 32))


def test_train_transform_never_flips_or_recolours() -> None:
    transform = image_transforms(32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), train=True)
    image = _two_halves(64, 64)
    torch.manual_seed(0)
    outputs = [transform(image) for _ in range(20)]
    assert any(not torch.equal(outputs[0], x) for x in outputs[1:])  # it does augment
    for x in outputs:
        # Left stays red, right stays blue: no flip, and colours are untouched.
        torch.testing.assert_close(x[:, :, 0], torch.tensor([1.0, 0, 0])[:, None].expand(3, 32))
        torch.testing.assert_close(x[:, :, -1], torch.tensor([0.0, 0, 1])[:, None].expand(3, 32))


def test_augment_none_trains_on_the_image_as_it_is() -> None:
    image = _two_halves(32, 32)
    plain = image_transforms(32, (0.0,) * 3, (1.0,) * 3, train=True, augment="none")
    expected = image_transforms(32, (0.0,) * 3, (1.0,) * 3, train=False)(image)
    assert all(torch.equal(plain(image), expected) for _ in range(5))
    with pytest.raises(ValueError, match="augment: expected one of"):
        image_transforms(32, (0.5,) * 3, (0.5,) * 3, train=True, augment="flip")


def test_transform_rejects_bad_normalisation() -> None:
    with pytest.raises(ValueError, match="std"):
        image_transforms(32, (0.5, 0.5), (0.5, 0.5), train=False)
    with pytest.raises(ValueError, match="std"):
        image_transforms(32, (0.5, 0.5, 0.5), (0.5, 0.0, 0.5), train=False)
