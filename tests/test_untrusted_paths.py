"""Issue 29: nothing from someone else reaches outside its folder, no checkpoint is ever taken over,
bad data never trains. Each case: one ``error:`` line and exit 2, and nothing already there changes."""

import json
import os
import shutil

import pytest

from reinflow.cli import main

TRAIN = ["train", "--env", "Pendulum-v1", "--chunk-size", "4", "--parallel-envs", "1", "--rollout-steps", "2",
         "--hidden", "16", "--no-progress", "--no-tensorboard", "--eval-episodes", "1", "--eval-every", "0",
         "--iterations", "1"]


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


def test_env_kwargs_files_on_the_command_line_are_checked_without_hanging(tmp_path, fifo, refused):
    import subprocess
    import sys
    argv = [*TRAIN, "--env", "Hopper-v5", "--env-kwargs", json.dumps({"xml_file": str(fifo)}), "--out", str(tmp_path / "r")]
    p = subprocess.run([sys.executable, "-m", "reinflow", *argv], capture_output=True, text=True, timeout=120)  # a hang fails
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [p.stderr.strip()], p.stderr
    assert p.stderr.startswith("error: env_kwargs xml_file=") and "is a FIFO" in p.stderr, p.stderr
    refused([*argv[:-4], "--env-kwargs", '{"xml_file": "/dev/zero"}', "--out", str(tmp_path / "r")],
            "env_kwargs xml_file='/dev/zero': is a character device")
    assert not (tmp_path / "r").exists()


def test_a_real_model_file_on_the_command_line_still_works(tmp_path):
    from reinflow.untrusted import check_env_kwargs_files, file_kwargs
    xml = tmp_path / "hopper.xml"
    xml.write_text("<mujoco/>")
    check_env_kwargs_files({"xml_file": str(xml), "env_name": "pick-place-v3", "obs_mode": "state"})
    found = file_kwargs({"xml_file": "a.xml", "env_name": "pick-place-v3", "cams": ["x/y.png"], "n": 3})
    assert sorted(found) == [("cams", "x/y.png"), ("xml_file", "a.xml")]


# --- 3. datasets: read from their own folder, offline, checked before training -------------------------

@pytest.fixture(scope="module")
def lerobot_ds(tmp_path_factory):
    pytest.importorskip("lerobot")
    root = tmp_path_factory.mktemp("lerobot") / "ds"
    assert main(["demos", "--env", "reinflow/ArmReach-v0", "--episodes", "2", "--format", "lerobot", "--out", str(root),
                 "--no-progress"]) == 0
    return root


def edit_info(root, **changes):
    info = json.loads((root / "meta" / "info.json").read_text())
    info.update(changes)
    (root / "meta" / "info.json").write_text(json.dumps(info))


def edit_table(path, fn):
    import pyarrow.parquet as pq
    pq.write_table(fn(pq.read_table(path)), path)


def data_file(root):
    return next((root / "data").glob("*/*.parquet"))


def nan_action(table):
    import pyarrow as pa
    rows = table.column("action").to_pylist()
    rows[3][0] = float("nan")
    return table.set_column(table.schema.get_field_index("action"), "action", pa.array(rows, table.schema.field("action").type))


def link_data_file(root, target):
    f = data_file(root)
    f.unlink()
    f.symlink_to(target)


def link_data_folder(root, tmp):
    shutil.move(root / "data", tmp / "elsewhere")
    (root / "data").symlink_to(tmp / "elsewhere")


DATASETS = [
    ("episodes-count", lambda r, t: edit_info(r, total_episodes=5), "total_episodes=5 but meta/episodes/ holds 2 rows"),
    ("frames-count", lambda r, t: edit_info(r, total_frames=7), "total_frames=7 but data/ holds"),
    ("episode-table-short", lambda r, t: edit_table(next((r / "meta" / "episodes").glob("*/*.parquet")),
                                                    lambda tb: tb.slice(0, 1)), "total_episodes=2 but meta/episodes/ holds 1"),
    ("data-file-to-dev-zero", lambda r, t: link_data_file(r, "/dev/zero"), "is a symlink"),
    ("data-file-to-fifo", lambda r, t: os.mkfifo(t / "fifo") or link_data_file(r, t / "fifo"), "is a symlink"),
    ("data-folder-link", link_data_folder, "data is a symlink"),
    ("data-fifo", lambda r, t: os.mkfifo(r / "data" / "extra"), "is a FIFO"),
    ("nan-action", lambda r, t: edit_table(data_file(r), nan_action), "column 'action' holds NaN or inf (frame 3"),
    ("no-state-column", lambda r, t: edit_table(data_file(r), lambda tb: tb.drop(["observation.state"])),
     "no 'observation.state' column"),
]


