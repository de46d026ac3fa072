"""The Pascal VOC reader: boxes, classes and splits, and one-line errors naming the file."""

import numpy as np
import pytest
import torch
from PIL import Image

from medsight.data.voc import load_detection_image, read_voc_annotation, voc_dataset
from medsight.errors import InputFileError
from tests.conftest import SHARED_DATA
from tests.data.voc_builders import voc_xml, write_voc

BCCD = SHARED_DATA / "bccd"


def _tiny(tmp_path, xml_text, image_size=(40, 30)):
    for sub in ("Annotations", "JPEGImages"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((image_size[1], image_size[0], 3), 120, np.uint8)).save(tmp_path / "JPEGImages/a.jpg")
    (tmp_path / "Annotations/a.xml").write_text(xml_text)
    return tmp_path


def test_reads_boxes_names_difficult_and_size(tmp_path):
    text = voc_xml("a.jpg", 40, 30, [("WBC", (1, 2, 21, 12.5), 0), ("RBC", (5, 5, 9, 9), 1),
                                     ("RBC", (7, 7, 7, 15), 0)])  # the last is degenerate
    ann = read_voc_annotation(_tiny(tmp_path, text) / "Annotations/a.xml")
    np.testing.assert_allclose(ann.boxes, [[1, 2, 21, 12.5], [5, 5, 9, 9]])
    assert ann.boxes.dtype == np.float32 and ann.names == ["WBC", "RBC"]
    assert ann.difficult.tolist() == [False, True] and ann.size == (40, 30) and ann.dropped == 1


def test_data_set_without_lists_is_split_and_labels_follow_sorted_names(tmp_path):
    root = write_voc(tmp_path / "voc", {"all": 12})
    data = voc_dataset(root, seed=1)
    assert data.class_names == ["disc", "square"] and data.split_source.startswith("random split")
    items = data.split("train") + data.split("val") + data.split("test")
    assert sorted(i.id for i in items) == [f"img_{k:04d}" for k in range(12)]
    assert all(len(data.split(s)) for s in ("train", "val", "test"))
    given = voc_dataset(root, class_names=["square", "disc"], seed=1)
    first = given.split("train")[0]
    names = [given.class_names[k] for k in first.labels]
    assert names == read_voc_annotation(first.annotation).names


def test_official_lists_are_used_and_image_is_read_as_uint8_rgb(tmp_path):
    root = write_voc(tmp_path / "voc", {"train": 3, "val": 2, "test": 1}, size=48)
    data = voc_dataset(root)
    assert [len(data.split(s)) for s in ("train", "val", "test")] == [3, 2, 1]
    assert data.split_source == "ImageSets/Main"
    image = load_detection_image(data.split("val")[0])
    assert image.dtype == torch.uint8 and image.shape == (3, 48, 48)


@pytest.mark.parametrize("text, problem", [
    ("<annotation><object><name>RBC</name>", "not valid XML"),
    ("<notvoc/>", "not a Pascal VOC annotation"),
    ("<annotation><object><bndbox/></object></annotation>", "object 1 has no <name>"),
    ("<annotation><object><name>RBC</name></object></annotation>", "object 1 (RBC) has no <bndbox>"),
    ("<annotation><object><name>RBC</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax></bndbox></object>"
     "</annotation>", "<bndbox> has no <ymax>"),
    ("<annotation><object><name>RBC</name><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>4</xmax><ymax>4</ymax>"
     "</bndbox></object></annotation>", "<xmin> is 'a', not a number"),
])
def test_broken_annotation_is_one_line_naming_the_file(tmp_path, text, problem):
    path = _tiny(tmp_path, text) / "Annotations/a.xml"
    with pytest.raises(InputFileError) as err:
        read_voc_annotation(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path)) and problem in message


def test_size_mismatch_names_both_files_and_unknown_class_is_an_error(tmp_path):
    root = _tiny(tmp_path, voc_xml("a.jpg", 64, 64, [("RBC", (1, 1, 5, 5), 0)]), image_size=(40, 30))
    (root / "ImageSets/Main").mkdir(parents=True)
    for split in ("train", "val", "test"):
        (root / f"ImageSets/Main/{split}.txt").write_text("a\n")
    item = voc_dataset(root).split("train")[0]
    with pytest.raises(InputFileError, match=r"a\.xml: <size> 64x64 does not match the image .*a\.jpg \(40x30\)"):
        load_detection_image(item)
    with pytest.raises(InputFileError, match=r"a\.xml: class 'RBC' is not one of detection.classes"):
        voc_dataset(root, class_names=["WBC"])


def test_missing_folders_and_listed_ids_without_annotation(tmp_path):
    with pytest.raises(InputFileError, match="not a Pascal VOC folder"):
        voc_dataset(tmp_path)
    root = write_voc(tmp_path / "voc", {"train": 2, "val": 1, "test": 1})
    (root / "ImageSets/Main/test.txt").write_text("ghost\n")
    with pytest.raises(InputFileError, match=r"test\.txt: lists 'ghost', which has no Annotations/ghost\.xml"):
        voc_dataset(root)


@pytest.mark.skipif(not (BCCD / "Annotations").is_dir(), reason="BCCD not in ../shared/data")
def test_real_bccd_reader():
    data = voc_dataset(BCCD, class_names=["RBC", "WBC", "Platelets"])
    assert [len(data.split(s)) for s in ("train", "val", "test")] == [205, 87, 72]
    assert data.dropped_boxes == 2  # PROVENANCE.md: two degenerate boxes
    items = [i for s in ("train", "val", "test") for i in data.split(s)]
    counts = np.bincount(np.concatenate([i.labels for i in items]), minlength=3)
    assert counts.sum() == 4888 - 2 and counts[1] == 372  # every WBC box is sound
    boxes = np.concatenate([i.boxes for i in items])
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 640).all() and (boxes[:, 3] <= 480).all()
    assert load_detection_image(items[0]).shape == (3, 480, 640)
