"""node.yaml: typed, strict, one clear line for mistakes; routes match case-insensitively."""

from __future__ import annotations

import pydicom
import pytest
import yaml
from typer.testing import CliRunner

from medsight.cli import app
from medsight.errors import ConfigError
from medsight.node.config import load_node_config

from .conftest import write_node_config


def _error_line(args) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_paths_resolve_beside_the_file_and_routes_match_ignoring_case(tmp_path, fake_run, destination):
    cfg = load_node_config(write_node_config(tmp_path, fake_run, destination))
    assert cfg.storage_dir == tmp_path / "received" and cfg.db == f"sqlite:///{tmp_path / 'node.db'}"
    assert cfg.routes[0].run == fake_run and cfg.keep_received is False and cfg.tls is None
    ct, mr = pydicom.Dataset(), pydicom.Dataset()
    ct.Modality, mr.Modality = "CT", "MR"
    assert cfg.route_for(ct) == cfg.routes and cfg.route_for(mr) == []
    assert cfg.route_for(pydicom.Dataset()) == []  # no Modality at all: no match


def test_an_unknown_key_is_one_line_naming_it(tmp_path, fake_run, destination):
    path = write_node_config(tmp_path, fake_run, destination, quiet_secs=3)
    line = _error_line(["listen", "--config", str(path)])
    assert "quiet_secs: unknown key" in line and "quiet_seconds" in line


@pytest.mark.parametrize("route, needle", [
    ({"match": {"Modalty": "CT"}, "run": "runs/chest"}, "routes.0.match: 'Modalty' is not a DICOM keyword"),
    ({"match": {"Modality": "CT"}, "run": "nowhere"}, "routes.0.run:"),
    ({"match": {"Modality": "CT"}}, "routes.0.run: Field required"),
    ({"match": {}, "run": "runs/chest"}, "routes.0.match:"),
])
def test_a_bad_route_is_one_line(tmp_path, fake_run, destination, route, needle):
    path = write_node_config(tmp_path, fake_run, destination)
    raw = yaml.safe_load(path.read_text())
    raw["routes"] = [route]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="routes.0"):
        load_node_config(path)
    assert needle in _error_line(["work", "--config", str(path)])


def test_an_unreachable_destination_is_one_line(tmp_path, fake_run, destination):
    destination.stop()  # nothing listens there any more
    path = write_node_config(tmp_path, fake_run, destination)
    line = _error_line(["listen", "--config", str(path)])
    assert line == (f"medsight: error: destination DEST@127.0.0.1:{destination.port} cannot be reached")


@pytest.mark.parametrize("dest, needle", [
    ({"stow_url": "http://127.0.0.1:1/dicom-web", "ae_title": "PACS"}, "not both"),
    ({"ae_title": "PACS", "host": "127.0.0.1"}, "missing port"),
    ({"stow_url": "ftp://pacs/dicom-web"}, "must start with http:// or https://"),
    ({"ae_title": "PACS", "host": "h", "port": 104, "user": "u"}, "go with stow_url"),
    ({"stow_url": "http://pacs/dicom-web", "token": "x"}, "destination.token: unknown key"),
])
def test_a_bad_destination_is_one_line(tmp_path, fake_run, dest, needle):
    path = write_node_config(tmp_path, fake_run, dest)
    with pytest.raises(ConfigError, match="destination"):
        load_node_config(path)
    assert needle in _error_line(["work", "--config", str(path)])


def test_a_stow_destination_resolves_its_password_file_beside_the_config(tmp_path, fake_run):
    dest = {"stow_url": "http://127.0.0.1:8042/dicom-web", "user": "medsight", "password_file": "pacs.pw"}
    cfg = load_node_config(write_node_config(tmp_path, fake_run, dest))
    assert cfg.destination.is_stow and cfg.destination.password_file == tmp_path / "pacs.pw"
    assert str(cfg.destination) == "http://127.0.0.1:8042/dicom-web"


def test_an_unreachable_stow_destination_is_one_line(tmp_path, fake_run):
    from tests.service.servers import free_port

    path = write_node_config(tmp_path, fake_run, {"stow_url": f"http://127.0.0.1:{free_port()}/dicom-web"})
    line = _error_line(["listen", "--config", str(path)])
    assert "cannot reach the PACS" in line and "127.0.0.1" in line
