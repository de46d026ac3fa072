"""Start-up safety checks and the JSON pieces a viewer draws."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from medsight.errors import ConfigError, InputFileError
from medsight.service.models import ModelRegistry, load_registry
from medsight.service.payload import display_image, lesion_rows, mask_layer
from medsight.service.settings import ServiceSettings, check_binding, is_loopback, resolve_api_key

from .conftest import fake_lesion_model


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_addresses(host):
    assert is_loopback(host)
    check_binding(host, open_access=True)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.5", "scanner.hospital.org"])
def test_open_is_refused_off_loopback(host):
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="only allowed on a loopback"):
        check_binding(host, open_access=True)
    check_binding(host, open_access=False)  # with a key, any address


def test_a_key_or_open_is_required():
    with pytest.raises(ConfigError, match="needs an API key"):
        ServiceSettings()
    assert ServiceSettings(open_access=True).api_key is None


def test_api_key_from_file(tmp_path):
    (tmp_path / "key").write_text("s3cret-key-value\n")
    assert resolve_api_key(None, tmp_path / "key") == "s3cret-key-value"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(InputFileError, match="empty"):
        resolve_api_key(None, tmp_path / "empty")
    with pytest.raises(InputFileError, match="cannot read"):
        resolve_api_key(None, tmp_path / "missing")
    with pytest.raises(ConfigError, match="either"):
        resolve_api_key("s3cret-key-value", tmp_path / "key")
    with pytest.raises(ConfigError, match="at least 8"):
        resolve_api_key("short", None)


def test_registry_names_and_errors(trained_run, tmp_path):
    registry = load_registry([trained_run, f"second={trained_run}"])
    assert list(registry.models) == [trained_run.name, "second"]
    with pytest.raises(ConfigError, match="choose a model"):
        registry.get(None)
    with pytest.raises(ConfigError, match="two models named"):
        registry.add(fake_lesion_model("second"))
    with pytest.raises(InputFileError, match="not a medsight run folder"):
        load_registry([tmp_path])
    one = ModelRegistry()
    one.add(fake_lesion_model())
    assert one.get(None).name == "lesions"


def test_display_image_keeps_values_and_shrinks():
    hu = np.arange(-1000, 1000, dtype=np.float32)[None, None, :].repeat(4, 1)  # (1, 4, 2000)
    payload = display_image(hu, "CT")
    assert (payload["width"], payload["height"], payload["dtype"]) == (512, 1, "float32")  # area-averaged
    assert payload["min"] == pytest.approx(-998.0, abs=2) and "presets" in payload
    small = display_image(np.array([[[0.5, 1.5]]], np.float32), "MR")
    assert small["dtype"] == "float32" and "presets" not in small
    assert np.frombuffer(base64.b64decode(small["data"]), "<f4").tolist() == [0.5, 1.5]
    rgb = display_image(np.stack([np.full((2, 3), v, np.float32) for v in (10, 20, 30)]), None)
    assert rgb["channels"] == 3 and rgb["dtype"] == "uint8"
    assert np.frombuffer(base64.b64decode(rgb["data"]), np.uint8)[:3].tolist() == [10, 20, 30]


def test_mask_layer_colours_only_the_lesions():
    labels = np.zeros((20, 30), np.uint8)
    labels[5:8, 10:15] = 1
    layer = mask_layer(labels)
    rgba = np.asarray(Image.open(io.BytesIO(base64.b64decode(layer["png"]))))
    assert rgba.shape == (20, 30, 4) and layer["labels"] == {"1": "lesion"}
    assert (rgba[..., 3] > 0).sum() == 15 and rgba[6, 12, 3] > 0 and rgba[0, 0, 3] == 0


def test_lesion_rows():
    rows = lesion_rows([{"centroid_mm": (1.234, 5.678, 9.0), "volume_mm3": 33.33333, "diameter_mm": 4.0,
                         "probability": 0.87654321}, {"id": 7, "centroid_mm": [0, 0], "area_mm2": 2}])
    assert rows[0] == {"id": 1, "centroid_mm": [1.23, 5.68, 9.0], "volume_mm3": 33.3333, "diameter_mm": 4.0,
                       "probability": 0.8765}
    assert rows[1] == {"id": 7, "centroid_mm": [0.0, 0.0], "area_mm2": 2.0}
