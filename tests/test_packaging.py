"""``pip install .`` ships what mizu needs at run time: prompts, built-in IVR scripts, plugin."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIND_PROMPTS = """
import os, sys
from mizu.ivr.prompts import Prompts
from mizu.ivr.script import load_scripts
prompts = Prompts([os.path.join("etc", "sounds")])
path = prompts.path("enter-destination")
assert path.startswith(sys.prefix), path
with open(path, "rb") as f:
    assert f.read(4) == b"RIFF"
print(path)
print(" ".join(sorted(load_scripts(None, prompts))))
"""


def test_a_fresh_install_finds_prompts_and_scripts_from_any_folder(tmp_path):
    """Installed into a new venv and run from an empty folder, mizu finds its WAVs."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-cache-dir", ROOT], check=True, cwd=tmp_path)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    # -I: ignore the environment and the current folder, so only the installed copy counts
    out = subprocess.run([python, "-I", "-c", FIND_PROMPTS], cwd=empty, check=True,
                         capture_output=True, text=True).stdout.split("\n")
    assert os.path.join("site-packages", "mizu", "sounds", "en", "enter-destination.wav") \
        in out[0]
    assert "callback" in out[1].split() and "callingcard" in out[1].split()
    plugins = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / \
        "site-packages" / "twisted" / "plugins" / "mizu_plugin.py"
    assert plugins.exists()
