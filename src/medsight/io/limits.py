"""How large an image medsight reads: checked against the file's header, before any memory
is allocated for the pixels.

A corrupt or hostile header can claim 10¹² voxels in a 1 KB file; decoding it would end with
the kernel's OOM killer, not with an error naming the file. Every reader therefore computes the
number of values its header promises (rows × columns × frames × channels, NIfTI dims, PNG
width × height × bands, the shape in an ``.npy`` header) and calls :func:`check_image_size`
first. The limit is one module attribute, read at call time, so a program that really needs
larger images raises it::

    import medsight.io.limits
    medsight.io.limits.MAX_VOXELS = 2**31
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from medsight.errors import InputFileError

# Values per image, channels included: 2**29 is 2 GiB as float32, e.g. a 512×512×2048 CT volume.
MAX_VOXELS = 2**29


def check_image_size(path: str | Path, shape: Sequence[int], what: str = "image") -> int:
    """Raise unless ``shape`` (from a header) is non-negative and within :data:`MAX_VOXELS`.

    Returns the number of values. ``what`` names the thing in the message ("image", "series").
    """
    dims = tuple(int(s) for s in shape)
    if any(d < 0 for d in dims):
        raise InputFileError(path, f"invalid {what} dimensions {dims} in the header")
    n = math.prod(dims)
    if n > MAX_VOXELS:
        raise InputFileError(
            path,
            f"{what} too large: the header claims {' x '.join(map(str, dims))} = {n:,} values, "
            f"over the limit of {MAX_VOXELS:,} (medsight.io.limits.MAX_VOXELS)",
        )
    return n
