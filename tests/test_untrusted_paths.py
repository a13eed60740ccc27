"""Issue 29: nothing from someone else reaches outside its folder, no checkpoint is ever taken over,
bad data never trains. Each case: one ``error:`` line and exit 2, and nothing already there changes."""

import json
import os
import shutil

import numpy as np
import pytest

from reinflow.cli import main

TRAIN = ["train", "--env", "Pendulum-v1", "--chunk-size", "4", "--parallel-envs", "1", "--rollout-steps", "2",
         "--hidden", "16", "--no-progress", "--no-tensorboard", "--eval-episodes", "1", "--eval-every", "0",
         "--iterations", "1"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A demo set, the pretrain checkpoint made from it, and a run."""
    root = tmp_path_factory.mktemp("hostile")
    assert main(["demos", "--env", "reinflow/ArmReach-v0", "--episodes", "2", "--out", str(root / "demos"),
                 "--no-progress"]) == 0
    assert main(["pretrain", "--demos", str(root / "demos"), "--out", str(root / "bc"), "--steps", "2",
                 "--hidden", "16", "--no-progress"]) == 0
    assert main([*TRAIN, "--out", str(root / "run")]) == 0
    return root


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def copy(src, tmp_path, name):
    shutil.copytree(src, tmp_path / name)
    return tmp_path / name


# --- 1. --resume and every writer act only on a run folder --------------------------------------------

TAKEOVER = [
    ("resume-pretrain-ck", lambda a, bc: ["train", "--env", "reinflow/ArmReach-v0", "--policy-path", str(bc),
                                          "--out", str(bc), "--resume"], "bc", "is a checkpoint, not a run folder"),
    ("resume-pretrain-ck-bare", lambda a, bc: ["train", "--out", str(bc), "--resume"], "bc", "--policy-path"),
    ("resume-run-checkpoint", lambda a, ck: ["train", "--out", str(ck), "--resume"], "run", "is a checkpoint"),
    ("resume-demos", lambda a, d: ["train", "--out", str(d), "--resume"], "demos", "is a demo set"),
    ("train-inside-ck", lambda a, bc: [*TRAIN, "--out", str(bc / "sub")], "bc", "lies inside"),
    ("pretrain-inside-ck", lambda a, bc: ["pretrain", "--demos", str(a / "demos"), "--out", str(bc / "x"),
                                          "--steps", "1"], "bc", "which is a checkpoint"),
    ("demos-inside-demos", lambda a, d: ["demos", "--episodes", "1", "--out", str(d / "more")], "demos", "a demo set"),
]


@pytest.mark.parametrize("name,build,what,needle", TAKEOVER, ids=[c[0] for c in TAKEOVER])
def test_no_checkpoint_or_dataset_is_taken_over(assets, tmp_path, refused, name, build, what, needle):
    target = copy(assets / what, tmp_path, what)
    if what == "run":
        target = target / "checkpoints" / "iter_000000"
    before = snapshot(tmp_path)
    refused(build(tmp_path, target), needle)
    assert snapshot(tmp_path) == before
