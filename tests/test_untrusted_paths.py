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


# --- 4. one action mapping for demos, evaluation and training; experts' errors are theirs -------------

ASYM = '''
import gymnasium as gym
import numpy as np

SENT = []


class Asym(gym.Env):
    """Asymmetric, non-unit bounds: what the expert asks for must reach step() unchanged."""
    action_space = gym.spaces.Box(np.array([-3.0, 0.0], np.float32), np.array([1.0, 5.0], np.float32))
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        SENT.append(np.asarray(action, np.float64).copy())
        np.save(__file__ + ".sent.npy", np.asarray(SENT))
        self.t += 1
        return np.zeros(2, np.float32), 0.0, self.t >= 4, False, {"success": self.t >= 4}


def expert(obs):
    return [-1.54, 4.2]


def raising(obs):
    raise RuntimeError("my expert broke")


gym.register("asym_env/Asym-v0", entry_point=Asym)
'''


@pytest.fixture
def asym(tmp_path, monkeypatch):
    import sys
    (tmp_path / "asym_env.py").write_text(ASYM)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "asym_env.py.sent.npy"
    sys.modules.pop("asym_env", None)


@pytest.mark.parametrize("noise", ["0", "0.2"])
def test_demos_send_the_env_the_experts_action_in_its_own_units(asym, tmp_path, noise):
    from reinflow.envs.chunk import action_affine, to_env_action
    from reinflow.envs.demos import load_demos
    assert main(["demos", "--env", "asym_env:asym_env/Asym-v0", "--expert", "asym_env:expert", "--episodes", "1",
                 "--action-noise", noise, "--out", str(tmp_path / "d"), "--no-progress"]) == 0
    sent = np.load(asym)
    arrays = np.load(tmp_path / "d" / "demos.npz")
    recorded = arrays["executed_actions" if noise != "0" else "actions"]
    import gymnasium as gym
    space = gym.spaces.Box(np.array([-3.0, 0.0], np.float32), np.array([1.0, 5.0], np.float32))
    np.testing.assert_allclose(to_env_action(recorded, *action_affine(space), space), sent, atol=1e-6)
    if noise == "0":
        np.testing.assert_allclose(sent, [[-1.54, 4.2]] * 4, atol=1e-6)   # exactly what the expert asked for
    assert load_demos(tmp_path / "d").num_episodes == 1


@pytest.mark.parametrize("spec,needle", [("asym_env:raising", "expert asym_env:raising: raised RuntimeError (my expert broke)"),
                                         ("os:system", "expert os:system: raised TypeError")])
def test_a_user_expert_that_fails_is_one_error_line_naming_it(asym, tmp_path, refused, spec, needle):
    line = refused(["demos", "--env", "asym_env:asym_env/Asym-v0", "--expert", spec, "--episodes", "1",
                    "--out", str(tmp_path / "d"), "--no-progress"], needle)
    assert "bug in reinflow" not in line


@pytest.mark.parametrize("value,success", [(True, True), (False, False), (1, True), (0.0, False), (np.bool_(True), True),
                                           (np.array([1.0]), True), ("yes", False), ("no", False), (None, False),
                                           (float("nan"), False), ([1], False)])
def test_only_bools_and_numbers_report_success(value, success):
    from reinflow.envs.chunk import info_success
    assert info_success({"success": value}) is success
    assert info_success({}) is None


# --- 5. every network built from flags or files has a total size bound; checkpoint fields their flag's range

