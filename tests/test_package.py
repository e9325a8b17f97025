"""The package installs its five commands."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = ["cardsvc", "hwsim", "keymgmt", "enrol", "pos"]


@pytest.mark.parametrize("command", COMMANDS)
def test_console_script_answers_help(command: str) -> None:
    exe = shutil.which(command, path=str(Path(sys.executable).parent))
    assert exe, f"{command} is not installed beside {sys.executable}"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True)
    assert "Usage:" in out.stdout
