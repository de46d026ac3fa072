"""Reading and writing images: one ``read_image(path)`` for every format."""

from medsight.io.image import make_image, spacing_of

__all__ = ["make_image", "read_image", "spacing_of"]


def __getattr__(name: str):
    # Readers pull in pydicom, nibabel and Pillow: load them only when asked for.
    if name == "read_image":
        from medsight.io.read import read_image

        return read_image
    raise AttributeError(name)
