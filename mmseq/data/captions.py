"""Image-caption datasets: JSON-lines manifests and COCO-style caption annotations.

Items are ``{"id": str, "image": Tensor float32 [3, H, W] (transformed), "text": str (a random
caption when training, the first otherwise), "references": list[str] (all captions)}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from mmseq.data.errors import DataError
from mmseq.data.images import DEFAULT_MAX_PIXELS, ImageLoadError, check_image, load_image
from mmseq.data.manifest import (
    BadEntry,
    EntryDataset,
    Rejects,
    UniqueIds,
    decode_line,
    field,
    optional_id,
    parse_json_object,
    read_lines,
    resolve_file,
    text_value,
    where,
    word_count,
)

Transform = Callable[[Image.Image], Tensor]


@dataclass(frozen=True)
class CaptionEntry:
    id: str
    path: Path
    captions: tuple[str, ...]
    location: str  # named by errors raised when the image is decoded
    line: int  # in the manifest (COCO: the index in 'images')


class _CaptionDataset(EntryDataset):
    """Entries plus decoding; subclasses fill `entries` and `rejects`."""

    entries: list[CaptionEntry]
    rejects: Rejects

    def __init__(
        self, transform: Transform, train: bool, skip_bad: bool, max_pixels: int | None
    ) -> None:
        self.transform, self.train, self.max_pixels = transform, train, max_pixels
        self.rejects = Rejects(skip_bad)
        self.entries = []

    def __getitem__(self, index: int) -> dict[str, object]:
        entry = self.entries[index]
        try:
            image = load_image(entry.path, self.max_pixels)
        except ImageLoadError as exc:
            raise DataError(f"{entry.location}: {exc}") from exc
        # torch's generator, not `random`: seeded per DataLoader worker and by seed_everything.
        pick = int(torch.randint(len(entry.captions), ())) if self.train else 0
        return {
            "id": entry.id,
            "image": self.transform(image),
            "text": entry.captions[pick],
            "references": list(entry.captions),
        }

    def costs(self) -> list[float]:
        """Mean caption length in words per item (standing in for tokens), for bucketing."""
        return [
            sum(word_count(c) for c in entry.captions) / len(entry.captions)
            for entry in self.entries
        ]

    def _add(self, entry: CaptionEntry) -> None:
        if self.rejects.skip_bad:
            verify_image(entry.path, self.max_pixels)
        self.entries.append(entry)


class ImageCaptionDataset(_CaptionDataset):
    """Images and captions listed in a JSON-lines manifest, one object per line:
    ``{"image_filepath": "img/1.jpg", "caption": "a red square"}``, or ``"captions": [...]``
    (either key takes a string or a list of strings; an optional ``"id"`` names the item, else
    the image path as written).

    Relative paths resolve against the manifest's folder; the manifest is checked when the
    dataset is built (see `read_caption_manifest`: JSON, fields, empty captions, duplicate ids,
    missing or empty files, paths leaving the manifest's folder). With ``skip_bad=True`` bad
    lines are skipped (see `skipped`) and each image's header is verified too; otherwise one
    `DataError` lists the bad lines. An image that fails to decode later raises `DataError`
    naming the manifest line.

    Args:
        transform: PIL RGB image -> [3, H, W] tensor, e.g. `mmseq.data.images.image_transforms`.
        train: pick a random caption per item (else the first).
        max_pixels: larger images are refused as decompression bombs (see `load_image`).
    """

    FIELDS = ("image_filepath", "caption (or captions)")

    def __init__(
        self,
        manifest: str | os.PathLike,
        transform: Transform,
        train: bool,
        skip_bad: bool = False,
        allow_outside_root: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__(transform, train, skip_bad, max_pixels)
        self.manifest = Path(manifest)
        self.entries = read_caption_manifest(
            self.manifest, self.rejects, allow_outside_root, max_pixels, read_headers=True
        )
        self.rejects.report(self.manifest, len(self.entries))


class CocoCaptionsDataset(_CaptionDataset):
    """Images and captions in the COCO captions format, read as
    `torchvision.datasets.CocoCaptions` reads it (without pycocotools): ``images[]`` with ``id``
    and ``file_name`` (relative to `images_dir`), ``annotations[]`` with ``image_id`` and
    ``caption``. Items are ordered by image id, as torchvision orders them.

    Errors name the annotation file and the entry (``images[3]``, ``annotations[17]``); the
    index is the first element of each `skipped` pair. An image without captions is a bad entry.
    Other arguments as `ImageCaptionDataset`; paths may not leave `images_dir`.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike,
        annotations_json: str | os.PathLike,
        transform: Transform,
        train: bool,
        skip_bad: bool = False,
        allow_outside_root: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__(transform, train, skip_bad, max_pixels)
        self.annotations_json = Path(annotations_json)
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise DataError(f"{self.images_dir}: images folder does not exist")
        images, annotations = _read_coco(self.annotations_json)
        captions = self._captions_by_image(annotations, images)
        seen: set[Any] = set()
        for index, image in enumerate(images):
            location = f"{self.annotations_json}, images[{index}]"
            with self.rejects.guard(location, index):
                image_id, file_name = _image_fields(image)
                if image_id in seen:
                    raise BadEntry(f"duplicate image id {image_id!r}")
                seen.add(image_id)
                if not captions.get(image_id):
                    raise BadEntry(f"image {image_id!r} has no captions in 'annotations'")
                path = resolve_file(file_name, self.images_dir, "file_name", allow_outside_root)
                captioned = tuple(captions[image_id])
                entry = CaptionEntry(str(image_id), path, captioned, location, index)
                self._add(entry)
        self.entries.sort(key=lambda e: _id_order(e.id))
        self.rejects.report(self.annotations_json, len(self.entries))

    def _captions_by_image(self, annotations: list, images: list) -> dict[Any, list[str]]:
        known = {image.get("id") for image in images if isinstance(image, dict)}
        captions: dict[Any, list[str]] = {}
        for index, annotation in enumerate(annotations):
            location = f"{self.annotations_json}, annotations[{index}]"
            with self.rejects.guard(location, index):
                if not isinstance(annotation, dict):
                    raise BadEntry(f"expected an object, got {type(annotation).__name__}")
                expected = ("image_id", "caption")
                image_id = field(annotation, "image_id", expected)
                caption = text_value(field(annotation, "caption", expected), "caption")
                if image_id not in known:
                    raise BadEntry(f"image_id {image_id!r} is not among 'images'")
                captions.setdefault(image_id, []).append(caption)
        return captions


MANIFEST_FIELDS = ImageCaptionDataset.FIELDS


def read_caption_manifest(
    manifest: Path,
    rejects: Rejects,
    allow_outside_root: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    read_headers: bool = False,
) -> list[CaptionEntry]:
    """The usable lines of an image-caption manifest; the others go to `rejects`. The rules of
    `ImageCaptionDataset` and of `mmseq data check`.

    Args:
        read_headers: also verify each image's header (`verify_image`).
    """
    entries: list[CaptionEntry] = []
    ids = UniqueIds(
        "give each line its own 'id', or list every caption of an image on one line "
        "under 'captions'"
    )
    for line, raw in read_lines(manifest):
        location = where(manifest, line)
        with rejects.guard(location, line):
            record = parse_json_object(decode_line(raw))
            value = field(record, "image_filepath", MANIFEST_FIELDS)
            captions = _captions(record)
            item_id = optional_id(record, value)
            path = resolve_file(value, manifest.parent, "image_filepath", allow_outside_root)
            if read_headers:
                try:
                    verify_image(path, max_pixels)
                except BadEntry as exc:
                    raise BadEntry(f"image_filepath '{value}': {exc}") from None
            ids.add(item_id, line)
            entries.append(CaptionEntry(item_id, path, captions, location, line))
    return entries


def verify_image(path: Path, max_pixels: int | None) -> None:
    """`BadEntry` unless `path`'s header is an image's (`check_image`)."""
    try:
        check_image(path, max_pixels)
    except ImageLoadError as exc:
        raise BadEntry(str(exc)) from None


def _captions(record: dict[str, Any]) -> tuple[str, ...]:
    names = [name for name in ("caption", "captions") if name in record]
    if not names:
        raise BadEntry("missing field 'caption' (or 'captions'), a string or list of strings")
    if len(names) == 2:
        raise BadEntry("has both 'caption' and 'captions'; give one")
    name = names[0]
    value = record[name]
    if isinstance(value, str):
        return (text_value(value, name),)
    if not isinstance(value, list) or not value:
        raise BadEntry(f"field '{name}' must be a string or a non-empty list of strings")
    return tuple(text_value(c, f"{name}[{i}]") for i, c in enumerate(value))


def _read_coco(path: Path) -> tuple[list, list]:
    if not path.is_file():
        raise DataError(f"{path}: annotation file does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a valid JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: expected a list under '{key}' (COCO captions format)")
    return data["images"], data["annotations"]


def _image_fields(image: Any) -> tuple[Any, str]:
    if not isinstance(image, dict):
        raise BadEntry(f"expected an object, got {type(image).__name__}")
    image_id = field(image, "id", ("id", "file_name"))
    if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
        raise BadEntry(f"field 'id' must be an integer or string, got {image_id!r}")
    return image_id, field(image, "file_name", ("id", "file_name"))


def _id_order(image_id: str) -> tuple[int, int | str]:
    """Numeric ids in numeric order (COCO's are integers), then any others."""
    return (0, int(image_id)) if image_id.lstrip("-").isdigit() else (1, image_id)
