"""Raster images (PNG, JPEG, TIFF, BMP) read with Pillow.

Greyscale modes (1, L, LA, I;16, I, F) give one channel, everything else (RGB, RGBA, P, CMYK,
YCbCr...) is converted to RGB, three channels, alpha dropped. Values keep their stored range
(0..255 for 8-bit, 0..65535 for 16-bit): intensity normalisation is a transform's job. Array
axes are ``(row, col)`` with unit spacing, since pixel size in these formats (DPI) says nothing
about the patient. A multi-page TIFF becomes a 3D ``(page, row, col)`` stack.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from monai.data import MetaTensor
from PIL import Image, ImageOps, ImageSequence

from medsight.errors import InputFileError
from medsight.io.limits import check_image_size
from medsight.io.validate import checked_image, one_line

GREY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


def read_raster(path: str | Path) -> MetaTensor:
    """Read a PNG/JPEG/TIFF/BMP file as ``(1|3, row, col)``; multi-page: ``(C, page, row, col)``."""
    try:
        with warnings.catch_warnings():
            # A decompression-bomb warning is still a readable image; only the error matters.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                pages, n_values = [], 0
                for page in ImageSequence.Iterator(image):
                    # Only the header is read yet: refuse a size it cannot hold before decoding.
                    width, height = page.size
                    n_values += check_image_size(path, (height, width, len(page.getbands())))
                    check_image_size(path, (n_values,))
                    pages.append(_page_array(page))
                image_format = image.format or "unknown"
    except Image.DecompressionBombError as exc:
        raise InputFileError(path, f"image too large: {one_line(exc)}") from exc
    except Image.UnidentifiedImageError as exc:
        raise InputFileError(path, f"unreadable raster image: {one_line(exc)}") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt streams
        raise InputFileError(path, f"corrupt image data: {one_line(exc)}") from exc

    if len(pages) == 1:
        array = pages[0]
    elif len({page.shape for page in pages}) == 1:
        array = np.stack(pages, axis=1)  # (C, page, row, col)
    else:
        raise InputFileError(path, f"{len(pages)}-page image whose pages differ in size")
    return checked_image(array, path, format="raster", modality="OT", file_format=image_format)


def _page_array(page: Image.Image) -> np.ndarray:
    """One page as a channel-first array in its stored value range."""
    page.load()  # decode now, so truncation surfaces inside the caller's error handling
    # Photos carry their rotation in EXIF; honour it so the anatomy is upright.
    page = ImageOps.exif_transpose(page)
    if page.mode in GREY_MODES:
        if page.mode == "1":
            page = page.convert("L")  # 0/255 rather than booleans, like any 8-bit mask
        elif page.mode == "LA":
            page = page.getchannel("L")
        return np.asarray(page)[None]
    return np.moveaxis(np.asarray(page.convert("RGB")), -1, 0)