@pytest.fixture(scope="module")
def dsrl_run(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("dsrl") / "run"
    assert main(["train", "--env", "reinflow/ArmReach-v0", "--algorithm", "dsrl", "--policy-path", str(assets / "bc"),
                 "--out", str(out), "--iterations", "1", "--parallel-envs", "1", "--rollout-steps", "2",
                 "--dsrl-warmup", "0", "--dsrl-batch-size", "2", "--dsrl-hidden", "16", "--eval-episodes", "1",
                 "--eval-every", "0", "--no-progress", "--no-tensorboard"]) == 0
    return out


def edit_policy(ck, fn):
    cfg = json.loads((ck / "config.json").read_text())
    cfg["policy"] = fn(cfg["policy"])
    (ck / "config.json").write_text(json.dumps(cfg))
    return ck


def set_done(run, value):
    from safetensors.torch import load_file, save_file
    for f in run.glob("checkpoints/iter_*/trainer_state.safetensors"):
        state = load_file(f)
        key = next(k for k in state if k.endswith("done"))
        state[key] = state[key].clone().fill_(value)
        save_file(state, f)


def test_dsrl_hidden_flag_has_a_total_bound(tmp_path, refused):
    refused([*TRAIN, "--algorithm", "dsrl", "--dsrl-hidden", "65536", "65536", "65536", "--out", str(tmp_path / "r")],
            "dsrl_hidden=[65536, 65536, 65536]: the DSRL actor and twin critics of 2.58e+10 weights; at most 2.68e+08")
    assert not (tmp_path / "r").exists()


CRAFTED = [
    ("dsrl-hidden", lambda ck: edit_policy(ck, lambda p: {**p, "hidden": [30000, 30000]}), "dsrl_hidden=[30000, 30000]"),
    ("dsrl-bound", lambda ck: edit_policy(ck, lambda p: {**p, "bound": 1e12}), "dsrl_bound=1000000000000.0: allowed range [0.001, 10]"),
    ("residual-hidden", lambda ck: edit_policy(ck, lambda p: {"type": "residual", "hidden": [30000, 30000], "base": p["base"]}),
     "the residual offset net of"),
]


@pytest.mark.parametrize("name,craft,needle", CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_network_sizes_are_refused_before_building_naming_the_file(dsrl_run, tmp_path, refused, name, craft, needle):
    import resource
    ck = craft(copy(dsrl_run / "checkpoints" / "iter_000000", tmp_path, "ck"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = refused(["eval", str(ck), "--episodes", "1"], needle)
    assert f"checkpoint {ck / 'config.json'}" in line
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 500_000   # KiB: nothing of 3.6 GB was built


def test_replay_done_must_be_0_or_1(dsrl_run, tmp_path, refused):
    run = copy(dsrl_run, tmp_path, "run")
    set_done(run, 5.0)
    before = snapshot(run)
    line = refused(["train", "--out", str(run), "--resume", "--iterations", "2"], "field done holds [5.0]; expected 0 or 1")
    assert f"checkpoint {run}" in line
    assert snapshot(run) == before


# --- 6. errors: one line, once, naming a fix that exists -----------------------------------------------

@pytest.mark.slow  # two ranks under torchrun: ~18 s on the shared 2-core machine
def test_an_error_under_nproc_is_one_line_from_the_launcher(tmp_path):
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "reinflow", *TRAIN, "--nproc", "2", "--env-kwargs", '{"nope": 1}',
                        "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=300)
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert p.returncode == 2, p.stderr
    assert len(lines) == 1 and lines[0].startswith("error: env='Pendulum-v1': gymnasium could not build it"), p.stderr
    assert "Traceback" not in p.stderr and "ChildFailedError" not in p.stderr


@pytest.mark.parametrize("cmd", [["quickstart"], ["demos", "--episodes", "1"], ["pretrain", "--steps", "1"]])
def test_commands_without_resume_never_suggest_it(assets, tmp_path, refused, cmd):
    argv = [*cmd, "--out", str(assets / "run")] + (["--demos", str(assets / "demos")] if cmd[0] == "pretrain" else [])
    line = refused(argv, "the folder exists and is not empty")
    assert "--resume" not in line and "--overwrite" in line


DSRL_PPO_ONLY = [(["--initial-noise", "zero"], "initial_noise='zero': a PPO setting"),
                 (["--bc-coef", "0.1"], "bc_coef=0.1: a PPO setting"),
                 (["--preset", "reinflow-paper"], "preset='reinflow-paper': a PPO recipe")]


@pytest.mark.parametrize("flags,needle", DSRL_PPO_ONLY, ids=[f[0][0] for f in DSRL_PPO_ONLY])
def test_dsrl_refuses_ppo_only_flags(tmp_path, refused, flags, needle):
    refused([*TRAIN, "--algorithm", "dsrl", *flags, "--out", str(tmp_path / "r")], needle)


def test_smolvla_tiny_help_without_lerobot(monkeypatch, capsys):
    import sys
    for name in ("lerobot", "reinflow.policies.smolvla.tiny"):
        monkeypatch.setitem(sys.modules, name, None)      # `import` of either now raises ImportError
    assert main(["smolvla-tiny", "--help"]) == 0
    assert "usage: reinflow smolvla-tiny" in capsys.readouterr().out


@pytest.mark.parametrize("sig", ["SIGTERM"])  # SIGINT: tests/test_untrusted.py::test_a_second_signal_stops_at_once
def test_a_second_signal_is_named(tmp_path, sig):
    """A run stuck in a slow env step: the second signal stops it at once and the error names it."""
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "r"
    kw = json.dumps({"base": "Pendulum-v1", "sleep_s": 0.05})
    proc = subprocess.Popen([sys.executable, "-m", "reinflow", *TRAIN, "--env", "reinflow/Faulty-v0", "--env-kwargs",
                             kw, "--iterations", "1000", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text()):
        time.sleep(0.01)
    for _ in range(2):
        proc.send_signal(getattr(signal, sig))
        time.sleep(0.3)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 2, err
    assert f"[reinflow] {sig}: stopping after this iteration" in err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("[reinflow")]
    assert len(lines) == 1 and f"interrupted ({sig})" in lines[0], err


@pytest.mark.slow  # a whole (tiny) quickstart: ~17 s on the shared 2-core machine
def test_a_signal_during_quickstart_fine_tuning_is_not_minutes(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "q"
    proc = subprocess.Popen([sys.executable, "-m", "reinflow", "quickstart", "--task", "reach", "--out", str(out),
                             "--demo-episodes", "2", "--bc-steps", "2", "--eval-episodes", "1", "--train-eval-episodes", "1",
                             "--iterations", "1000", "--parallel-envs", "1", "--rollout-steps", "2", "--chunk-size", "4",
                             "--no-progress", "--demo-noise", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    metrics = out / "train" / "metrics.jsonl"
    while time.time() < deadline and not (metrics.exists() and metrics.read_text()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by_signal"] and not summary["stopped_by_minutes"]
    md = (out / "summary.md").read_text()
    assert "a signal stopped the run" in md and "--minutes cut" not in md + stdout
