"""model.pretrained: weights saved in each layout load back where they fit, the rest stays fresh,
the input convolution is adapted to the channels, and a file that fits nothing is one line."""

from __future__ import annotations

import pytest
import torch

from medsight.errors import InputFileError
from medsight.models import build_model
from medsight.models.pretrained import FOLDER_FILES, adapt_input_conv, load_pretrained
from medsight.runtime import run_folder


def _resnet(channels=1, classes=3, width=8, seed=0, name="resnet18-small"):
    torch.manual_seed(seed)
    return build_model(name, channels, classes, 2, width=width)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.float(), b.float())


def _all_equal(model, state) -> bool:
    return all(_same(v, state[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("layout", ["plain", "wrapped", "ddp", "safetensors"])
def test_each_file_layout_loads_every_tensor(layout, tmp_path):
    source = _resnet(seed=1).state_dict()
    path = tmp_path / ("w.safetensors" if layout == "safetensors" else "w.pt")
    if layout == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    else:
        obj = {"plain": source, "wrapped": {"state_dict": source, "epoch": 3},
               "ddp": {"model": {f"module.{k}": v for k, v in source.items()}}}[layout]
        torch.save(obj, path)
    model = _resnet(seed=2)
    assert not _all_equal(model, source)
    report = load_pretrained(model, path)
    assert _all_equal(model, source)
    assert report.fraction == 1.0 and report.skipped == [] and not report.head_fresh
    plan = report.as_plan()
    assert plan["n_loaded"] == len(source) and len(plan["sha256"]) == 64 and plan["file"] == str(path)


def test_another_class_count_leaves_the_head_fresh(tmp_path):
    torch.save(_resnet(classes=5, seed=1).state_dict(), tmp_path / "w.pt")
    model = _resnet(classes=2, seed=2)
    fc_before = model.fc.weight.detach().clone()
    source = torch.load(tmp_path / "w.pt")
    report = load_pretrained(model, tmp_path / "w.pt")
    assert torch.equal(model.fc.weight, fc_before)  # fresh, as initialised
    assert _same(model.layer1[0].conv1.weight, source["layer1.0.conv1.weight"])
    assert report.head_fresh and set(report.fresh) == {"fc.weight", "fc.bias"}
    assert "head fresh" in report.summary()


def test_torchvision_resnet_keys_load_and_the_rgb_stem_is_summed_for_grey_input(tmp_path):
    # torchvision's ResNet-18 names (MONAI's, without the shortcut conv bias), RGB, 1000 classes
    rgb = _resnet(channels=3, classes=1000, seed=1, name="resnet18")
    state = {k: v for k, v in rgb.state_dict().items() if not k.endswith("downsample.0.bias")}
    torch.save(state, tmp_path / "resnet18-torchvision.pth")
    grey = _resnet(channels=1, classes=2, seed=2, name="resnet18")
    report = load_pretrained(grey, tmp_path / "resnet18-torchvision.pth")
    assert torch.allclose(grey.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    assert _same(grey.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert report.adapted == ["conv1.weight: 3 -> 1 channels"] and report.head_fresh
    assert "fc.weight" in report.fresh and report.skipped == ["fc.weight", "fc.bias"]


def test_grey_filters_are_repeated_and_scaled_for_rgb_input():
    w = torch.randn(4, 1, 3, 3)
    rgb = adapt_input_conv(w, 3)
    assert rgb.shape == (4, 3, 3, 3) and torch.allclose(rgb, w.repeat(1, 3, 1, 1) / 3)
    x = torch.rand(1, 1, 8, 8)  # a grey image as RGB gives the same response
    assert torch.allclose(torch.conv2d(x.repeat(1, 3, 1, 1), rgb), torch.conv2d(x, w), atol=1e-5)


def test_a_monai_bundle_folder_loads_its_model_pt(tmp_path):
    source = _resnet(seed=1).state_dict()
    (tmp_path / "bundle" / "models").mkdir(parents=True)
    (tmp_path / "bundle" / "configs").mkdir()
    (tmp_path / "bundle" / "configs" / "metadata.json").write_text("{}")
    torch.save(source, tmp_path / "bundle" / "models" / "model.pt")
    model = _resnet(seed=2)
    report = load_pretrained(model, tmp_path / "bundle")
    assert _all_equal(model, source) and report.file.endswith("models/model.pt")


def test_a_classifier_encoder_fills_flexunet_under_its_encoder_prefix(tmp_path):
    torch.manual_seed(1)
    classifier = build_model("efficientnet-b0", 1, 4, 2)
    torch.save({"model": classifier.state_dict()}, tmp_path / "effnet.pt")
    seg = build_model("flexunet", 1, 2, 2, decoder_channels=(16, 16, 8, 8, 8))
    report = load_pretrained(seg, tmp_path / "effnet.pt")
    assert torch.equal(seg.encoder._conv_stem.weight, classifier._conv_stem.weight)
    assert report.mapping == "(none) -> encoder."
    assert any(k.startswith("decoder.") for k in report.fresh)


def test_a_file_that_fits_nothing_is_one_line_with_the_first_mismatch(tmp_path):
    torch.save(_resnet(width=8).state_dict(), tmp_path / "narrow.pt")
    with pytest.raises(InputFileError) as info:
        load_pretrained(_resnet(width=16), tmp_path / "narrow.pt")
    message = str(info.value)
    assert message.startswith(str(tmp_path / "narrow.pt")) and "\n" not in message
    assert "first mismatch conv1.weight: expected [16, 1, 3, 3], found [8, 1, 3, 3]" in message


def test_unreadable_and_unrelated_files_are_one_line(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputFileError, match="not a readable state dict"):
        load_pretrained(_resnet(), tmp_path / "junk.pt")
    torch.save({"a.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(InputFileError, match="no tensor names in common"):
        load_pretrained(_resnet(), tmp_path / "other.pt")
    with pytest.raises(InputFileError, match="no such file"):
        load_pretrained(_resnet(), tmp_path / "missing.pt")
    with pytest.raises(InputFileError, match="no weights in this folder"):
        load_pretrained(_resnet(), tmp_path)


def test_the_folder_layouts_name_the_run_folders_checkpoints():
    names = [f"{run_folder.CHECKPOINTS_DIR}/{run_folder.BEST}", f"{run_folder.CHECKPOINTS_DIR}/{run_folder.LAST}"]
    assert [f for f in FOLDER_FILES if f.startswith(run_folder.CHECKPOINTS_DIR)] == names
