"""One table of malformed inputs across every command: each ends with exit code 2 and one line
``error: ...`` naming the thing, the field and what was expected, never a traceback."""

import json
import shutil

import numpy as np
import pytest

from reinflow.cli import main

TRAIN = ["train", "--env", "Pendulum-v1", "--iterations", "1", "--parallel-envs", "1", "--rollout-steps", "2",
         "--hidden", "16", "--no-progress", "--no-tensorboard", "--eval-episodes", "1"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    assert main([*TRAIN, "--chunk-size", "4", "--out", str(root / "run")]) == 0
    assert main(["demos", "--env", "reinflow/ArmReach-v0", "--episodes", "3", "--out", str(root / "demos"),
                 "--no-progress"]) == 0
    return root


def ck(root):
    return root / "run" / "checkpoints" / "iter_000000"


def copy_ck(root, tmp):
    dst = tmp / "ck"
    shutil.copytree(ck(root), dst)
    return dst


def edit_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def copy_demos(root, tmp, **changes):
    dst = tmp / "demos"
    shutil.copytree(root / "demos", dst)
    arrays = dict(np.load(dst / "demos.npz"))
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v(arrays)
    np.savez(dst / "demos.npz", **arrays)
    return dst


def put(path, text):
    path.write_text(text)  # returns None, so `put(...) or argv` reads as "write, then argv"


def copy_run(root, tmp):
    dst = tmp / "run"
    shutil.copytree(root / "run", dst)
    return dst


def legacy_state(run):
    """The pickled trainer_state.pt of older versions, in place of the safe format."""
    for d in (run / "checkpoints").glob("iter_*"):
        for f in d.glob("trainer_state.*"):
            f.unlink()
        (d / "trainer_state.pt").write_bytes(b"not read")
    return run


def damage_state(run):
    for d in (run / "checkpoints").glob("iter_*"):
        put(d / "trainer_state.json", '{"iteration": "x"')
    return run


def nan_actions(a):
    x = a["actions"].copy()
    x[1, 2] = np.nan
    return x


# (id, argv builder(root, tmp) -> list[str], expected substring)
CASES = [
    # --- training flags -------------------------------------------------------------------
    ("sigma-order", lambda r, t: [*TRAIN, "--sigma-min", "0.3", "--sigma-max", "0.1"], "sigma_min=0.3 must be < sigma_max=0.1"),
    ("sigma-zero", lambda r, t: [*TRAIN, "--sigma-min", "0"], "sigma_min=0.0: must be > 0"),
    ("sigma-decay-final", lambda r, t: [*TRAIN, "--noise-schedule", "decay", "--sigma-max-final", "0.5"], "sigma_max_final=0.5"),
    ("act-steps", lambda r, t: [*TRAIN, "--chunk-size", "4", "--act-steps", "5"], "act_steps=5: must be <= chunk_size=4"),
    ("chunk-zero", lambda r, t: [*TRAIN, "--chunk-size", "0"], "chunk_size=0: must be >= 1"),
    ("denoise-zero", lambda r, t: [*TRAIN, "--denoise-steps", "0"], "denoise_steps=0: must be >= 1"),
    ("envs-zero", lambda r, t: [*TRAIN, "--parallel-envs", "0"], "parallel_envs=0: must be >= 1"),
    ("lambda", lambda r, t: [*TRAIN, "--gae-lambda", "2"], "gae_lambda=2.0: allowed range [0, 1]"),
    ("lr", lambda r, t: [*TRAIN, "--lr-actor", "-1"], "lr_actor=-1.0: must be > 0"),
    ("target-kl", lambda r, t: [*TRAIN, "--target-kl", "0"], "target_kl=0.0: must be > 0"),
    ("clamp", lambda r, t: [*TRAIN, "--logprob-clamp", "0"], "logprob_clamp=0.0: must be > 0"),
    ("unknown-env", lambda r, t: [*TRAIN, "--env", "Hoppr-v5"], "env='Hoppr-v5': not a registered gymnasium id"),
    ("bad-module-env", lambda r, t: [*TRAIN, "--env", "no_such_mod:Thing-v0"], "cannot import module 'no_such_mod'"),
    ("discrete-env", lambda r, t: [*TRAIN, "--env", "CartPole-v1"], "action space Discrete is not a Box"),
    ("env-kwargs-json", lambda r, t: [*TRAIN, "--env-kwargs", "[1, 2]"], "must be a JSON object"),
    ("env-kwargs-field", lambda r, t: [*TRAIN, "--env-kwargs", '{"nope": 1}'], "gymnasium could not build it"),
    ("preset", lambda r, t: [*TRAIN, "--preset", "fastest"], "preset='fastest': allowed"),
    ("resume-no-run", lambda r, t: ["train", "--resume", "--out", str(t / "none")], "is --out the folder of an earlier run"),
    # --- config files ---------------------------------------------------------------------
    ("config-missing", lambda r, t: [*TRAIN, "--config", str(t / "x.yaml")], "no such file"),
    ("config-yaml", lambda r, t: put(t / "c.yaml", "a: [1,\n") or [*TRAIN, "--config", str(t / "c.yaml")], "cannot parse"),
    ("config-list", lambda r, t: put(t / "c.json", "[1]") or [*TRAIN, "--config", str(t / "c.json")], "expected a mapping"),
    ("config-field", lambda r, t: put(t / "c.json", '{"sigma": 1}') or [*TRAIN, "--config", str(t / "c.json")], "unknown field(s) sigma"),
    ("config-value", lambda r, t: put(t / "c.json", '{"sigma_min": -2}') or [*TRAIN, "--config", str(t / "c.json")], "sigma_min=-2"),
    # --- checkpoints ----------------------------------------------------------------------
    ("ck-missing", lambda r, t: ["eval", str(t / "nothing")], "no such folder"),
    ("ck-empty-dir", lambda r, t: t.joinpath("e").mkdir() or ["eval", str(t / "e")], "expected config.json and model.safetensors"),
    ("ck-truncated", lambda r, t: (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:300]) and ["eval", str(d)])(copy_ck(r, t)), "corrupt or truncated"),
    ("ck-newer", lambda r, t: (lambda d: edit_json(d / "config.json", lambda c: c.update(format_version=7)) or ["eval", str(d)])(copy_ck(r, t)), "format_version=7 is newer"),
    ("ck-model-type", lambda r, t: (lambda d: edit_json(d / "config.json", lambda c: c["policy"].update(type="rnn")) or ["eval", str(d)])(copy_ck(r, t)), "policy type='rnn'"),
    ("ck-shape", lambda r, t: (lambda d: edit_json(d / "config.json", lambda c: c["policy"].update(chunk_size=9)) or ["eval", str(d)])(copy_ck(r, t)), "weights do not fit the policy config"),
    ("ck-json", lambda r, t: (lambda d: put(d / "config.json", "{") or ["eval", str(d)])(copy_ck(r, t)), "malformed JSON"),
    ("ck-action-dim", lambda r, t: [*TRAIN, "--env", "Reacher-v5", "--policy-path", str(ck(r))], "checkpoint action_dim=1 but env Reacher-v5 has 2"),
    ("ck-chunk", lambda r, t: [*TRAIN, "--chunk-size", "8", "--policy-path", str(ck(r))], "the checkpoint"),
    ("eval-episodes", lambda r, t: ["eval", str(ck(r)), "--episodes", "0"], "episodes=0: must be >= 1"),
    # --- demonstrations -------------------------------------------------------------------
    ("demos-missing", lambda r, t: ["pretrain", "--demos", str(t / "nope"), "--steps", "1"], "nope"),
    ("demos-key", lambda r, t: ["pretrain", "--demos", str(copy_demos(r, t, actions=None)), "--steps", "1"], "actions"),
    ("demos-shape", lambda r, t: ["pretrain", "--demos", str(copy_demos(r, t, actions=lambda a: a["actions"][:, :4])), "--steps", "1"], "actions"),
    ("demos-nan", lambda r, t: ["pretrain", "--demos", str(copy_demos(r, t, actions=nan_actions)), "--steps", "1"], "actions"),
    ("demos-empty", lambda r, t: ["pretrain", "--demos", str(copy_demos(r, t, **{k: (lambda a, k=k: a[k][:0]) for k in ("observations", "actions", "rewards", "successes", "episode_lengths")})), "--steps", "1"], "empty"),
    ("pretrain-steps", lambda r, t: ["pretrain", "--demos", str(r / "demos"), "--steps", "0"], "steps=0: must be >= 1"),
    ("demos-episodes", lambda r, t: ["demos", "--episodes", "0"], "episodes=0: must be >= 1"),
    ("demos-env", lambda r, t: ["demos", "--env", "Nope-v0", "--episodes", "1"], "env='Nope-v0'"),
    # --- doctor ---------------------------------------------------------------------------
    ("doctor-missing", lambda r, t: ["doctor", str(t / "nowhere")], "nowhere"),
    ("doctor-empty", lambda r, t: t.joinpath("d").mkdir() or ["doctor", str(t / "d")], str("d")),
    ("doctor-json", lambda r, t: put(t / "s.json", "{oops") or ["doctor", str(t / "s.json")], "s.json"),
    # --- output folders: never lost, nothing written into a starting checkpoint ----------------
    ("out-reused", lambda r, t: [*TRAIN, "--out", str(r / "run")], "the folder exists and is not empty"),
    ("out-is-file", lambda r, t: put(t / "f", "x") or [*TRAIN, "--out", str(t / "f")], "is a file, not a folder"),
    ("out-under-file", lambda r, t: put(t / "f", "x") or [*TRAIN, "--out", str(t / "f" / "run")], "is a file, so no folder"),
    ("out-proc", lambda r, t: [*TRAIN, "--out", "/proc/reinflow-run"], "out=/proc/reinflow-run: cannot create the folder"),
    ("out-is-policy-path", lambda r, t: [*TRAIN, "--policy-path", str(ck(r)), "--out", str(ck(r))], "overlaps --policy-path"),
    ("out-inside-policy-path", lambda r, t: [*TRAIN, "--policy-path", str(ck(r)), "--out", str(ck(r) / "x"), "--overwrite"], "overlaps --policy-path"),
    ("pretrain-out-reused", lambda r, t: ["pretrain", "--demos", str(r / "demos"), "--out", str(r / "run"), "--steps", "1"], "not empty"),
    ("demos-out-reused", lambda r, t: ["demos", "--episodes", "1", "--out", str(r / "demos")], "not empty"),
    ("quickstart-out-reused", lambda r, t: ["quickstart", "--out", str(r)], "not empty"),
    # --- resume: validated before anything is written ------------------------------------------
    ("resume-chunk", lambda r, t: ["train", "--resume", "--out", str(copy_run(r, t)), "--chunk-size", "16"], "chunk_size=16 but the run"),
    ("resume-env", lambda r, t: ["train", "--resume", "--out", str(copy_run(r, t)), "--env", "MountainCarContinuous-v0"], "env='MountainCarContinuous-v0' but the run"),
    ("resume-hidden", lambda r, t: ["train", "--resume", "--out", str(copy_run(r, t)), "--hidden", "8"], "hidden=[8] but the run"),
    ("resume-config", lambda r, t: ["train", "--resume", "--out", str(copy_run(r, t)), "--config", "x.yaml"], "cannot be combined"),
    ("resume-legacy-pickle", lambda r, t: ["train", "--resume", "--out", str(legacy_state(copy_run(r, t)))], "pickle format"),
    ("resume-damaged-state", lambda r, t: ["train", "--resume", "--out", str(damage_state(copy_run(r, t)))], "trainer state unreadable"),
    ("resume-checkpoint", lambda r, t: ["train", "--resume", "--out", str(ck(r))], "is a checkpoint, not a run folder"),
    ("out-inside-checkpoint", lambda r, t: [*TRAIN, "--out", str(ck(r) / "x")], "which is a checkpoint, not a run folder"),
    ("dsrl-hidden-total", lambda r, t: [*TRAIN, "--algorithm", "dsrl", "--dsrl-hidden", "30000", "30000"], "dsrl_hidden=[30000, 30000]"),
    ("dsrl-ppo-flag", lambda r, t: [*TRAIN, "--algorithm", "dsrl", "--bc-coef", "0.5"], "bc_coef=0.5: a PPO setting"),
    ("demos-action-noise", lambda r, t: ["demos", "--action-noise", "-1"], "action_noise=-1.0"),
    ("quickstart-demo-noise", lambda r, t: ["quickstart", "--demo-noise", "2"], "demo_noise=2.0"),
    ("resume-no-checkpoint", lambda r, t: t.joinpath("r", "checkpoints").mkdir(parents=True) or ["train", "--resume", "--out", str(t / "r")], "no complete checkpoint"),
    # --- numbers: typed, finite, in range, at parse time --------------------------------------
    ("sigma-max-inf", lambda r, t: [*TRAIN, "--sigma-max", "inf"], "sigma_max=inf: must be a finite number"),
    ("lr-inf", lambda r, t: [*TRAIN, "--lr-actor", "inf"], "lr_actor=inf: must be a finite number"),
    ("ent-nan", lambda r, t: [*TRAIN, "--ent-coef", "nan"], "ent_coef=nan: must be a finite number"),
    ("seed-negative", lambda r, t: [*TRAIN, "--seed", "-1"], "seed=-1: allowed range [0, 4294967295]"),
    ("seed-huge", lambda r, t: [*TRAIN, "--seed", str(2**70)], "seed="),
    ("iterations-huge", lambda r, t: [*TRAIN, "--iterations", str(10**20)], "out of range"),
    ("hidden-empty", lambda r, t: [*TRAIN, "--hidden"], "hidden=[]: needs at least one layer width"),
    ("hidden-zero", lambda r, t: [*TRAIN, "--hidden", "0"], "hidden=[0]"),
    ("hidden-negative", lambda r, t: put(t / "c.yaml", "hidden: [-3]") or [*TRAIN, "--config", str(t / "c.yaml")], "hidden=[-3]"),
    ("config-type-int", lambda r, t: put(t / "c.yaml", "iterations: ten") or [*TRAIN, "--config", str(t / "c.yaml")], "iterations='ten': expected an integer"),
    ("config-type-list", lambda r, t: put(t / "c.yaml", "hidden: 5") or [*TRAIN, "--config", str(t / "c.yaml")], "hidden=5: expected a list"),
    ("config-type-bool", lambda r, t: put(t / "c.yaml", "norm_adv: maybe") or [*TRAIN, "--config", str(t / "c.yaml")], "norm_adv='maybe': expected true or false"),
    ("config-type-literal", lambda r, t: put(t / "c.yaml", "vector: threads") or [*TRAIN, "--config", str(t / "c.yaml")], "vector='threads': allowed sync, async"),
    ("config-preset", lambda r, t: put(t / "c.yaml", "preset: fastest") or [*TRAIN, "--config", str(t / "c.yaml")], "preset='fastest': allowed"),
    ("render", lambda r, t: [*TRAIN, "--render"], "render=True: recording evaluation frames is not implemented"),
    ("device-name", lambda r, t: [*TRAIN, "--device", "gpu9"], "device='gpu9': not a torch device"),
    ("env-kwargs-value", lambda r, t: [*TRAIN, "--env", "reinflow/ArmReach-v0", "--env-kwargs", '{"obs_mode": "bogus"}'], "obs_mode must be"),
    ("policy-path-json", lambda r, t: (lambda d: put(d / "config.json", "{") or [*TRAIN, "--policy-path", str(d)])(copy_ck(r, t)), "malformed JSON"),
    # --- parser errors: the same one-line form ---------------------------------------------
    ("parse-int", lambda r, t: [*TRAIN, "--iterations", "abc"], "Error parsing --iterations"),
    ("parse-unknown", lambda r, t: [*TRAIN, "--nope"], "Unrecognized options: --nope"),
    ("parse-eval-missing", lambda r, t: ["eval"], "reinflow eval: Missing"),
    ("parse-quickstart-task", lambda r, t: ["quickstart", "--task", "fly"], "invalid choice 'fly'"),
    ("parse-scale", lambda r, t: ["scale", "--chunk-size", "x"], "Error parsing --chunk-size"),
    ("parse-tiny", lambda r, t: ["smolvla-tiny"], "the following arguments are required: dir"),
    ("unknown-command", lambda r, t: ["trian"], "unknown command 'trian'"),
    # --- the other commands ---------------------------------------------------------------------
    ("eval-seed", lambda r, t: ["eval", str(ck(r)), "--seed", "-5"], "seed=-5"),
    ("eval-json-out", lambda r, t: put(t / "f", "x") or ["eval", str(ck(r)), "--episodes", "1", "--json-out", str(t / "f" / "e.json")], "Not a directory"),
    ("quickstart-minutes", lambda r, t: ["quickstart", "--minutes", "nan"], "minutes=nan: must be a finite number"),
    ("quickstart-seed", lambda r, t: ["quickstart", "--seed", "-1"], "seed=-1"),
    ("demos-non-arm", lambda r, t: ["demos", "--env", "Pendulum-v1", "--episodes", "1"], "no built-in expert for it"),
    ("demos-image-size", lambda r, t: ["demos", "--image-size", "0", "0"], "image_size=(0, 0)"),
    ("demos-obs-mode", lambda r, t: ["demos", "--obs-mode", "rgb"], "obs_mode='rgb': allowed state, pixels_state"),
    ("pretrain-hidden", lambda r, t: ["pretrain", "--demos", str(r / "demos"), "--hidden"], "hidden=[]"),
    ("pretrain-lr", lambda r, t: ["pretrain", "--demos", str(r / "demos"), "--lr", "inf"], "lr=inf"),
    ("scale-inf", lambda r, t: ["scale", "--ref-lr", "inf"], "ref_lr=inf: must be a finite number"),
    ("scale-act-steps", lambda r, t: ["scale", "--chunk-size", "4", "--act-steps", "9"], "act_steps=9"),
    ("doctor-not-a-run", lambda r, t: put(t / "r.json", '{"a": 1, "b": [2]}') or ["doctor", str(t / "r.json")], "not a run it can judge"),
    ("doctor-strings", lambda r, t: put(t / "s.jsonl", '"a"\n"b"\n') or ["doctor", str(t / "s.jsonl")], "line 1 is str"),
    ("doctor-huge-int-config", lambda r, t: (t / "h").mkdir() or put(t / "h" / "metrics.jsonl", '{"ppo/clip_fraction": 0.1}\n') or put(t / "h" / "config.json", '{"train": {"chunk_size": 1' + "0" * 400 + '}}') or ["doctor", str(t / "h")], "chunk_size"),
    ("doctor-flag-nan", lambda r, t: put(t / "m.jsonl", '{"ppo/clip_fraction": 0.1}\n') or ["doctor", str(t / "m.jsonl"), "--sigma-min", "nan"], "--sigma-min"),
    ("doctor-yaml", lambda r, t: (t / "w" / "files").mkdir(parents=True) or put(t / "w" / "files" / "wandb-summary.json", "{}") or put(t / "w" / "files" / "config.yaml", "a: [\n") or ["doctor", str(t / "w")], "config.yaml"),
]


NEEDS_LEROBOT = {"parse-tiny"}
"""cases whose command imports LeRobot before it parses its arguments"""


@pytest.mark.parametrize("name,build,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input(assets, tmp_path, capsys, name, build, needle):
    if name in NEEDS_LEROBOT:  # without it the command stops at its import (one error line naming the extra)
        pytest.importorskip("lerobot", reason="needs LeRobot (the smolvla extra)")
    argv = build(assets, tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (name, err)
    lines = [ln for ln in err.splitlines() if not ln.startswith("[reinflow")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and needle in lines[0], lines[0]


def test_table_is_large_enough_and_covers_every_command(assets, tmp_path):
    from reinflow.cli import COMMANDS
    assert len(CASES) >= 60
    commands = set()
    for i, (_, build, _) in enumerate(CASES):
        (tmp_path / str(i)).mkdir()
        commands.add(build(assets, tmp_path / str(i))[0])
    assert set(COMMANDS) <= commands
