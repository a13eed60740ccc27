"""Issue 29, second half: one action mapping for demos and training, user experts' errors, network
sizes from flags and checkpoints, and errors that name a fix which exists. Each refusal: one
``error:`` line, exit 2, nothing already written changes."""

import json
import os
import shutil

import numpy as np
import pytest

from reinflow.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:.*Overriding environment asym_env")  # each test writes its own module

TRAIN = ["train", "--env", "Pendulum-v1", "--chunk-size", "4", "--parallel-envs", "1", "--rollout-steps", "2",
         "--hidden", "16", "--no-progress", "--no-tensorboard", "--eval-episodes", "1", "--eval-every", "0",
         "--iterations", "1"]


def files(folder):
    return {p: p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


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
def asym(user_module):
    """The module's path + ``.sent.npy``: every action its env received."""
    return user_module("asym_env", ASYM).with_name("asym_env.py.sent.npy")


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
    ("dsrl-bound", lambda ck: edit_policy(ck, lambda p: {**p, "bound": 1e12}),
     "dsrl_bound=1000000000000.0: allowed range [0.001, 10]"),
    ("residual-hidden", lambda ck: edit_policy(ck, lambda p: {"type": "residual", "hidden": [30000, 30000], "base": p["base"]}),
     "the residual offset net of"),
]


@pytest.mark.parametrize("name,craft,needle", CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_network_sizes_are_refused_before_building_naming_the_file(dsrl_run, tmp_path, refused, name, craft, needle):
    import resource
    ck = craft(shutil.copytree(dsrl_run / "checkpoints" / "iter_000000", tmp_path / "ck") or tmp_path / "ck")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = refused(["eval", str(ck), "--episodes", "1"], needle)
    assert f"checkpoint {ck / 'config.json'}" in line
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 500_000   # KiB: nothing of 3.6 GB was built


def test_replay_done_must_be_0_or_1(dsrl_run, tmp_path, refused):
    run = tmp_path / "run"
    shutil.copytree(dsrl_run, run)
    set_done(run, 5.0)
    before = files(run)
    line = refused(["train", "--out", str(run), "--resume", "--iterations", "2"], "field done holds [5.0]; expected 0 or 1")
    assert f"checkpoint {run}" in line
    assert files(run) == before


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


@pytest.mark.slow  # two ranks under torchrun, stopped and resumed: ~30 s on the shared 2-core machine
def test_ctrl_c_under_nproc_stops_like_one_process(tmp_path):
    """Ctrl-C reaches the launcher and the ranks (one process group): the ranks finish their iteration and
    checkpoint, the launcher says so once, exit 0; no traceback."""
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "r"
    argv = [sys.executable, "-m", "reinflow", *TRAIN[:-2], "--iterations", "1000", "--nproc", "2", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text()):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 0 and "Traceback" not in err and "error:" not in err, err
    assert "--nproc 2: stopped by SIGINT" in err and (out / "checkpoints" / "latest").is_file()
