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
    ("resume-no-run", lambda r, t: ["train", "--resume", "--out", str(t / "none")], "config.json not found"),
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
    ("doctor-yaml", lambda r, t: (t / "w" / "files").mkdir(parents=True) or put(t / "w" / "files" / "wandb-summary.json", "{}") or put(t / "w" / "files" / "config.yaml", "a: [\n") or ["doctor", str(t / "w")], "config.yaml"),
]


@pytest.mark.parametrize("name,build,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input(assets, tmp_path, capsys, name, build, needle):
    argv = build(assets, tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (name, err)
    lines = [ln for ln in err.splitlines() if not ln.startswith("[reinflow")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and needle in lines[0], lines[0]


def test_table_is_large_enough():
    assert len(CASES) >= 30
