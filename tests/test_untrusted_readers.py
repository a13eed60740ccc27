"""Every reader bounds what it reads before parsing (issue 22): a crafted demo set, LeRobot dataset, W&B
or reinflow run folder costs one `error:` line and exit 2, never a hang, gigabytes or a traceback."""

import json
import os
import resource
import time
import zipfile

import numpy as np
import pytest

from reinflow.cli import main

TRAIN = ["train", "--env", "Pendulum-v1", "--chunk-size", "4", "--parallel-envs", "1", "--rollout-steps", "2",
         "--hidden", "16", "--no-progress", "--eval-episodes", "1", "--eval-every", "0"]


def write_npz_member(zf, name, shape, dtype="<f4", data=b""):
    with zf.open(name + ".npy", "w") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": dtype, "fortran_order": False, "shape": shape})
        f.write(data)


def test_demos_declaring_gigabytes_are_refused_from_their_headers(tmp_path, refused):
    d = tmp_path / "demos"
    d.mkdir()
    (d / "meta.json").write_text(json.dumps({"env_id": "Pendulum-v1", "obs_dim": 3, "action_dim": 1}))
    n = 50_000_000                                        # 600 MB of observations from a few bytes
    with zipfile.ZipFile(d / "demos.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        write_npz_member(zf, "episode_lengths", (1,), "<i8", np.array([n]).tobytes())
        for key, shape in (("observations", (n, 3)), ("actions", (n, 1)), ("rewards", (n,)), ("successes", (n,))):
            write_npz_member(zf, key, shape)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused(["pretrain", "--demos", str(d), "--steps", "1", "--out", str(tmp_path / "bc")], "declare")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000   # kB: nothing was allocated


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


def deep(n):
    return "[" * n + "]" * n


DOCTOR_FILES = [
    ("alias-bomb", "files/config.yaml", ALIAS_BOMB, "aliases expand to more than"),
    ("deep-yaml", "files/config.yaml", "a: " + deep(5000) + "\n", "nested more than"),
    ("deep-summary", "files/wandb-summary.json", '{"a": ' + deep(100000) + "}", "nested more than"),
    ("deep-metrics", "metrics.jsonl", '{"training/clip_fraction": ' + deep(3000) + "}\n", "not valid JSON"),
    ("deep-config", "config.json", '{"train": ' + deep(2000) + "}", "nested more than"),
    ("num-dims", "metrics.jsonl", '{"training/clip_fraction": 0.1, "logprob/num_dims": -7}\n', "logprob/num_dims=-7"),
    ("sigma-lo", "metrics.jsonl", '{"training/clip_fraction": 0.1, "noise/sigma_lo": -1}\n', "noise/sigma_lo=-1"),
]


@pytest.mark.parametrize("name,rel,text,needle", DOCTOR_FILES, ids=[c[0] for c in DOCTOR_FILES])
def test_doctor_on_crafted_files(tmp_path, refused, name, rel, text, needle):
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if rel.startswith("files/"):
        other = "wandb-summary.json" if rel.endswith("yaml") else "config.yaml"
        (path.parent / other).write_text("{}" if other.endswith("json") else "a: 1\n")
    elif rel == "config.json":
        (tmp_path / "metrics.jsonl").write_text('{"training/clip_fraction": 0.1}\n')
    t0 = time.time()
    refused(["doctor", str(tmp_path)], needle)
    assert time.time() - t0 < 10


def test_doctor_refuses_fifos_and_devices(tmp_path, refused):
    fifo = tmp_path / "m.jsonl"
    os.mkfifo(fifo)
    refused(["doctor", str(fifo)], "is a FIFO")
    refused(["doctor", "/dev/zero"], "is a character device")


def test_a_5001_digit_integer_reads_as_non_finite(tmp_path, capsys):
    (tmp_path / "m.jsonl").write_text('{"training/clip_fraction": 0.1, "reward/batch_avg": 1' + "0" * 5000 + "}\n")
    assert main(["doctor", str(tmp_path / "m.jsonl"), "--json"]) == 0
    assert "NON_FINITE" in [f["code"] for f in json.loads(capsys.readouterr().out)["findings"]]


def test_deep_env_kwargs(tmp_path, refused):
    refused([*TRAIN, "--env-kwargs", '{"a": ' + deep(5000) + "}", "--out", str(tmp_path / "r")],
              "not valid JSON")


# --- LeRobot datasets: checked before LeRobot reads them, never downloaded ---------------------------

def lerobot_folder(tmp_path, **info):
    root = tmp_path / "ds"
    (root / "meta").mkdir(parents=True)
    feats = {"observation.state": {"dtype": "float32", "shape": [3]}, "action": {"dtype": "float32", "shape": [1]}}
    (root / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v3.0", "fps": 10, "total_episodes": 1,
                                                         "total_frames": 10, "features": feats, **info}))
    return root


@pytest.mark.parametrize("info,needle", [
    ({"total_episodes": 10**15}, "total_episodes=1000000000000000"),
    ({"codebase_version": "v2.1"}, "codebase_version='v2.1'"),
    ({}, "never downloads"),
    ({"features": {"action": {"dtype": "float32", "shape": [1]}}}, "no 'observation.state' feature"),
    ({"extra": json.loads(deep(300))}, "nested more than"),
], ids=["total-episodes", "v2.1", "missing-files", "no-state", "deep"])
def test_lerobot_dataset(tmp_path, refused, info, needle):
    pytest.importorskip("lerobot")
    root = lerobot_folder(tmp_path, **info)
    refused(["pretrain", "--demos", str(root), "--steps", "1", "--out", str(tmp_path / "bc")], needle)
