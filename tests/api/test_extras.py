"""Optional extras: a missing one is one line naming it, and the base path never needs them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from medsight.cli import app
from medsight.utils.extras import MissingExtraError, require

BASE_MODULES = ("medsight", "medsight.cli", "medsight.api", "medsight.inference.load", "medsight.inference.batch",
                "medsight.inference.segment", "medsight.evaluation.evaluate", "medsight.training.run")


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if not installed
    with pytest.raises(MissingExtraError) as err:
        require("fastapi", "uvicorn", extra="service", feature="medsight serve")
    message = str(err.value)
    assert message.startswith("medsight serve needs the service extra: pip install 'medsight[service]'")
    assert "\n" not in message and err.value.module == "fastapi"
    require("json", extra="service")  # present: no error


def test_serve_without_the_service_extra_is_one_line_and_exit_2(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    result = CliRunner().invoke(app, ["serve", str(tmp_path), "--open"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines == ["medsight: error: medsight serve needs the service extra: pip install 'medsight[service]' "
                     "(fastapi is not installed)"]


def test_pacs_and_export_name_their_extras(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dicomweb_client", None)
    for name in [m for m in sys.modules if m.startswith("medsight.pacs")]:
        monkeypatch.delitem(sys.modules, name)
    result = CliRunner().invoke(app, ["pacs", "query", "--url", "http://localhost:1/dicom-web"])
    assert result.exit_code == 2 and "needs the pacs extra: pip install 'medsight[pacs]'" in result.stderr
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = CliRunner().invoke(app, ["export", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("medsight: error: medsight export needs the onnx extra: "
                                     "pip install 'medsight[onnx]' (onnxruntime is not installed)")


def test_base_modules_import_no_optional_library():
    code = ("import sys\n"
            f"for m in {BASE_MODULES!r}: __import__(m)\n"
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'onnxruntime', 'onnx', 'dicomweb_client', 'httpx')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_predict_without_onnxruntime_uses_pytorch_even_with_an_export(api_run, slice_files, tmp_path, monkeypatch,
                                                                        caplog):
    import json
    import shutil

    import medsight
    from medsight.inference.engine import EXPORT_FILE, ONNX_FILE, exported_model, file_sha256
    from medsight.inference.load import load_run
    from medsight.runtime.engine import TorchEngine

    run_dir = shutil.copytree(api_run.path, tmp_path / "run")
    (run_dir / ONNX_FILE).write_bytes(b"not used")  # a current export, as far as export.json says
    (run_dir / EXPORT_FILE).write_text(json.dumps({"checkpoint_sha256": file_sha256(run_dir / "checkpoints/best.pt")}))
    assert exported_model(run_dir, run_dir / "checkpoints/best.pt") == run_dir / ONNX_FILE
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert isinstance(load_run(run_dir).engine, TorchEngine)
    assert "onnxruntime is not installed (pip install 'medsight[onnx]'); using PyTorch" in caplog.text
    res = medsight.load(run_dir).predict(slice_files["png"], heatmap=False)
    assert res.probabilities == pytest.approx(api_run.predict(slice_files["png"], heatmap=False).probabilities)
