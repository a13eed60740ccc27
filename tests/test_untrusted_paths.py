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


# --- 2. env kwargs that name files: refused from files, checked from the command line -----------------

def set_env_kwargs(run, value):
    for cfg in [run / "config.json", *run.glob("checkpoints/iter_*/config.json")]:
        data = json.loads(cfg.read_text())
        data["train"]["env_kwargs"] = json.dumps(value)
        cfg.write_text(json.dumps(data))


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("target", ["fifo", "/etc/passwd", "/dev/zero"])
def test_env_kwargs_from_a_run_never_name_a_file(assets, tmp_path, refused, fifo, target):
    run = copy(assets / "run", tmp_path, "run")
    set_env_kwargs(run, {"xml_file": str(fifo) if target == "fifo" else target})
    before = snapshot(run)
    refused(["eval", str(run), "--episodes", "1"], "never opens a path named by a run folder")
    refused(["train", "--out", str(run), "--resume"], "names a file, and it was read from --resume")
    (tmp_path / "c.json").write_text(json.dumps({"env_kwargs": json.dumps({"model": "../x/scene.xml"})}))
    refused([*TRAIN, "--config", str(tmp_path / "c.json"), "--out", str(tmp_path / "new")], "--config")
    assert snapshot(run) == before


def test_env_kwargs_files_on_the_command_line_are_checked_without_hanging(tmp_path, fifo):
    import subprocess
    import sys
    for target, needle in ((fifo, "is a FIFO"), ("/dev/zero", "is a character device")):
        argv = [*TRAIN, "--env", "Hopper-v5", "--env-kwargs", json.dumps({"xml_file": str(target)}),
                "--out", str(tmp_path / "r")]
        p = subprocess.run([sys.executable, "-m", "reinflow", *argv], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and p.stderr.strip().splitlines() == [p.stderr.strip()], p.stderr
        assert p.stderr.startswith("error: env_kwargs xml_file=") and needle in p.stderr, p.stderr
    assert not (tmp_path / "r").exists()


def test_a_real_model_file_on_the_command_line_still_works(tmp_path):
    from reinflow.untrusted import check_env_kwargs_files, file_kwargs
    xml = tmp_path / "hopper.xml"
    xml.write_text("<mujoco/>")
    check_env_kwargs_files({"xml_file": str(xml), "env_name": "pick-place-v3", "obs_mode": "state"})
    found = file_kwargs({"xml_file": "a.xml", "env_name": "pick-place-v3", "cams": ["x/y.png"], "n": 3})
    assert sorted(found) == [("cams", "x/y.png"), ("xml_file", "a.xml")]
