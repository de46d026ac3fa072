"""Library chatter (pydicom's logger, Python warnings) stays off the terminal unless --verbose.

Real processes, not CliRunner: pytest captures warnings and log records itself, which would
hide exactly the leak these tests look for.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.io.dicom_builders import CT_SMALL


def flipped_transfer_syntax(folder: Path) -> Path:
    """CT_small with one byte of its transfer syntax UID flipped (the issue's spot check)."""
    data = bytearray(Path(CT_SMALL).read_bytes())
    data[data.find(b"1.2.840.10008.1.2.1\x00") + 3] = ord("o")
    path = folder / "flipped.dcm"
    path.write_bytes(bytes(data))
    return path


def medsight(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medsight.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_flipped_transfer_syntax_is_one_line_without_library_warnings(cli_run, tmp_path):
    bad = flipped_transfer_syntax(tmp_path)
    quiet = medsight("predict", cli_run, bad, "--out", tmp_path / "p")
    assert quiet.returncode == 2, quiet.stderr
    lines = [line for line in quiet.stderr.splitlines() if line.strip()]
    assert lines == [f"medsight: error: {bad}: unknown transfer syntax UID '1.2o840.10008.1.2.1': "
                     "the pixel data cannot be decoded"]

    verbose = medsight("--verbose", "predict", cli_run, bad, "--out", tmp_path / "p")
    assert verbose.returncode == 2
    # The same run with --verbose shows what was held back: pydicom's log and its UserWarning.
    assert "WARNING pydicom: Invalid value for VR UI" in verbose.stderr
    assert "WARNING py.warnings:" in verbose.stderr and "UserWarning" in verbose.stderr
    assert verbose.stderr.rstrip().splitlines()[-1] == lines[0]
