"""The one way crosspose decodes an image and reads its size, in prepare, training and prediction alike.

Policy: pixels are the STORED pixel grid. An EXIF orientation tag is ignored everywhere (OpenCV's
``imread`` would rotate the pixels while PIL's header size stays unrotated, so keypoints and pixels
would disagree); annotation coordinates refer to that stored grid, which is what the MPII and
MacaquePose releases, COCO and DeepLabCut's labelled frames use in practice. A file whose data
ends early (truncated download or copy) is an error naming it -- JPEG and PNG decoders fill the
missing part with grey and say nothing -- unless the caller allows it, then a warning per file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np

from crosspose.core.errors import DataFormatError

__all__ = ["TruncatedImageWarning", "decode_bgr", "exif_orientation", "image_size", "is_truncated"]

_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


class TruncatedImageWarning(UserWarning):
    """An image's data ends early; its missing part was decoded as grey (``allow_truncated``)."""


def is_truncated(data: bytes | np.ndarray, suffix: str = "") -> bool:
    """Whether JPEG or PNG bytes lack their end marker (other formats: their decoder decides)."""
    head = bytes(data[:8])
    tail = bytes(data[-4096:])
    if head[:2] == b"\xff\xd8":  # JPEG: the end-of-image marker, possibly followed by padding
        return b"\xff\xd9" not in tail
    if head == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in tail
    return False


def decode_bgr(path: str | Path, source: str | Path | None = None, where: str | None = None,
               allow_truncated: bool = False) -> np.ndarray:
    """Decode ``path`` as BGR uint8 (stored orientation), or raise a DataFormatError.

    Args:
        path: the image file.
        source: the file that lists the image (the error names it; default the image itself).
        where: place inside ``source`` (``"image 001.jpg"``).
        allow_truncated: decode a truncated file with a :class:`TruncatedImageWarning` instead of failing.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataFormatError(source or path, f"image file not found: {path}", where) from None
    except OSError as exc:
        raise DataFormatError(source or path, f"cannot read image {path} ({exc.strerror or exc})", where) from None
    truncated = bool(data.size) and is_truncated(data, path.suffix)
    if truncated and not allow_truncated:
        raise DataFormatError(source or path, f"image file is truncated (its data ends early): {path}; "
                              "replace it, or allow truncated images (data.allow_truncated)", where)
    image = cv2.imdecode(data, _FLAGS) if data.size else None
    if image is None and truncated:
        image = _decode_truncated(path)
    if image is None:
        what = "truncated and cannot be decoded" if truncated else "cannot be decoded"
        raise DataFormatError(source or path, f"image file {what}: {path}", where)
    if truncated:
        warnings.warn(f"{path}: truncated image, its missing part decoded as grey", TruncatedImageWarning,
                      stacklevel=2)
    return image


def _decode_truncated(path: Path) -> np.ndarray | None:
    """PIL decodes what a truncated file holds (OpenCV gives up); the rest is grey. Stored grid."""
    from PIL import Image, ImageFile

    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with Image.open(path) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])
    except OSError:
        return None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the stored pixel grid, from the header (EXIF orientation ignored)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise DataFormatError(path, f"cannot read the image ({exc})") from None


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag (1 = as stored; 0 when absent or unreadable)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return int(im.getexif().get(0x0112, 0))
    except (UnidentifiedImageError, OSError, ValueError):
        return 0
