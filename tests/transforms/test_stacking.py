"""Several images of one case stacked as channels on the first image's grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.errors import InputFileError
from medsight.io.image import make_image
from medsight.transforms.stacking import stack_on_grid


def volume(value_fn, shape=(8, 10, 12), spacing=(2.0, 2.0, 2.0), origin=(0.0, 0.0, 0.0), **meta):
    grid = np.stack(np.meshgrid(*[np.arange(n) * s + o for n, s, o in zip(shape, spacing, origin)],
                                indexing="ij"))
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return make_image(value_fn(*grid)[None].astype(np.float32), spacing=spacing, affine=affine, **meta)


def test_same_grid_images_are_stacked_in_the_given_order():
    t1 = volume(lambda z, y, x: np.full_like(z, 1.0), source="t1.nii")
    t2 = volume(lambda z, y, x: np.full_like(z, 2.0))
    flair = volume(lambda z, y, x: np.full_like(z, 3.0))
    out = stack_on_grid([t1, t2, flair], ["t1.nii", "t2.nii", "flair.nii"])
    assert out.shape == (3, 8, 10, 12)
    assert [float(out[c].mean()) for c in range(3)] == [1.0, 2.0, 3.0]
    assert torch.equal(out.affine, t1.affine) and out.meta["source"] == "t1.nii"


def test_a_volume_on_another_grid_is_resampled_to_the_first_ones():
    ramp = lambda z, y, x: x  # noqa: E731 - world x in mm: the same function on any grid
    t1 = volume(ramp, shape=(8, 10, 12), spacing=(2.0, 2.0, 2.0))
    t2 = volume(ramp, shape=(4, 5, 6), spacing=(4.0, 4.0, 4.0), origin=(1.0, 1.0, 1.0))
    out = stack_on_grid([t1, t2], ["t1.nii", "t2.nii"])
    assert out.shape == (2, 8, 10, 12)
    inner = (slice(2, -2),) * 3  # away from the edge, where the coarse grid ends
    np.testing.assert_allclose(out[1][inner].numpy(), out[0][inner].numpy(), atol=1e-3)


def test_a_volume_elsewhere_in_space_is_refused_naming_it():
    t1 = volume(lambda z, y, x: z)
    far = volume(lambda z, y, x: z, origin=(500.0, 0.0, 0.0))
    with pytest.raises(InputFileError, match="overlap by 0%") as err:
        stack_on_grid([t1, far], ["t1.nii", "other_patient_t2.nii"])
    assert err.value.path == "other_patient_t2.nii" and "t1.nii" in err.value.problem


def test_2d_images_of_another_size_and_2d_with_3d_are_refused():
    a = make_image(np.zeros((1, 32, 32)))
    with pytest.raises(InputFileError, match="size 32x24 differs from 32x32") as err:
        stack_on_grid([a, make_image(np.zeros((1, 32, 24)))], ["a.png", "b.png"])
    assert err.value.path == "b.png"
    with pytest.raises(InputFileError, match="it is 3D and a.png is 2D"):
        stack_on_grid([a, make_image(np.zeros((1, 4, 32, 32)))], ["a.png", "b.nii"])


def test_2d_images_of_one_size_stack_even_with_unrelated_geometry():
    a = make_image(np.zeros((1, 16, 16)), spacing=(0.5, 0.5))
    b = make_image(np.ones((3, 16, 16)))  # an RGB photograph of the same size
    out = stack_on_grid([a, b], ["a.dcm", "b.png"])
    assert out.shape == (4, 16, 16) and float(out[1:].min()) == 1.0


def test_dicom_images_from_another_study_are_refused():
    a = volume(lambda z, y, x: z, StudyInstanceUID="1.2.3")
    b = volume(lambda z, y, x: z, StudyInstanceUID="1.2.4")
    with pytest.raises(InputFileError, match="another study"):
        stack_on_grid([a, b], ["t1", "t2"])
    same = volume(lambda z, y, x: z, StudyInstanceUID="1.2.3")
    assert stack_on_grid([a, same], ["t1", "t2"]).shape[0] == 2
