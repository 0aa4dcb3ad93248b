"""``--threads`` on predict, evaluate and bench, and ``threads=`` in the Python API: the number
reaches torch, and idle threads sleep (``OMP_WAIT_POLICY=PASSIVE``) because the policy is in
the environment when torch loads OpenMP, which reads it once.

Each case runs in a fresh interpreter (torch not imported yet, as in a real command) with an
import hook that records ``OMP_WAIT_POLICY`` at the moment ``torch`` is first imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_evaluate import random_dataset, tiny_unet_checkpoint  # isort: skip

ROOT = Path(__file__).resolve().parents[1]

SPY = """
import json, os, sys
seen = {}
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and "policy" not in seen:
            seen["policy"] = os.environ.get("OMP_WAIT_POLICY")
        return None
sys.meta_path.insert(0, Spy())
"""

REPORT = """
import torch
print(json.dumps({"policy_at_torch_import": seen.get("policy"), "result": result,
                  "torch_threads": torch.get_num_threads()}))
"""


def _child(body: str, **env: str) -> dict:
    """Run ``body`` (which sets ``result``) after the spy, in a fresh interpreter."""
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environment.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **env)
    done = subprocess.run(
        [sys.executable, "-c", SPY + body + REPORT], env=environment, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("threads")
    run = tmp / "run"
    tiny_unet_checkpoint(run / "checkpoints" / "best.pt")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp / "a.png")
    root = random_dataset(tmp / "data", n=1, size=(16, 16))
    return {"run": str(run), "image": str(tmp / "a.png"), "data": str(root), "tmp": str(tmp)}


@pytest.mark.parametrize(
    "command", ["predict", "evaluate", "bench", "bench-name", "train", "serve"]
)
def test_threads_option_reaches_torch_and_the_wait_policy_precedes_torch(files, command):
    """3 threads: more than this 2-core machine's cores, which torch caps ``OMP_NUM_THREADS``
    at, so only a ``torch.set_num_threads`` after torch loaded gives 3."""
    argv = {
        "predict": ["predict", files["run"], files["image"], "--out", files["tmp"] + "/p"],
        "evaluate": ["evaluate", files["run"], "--data", files["data"], "--out",
                     files["tmp"] + "/e"],
        "bench": ["bench", files["run"], "--input", "3x16x16", "--runs", "1", "--warmup", "0"],
        "bench-name": ["bench", "unet", "-o", "base=4", "-o", "depth=2", "--input", "3x16x16",
                       "--runs", "1", "--warmup", "0"],
        # the data is missing: exit 2 at the data check, after the engine (torch) loaded
        "train": ["train", "--data", files["tmp"] + "/missing", "--epochs", "1"],
        "serve": ["serve", files["run"], "--port", "47861"],
    }[command]  # fmt: skip
    # serve opens the model, then returns instead of listening (uvicorn loads no torch)
    stub = "import uvicorn\nuvicorn.run = lambda *args, **kwargs: None\n"
    body = (
        (stub if command == "serve" else "")
        + "from unetlab.cli.main import main\n"
        f"result = main({[*argv, '--threads', '3', '--device', 'cpu']!r})\n"
    )
    seen = _child(body)
    expected = 2 if command == "train" else 0
    assert seen == {"policy_at_torch_import": "PASSIVE", "result": expected, "torch_threads": 3}


def test_without_the_option_the_policy_is_passive_and_a_chosen_one_is_kept(files):
    body = (
        "from unetlab.cli.main import main\n"
        f"result = main(['predict', {files['run']!r}, {files['image']!r}, '--out', "
        f"{files['tmp'] + '/q'!r}, '--quiet'])\n"
    )
    assert _child(body)["policy_at_torch_import"] == "PASSIVE"
    assert _child(body, OMP_WAIT_POLICY="ACTIVE")["policy_at_torch_import"] == "ACTIVE"


@pytest.mark.parametrize("function", ["predict", "evaluate", "train"])
def test_api_threads_keyword_reaches_torch_and_the_policy_precedes_torch(files, function):
    call = {
        "predict": f"len(unetlab.predict({files['run']!r}, {files['image']!r}, "
        f"out={files['tmp'] + '/api'!r}, threads=3, device='cpu', quiet=True)[0])",
        "evaluate": f"unetlab.evaluate({files['run']!r}, data={files['data']!r}, "
        f"out={files['tmp'] + '/api-e'!r}, threads=3, device='cpu', quiet=True).num_images",
        # the data is missing: training stops at its check, after the engine (torch) loaded
        "train": "unetlab.train(data='does-not-exist', threads=3)",
    }[function]
    body = (
        "import unetlab\n"
        "try:\n"
        f"    result = {call}\n"
        "except unetlab.UnetlabError as exc:\n"
        "    result = 'error'\n"
    )
    seen = _child(body)
    expected = {"predict": 1, "evaluate": 1, "train": "error"}[function]
    assert seen == {"policy_at_torch_import": "PASSIVE", "result": expected, "torch_threads": 3}