@pytest.mark.parametrize("name,damage,needle", DATASETS, ids=[c[0] for c in DATASETS])
def test_damaged_lerobot_dataset_is_refused_offline(lerobot_ds, tmp_path, refused, name, damage, needle):
    ds = copy(lerobot_ds, tmp_path, "ds")
    damage(ds, tmp_path)
    refused(["pretrain", "--demos", str(ds), "--steps", "1", "--hidden", "16", "--out", str(tmp_path / "bc")], needle)
    assert not (tmp_path / "bc").exists()


def test_a_damaged_dataset_never_contacts_the_hub(lerobot_ds, tmp_path):
    """The exact repro: counts that disagree with the files once sent LeRobot to the Hub (a fake one here,
    recording every request), with the dataset's own repo id."""
    import http.server
    import subprocess
    import sys
    import threading
    requests = []

    class Hub(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            self.send_response(404)
            self.end_headers()
        do_HEAD = do_POST = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}", "HF_HUB_OFFLINE": "0"}
    env.pop("HF_DATASETS_OFFLINE", None)
    ds = copy(lerobot_ds, tmp_path, "ds")
    edit_info(ds, repo_id="lerobot/pusht", total_episodes=5)
    (tmp_path / "empty").mkdir()
    # one interpreter (LeRobot's import is the slow part): the repro through the CLI, then LeRobot's own
    # fallback for a folder it cannot read, as reinflow calls it (guarded) and as LeRobot would alone (bare)
    script = f"""
import contextlib, sys, urllib.request
from reinflow.cli import main
from reinflow.bc.lerobot_data import _hub_offline, lerobot_dataset_class, OFFLINE_REPO_ID, OFFLINE_REVISION
hub = "{env['HF_ENDPOINT']}/checkpoint/"
assert main(["pretrain", "--demos", "{ds}", "--steps", "1", "--out", "{tmp_path / 'bc'}"]) == 2
lerobot_dataset_class()
from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
for guard in (True, False):
    try:
        with _hub_offline() if guard else contextlib.nullcontext():
            LeRobotDatasetMetadata(OFFLINE_REPO_ID if guard else "lerobot/pusht", root="{tmp_path / 'empty'}",
                                   revision=OFFLINE_REVISION if guard else None)
    except Exception:
        pass
    try:
        urllib.request.urlopen(hub + ("guarded" if guard else "bare"))
    except Exception:
        pass
"""
    try:
        subprocess.run([sys.executable, "-c", script], env=env, timeout=300, check=True, capture_output=True)
    finally:
        server.shutdown()
    guarded = requests.index("/checkpoint/guarded")
    assert guarded == 0, requests[:guarded]                   # nothing before the marker: no request at all
    assert len(requests) > guarded + 2, "unguarded, LeRobot asked the fake Hub nothing: the test could not fail"
    assert not (tmp_path / "bc").exists()


def test_symlinked_demos_npz_is_refused(assets, tmp_path, refused):
    demos = copy(assets / "demos", tmp_path, "demos")
    (tmp_path / "real.npz").write_bytes((demos / "demos.npz").read_bytes())
    (demos / "demos.npz").unlink()
    (demos / "demos.npz").symlink_to(tmp_path / "real.npz")
    refused(["pretrain", "--demos", str(demos), "--steps", "1", "--out", str(tmp_path / "bc")], "demos.npz is a symlink")


def test_a_nan_never_reaches_a_checkpoint(assets, tmp_path):
    import torch

    from reinflow.rl.checkpoint import CheckpointWriteError, load_agent, save_agent
    agent = load_agent(assets / "bc")[0]
    save_agent(tmp_path / "ok", agent)                       # finite weights: written
    with torch.no_grad():
        next(agent.policy.parameters())[0].fill_(float("nan"))
    with pytest.raises(CheckpointWriteError, match="holds NaN or inf"):
        save_agent(tmp_path / "ok", agent)
    assert torch.isfinite(next(iter(load_agent(tmp_path / "ok")[0].policy.parameters()))).all()
