"""A tiny `reinflow quickstart` (seconds of budget, a handful of episodes) writes every report file."""

import json

from reinflow.cli import main
from reinflow.report.plots import PANELS
from reinflow.rl.config import TrainConfig


def test_quickstart_writes_every_report_file(tmp_path, capsys):
    out = tmp_path / "qs"
    rc = main(["quickstart", "--out", str(out), "--minutes", "2", "--seed", "1", "--demo-episodes", "3",
               "--bc-episodes", "3", "--bc-steps", "20", "--eval-episodes", "4", "--train-eval-episodes", "2",
               "--chunk-size", "8", "--parallel-envs", "2", "--rollout-steps", "2", "--iterations", "2",
               "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"report: {out}/summary.md" in printed
    s = json.loads((out / "summary.json").read_text())
    for key in ("success_before", "success_after", "eval_episodes_before", "eval_episodes_after", "env_steps",
                "wall_time_s", "config", "clip_fraction_max"):
        assert key in s, key
    assert s["eval_episodes_before"] == s["eval_episodes_after"] == 4
    assert s["env_steps"] > 0 and s["iterations"] >= 1
    assert s["config"]["train"]["act_steps"] == 8
    assert s["task"] == "pick-lift"                                      # the default task: the grasp
    assert s["iterations"] == s["iterations_planned"] == 2
    default = TrainConfig(policy_path=s["config"]["train"]["policy_path"]).resolved()  # no per-task preset
    assert s["config"]["train"]["algorithm"] == default.algorithm == "residual-ppo"  # from a BC policy
    for key in ("noise_basis", "logprob_reduction", "sigma_min", "sigma_max", "lr_actor", "clip_epsilon",
                "target_kl", "update_epochs", "minibatch_size", "lr_schedule"):
        assert s["config"]["train"][key] == getattr(default, key), key
    md = (out / "summary.md").read_text()
    assert md.startswith("# reinflow quickstart") and "cut the run" not in md and not s["stopped_by_minutes"]
    assert "* algorithm: residual-ppo (--algorithm auto: the measured best per minute" in md  # which, and why
    from reinflow.quickstart_report import markdown           # a run --minutes stopped says so
    cut = markdown({**s, "iterations": 1, "stopped_by_minutes": True}, TrainConfig(**s["config"]["train"]))
    assert "1 of 2 planned PPO iterations (**--minutes cut the run**)" in cut
    for name, *_ in PANELS:
        assert (out / "plots" / name).stat().st_size > 1000, name


def test_quickstart_algorithm_flag_reaches_the_run(tmp_path):
    out = tmp_path / "qs_chain"
    assert main(["quickstart", "--out", str(out), "--minutes", "2", "--demo-episodes", "2", "--bc-episodes", "2",
                 "--bc-steps", "5", "--eval-episodes", "2", "--train-eval-episodes", "1", "--chunk-size", "8",
                 "--parallel-envs", "2", "--rollout-steps", "1", "--iterations", "1", "--algorithm", "chain-ppo",
                 "--precision", "bf16", "--no-progress"]) == 0
    train = json.loads((out / "summary.json").read_text())["config"]["train"]
    assert (train["algorithm"], train["lr_actor"], train["precision"]) == ("chain-ppo", 3e-5, "bf16")
    cfg = json.loads((out / "train" / "config.json").read_text())["train"]
    assert (cfg["algorithm"], cfg["precision"]) == ("chain-ppo", "bf16")
    assert "precision bf16" in (out / "summary.md").read_text()
    assert "* algorithm: chain-ppo (asked with --algorithm)" in (out / "summary.md").read_text()


def test_quickstart_dsrl_runs_sac_within_the_task_env_step_budget(tmp_path):
    from reinflow.quickstart import KINDS, QuickstartConfig, make_plan
    from reinflow.quickstart_policies import MLP_TASKS, TASKS
    plan = make_plan(QuickstartConfig(algorithm="dsrl"), KINDS["mlp"])   # pick-lift: 50 x 10 x 8 x 50 = 200k
    assert (plan.iterations, plan.minutes) == (50, 30.0)
    assert make_plan(QuickstartConfig(), KINDS["mlp"]).iterations == 300  # PPO: its own count
    for task, env_id in TASKS.items():
        budget = MLP_TASKS[env_id].dsrl_env_steps
        for act, envs in ((50, None), (25, 4)):
            cfg = QuickstartConfig(task=task, algorithm="dsrl", act_steps=act, parallel_envs=envs)
            its, width = make_plan(cfg, KINDS["mlp"]).iterations, (envs or 10) * 8 * act
            assert its * width <= budget < (its + 1) * width
    out = tmp_path / "qs_dsrl"
    assert main(["quickstart", "--out", str(out), "--minutes", "2", "--demo-episodes", "2", "--bc-episodes", "2",
                 "--bc-steps", "5", "--eval-episodes", "2", "--train-eval-episodes", "1", "--chunk-size", "8",
                 "--parallel-envs", "2", "--rollout-steps", "1", "--iterations", "1", "--algorithm", "dsrl",
                 "--no-progress"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["train"]["algorithm"] == "dsrl" and s["config"]["train"]["lr_actor"] == 3e-4
    md = (out / "summary.md").read_text()
    assert "recipe: algorithm dsrl, SAC over x_0's 8 x 6 DCT coefficients" in md and "ODE from the actor's x_0" in md
    assert "centred at x_0 = 0" in md                           # the MLP BC samples x_0: dsrl_init auto -> zero
    assert json.loads((out / "train" / "best" / "config.json").read_text())["policy"]["x0_seed"] is None
    assert json.loads((out / "train" / "best" / "config.json").read_text())["policy"]["type"] == "dsrl"


def test_smolvla_report_notes_without_ppo_ratios():
    from reinflow.quickstart_policies import KINDS
    s = {"dataset": {"path": "d", "episodes": 4, "steps": 80}, "pre_update_ratio_max_dev": None,
         "bc": {"loss_first": 1.0, "loss_last": 0.5, "lerobot_folder": "bc/lerobot"}, "context_reused": 0.0,
         "rollout_s_mean": 1.0, "update_s_mean": 2.0}
    notes = "\n".join(KINDS["smolvla"].notes(s))              # a dsrl run logs no PPO ratio
    assert "no PPO ratio" in notes and "abs(ratio - 1)" not in notes
    assert "abs(ratio - 1): 0.002" in "\n".join(KINDS["smolvla"].notes({**s, "pre_update_ratio_max_dev": 0.002}))


def test_heldout_episodes_and_its_old_name(capsys):
    """``--heldout-episodes`` counts the episodes before and after; ``--eval-episodes`` (train's periodic
    evaluation) still works here as its deprecated alias, with a one-line note."""
    from reinflow.cli_args import tyro_cli
    from reinflow.quickstart import QuickstartConfig
    for flag in ("--heldout-episodes", "--eval-episodes"):
        cfg = tyro_cli(QuickstartConfig, [flag, "7"], "reinflow quickstart")
        assert (cfg.heldout_episodes, cfg.train_eval_episodes) == (7, 20)
    assert main(["quickstart", "--eval-episodes", "0"]) == 2   # refused before anything is written
    err = capsys.readouterr().err
    assert "--eval-episodes is now --heldout-episodes" in err and "heldout_episodes=0: must be >= 1" in err


def test_quickstart_declares_no_copy_of_a_train_field():
    """A field both commands have is SharedFields' (declared once), or the quickstart's own override
    (another type or default: None = the per-env setting); the shared ones reach the run unchanged."""
    from dataclasses import MISSING, fields

    from reinflow.quickstart import HANDED_TO_THE_RUN, KINDS, QuickstartConfig, run_fields
    from reinflow.quickstart_policies import MLP_TASKS, TASKS
    from reinflow.rl.config import SharedFields
    train = {f.name: f for f in fields(TrainConfig)}
    shared = {f.name for f in fields(SharedFields)}
    for f in fields(QuickstartConfig):
        if f.name in train and f.name not in shared:
            t = train[f.name]
            assert (f.type, f.default) != (t.type, t.default if t.default is not MISSING else t.default_factory()), f.name
    cfg = QuickstartConfig(seed=3, precision="bf16", algorithm="chain-ppo", parallel_envs=4, progress=False)
    handed = run_fields(cfg, KINDS["mlp"], MLP_TASKS[TASKS["reach"]])
    assert {k: handed[k] for k in HANDED_TO_THE_RUN if k in handed} == \
        dict(seed=3, precision="bf16", algorithm="chain-ppo", parallel_envs=4, progress=False)
    assert "algorithm" not in run_fields(QuickstartConfig(), KINDS["mlp"], MLP_TASKS[TASKS["reach"]])  # auto: the run's


def test_the_so101_quickstart_runs_the_narrow_noise_recipe_it_was_measured_with():
    """docs/so101.md: 91 / 90 / 92 % came from `--preset narrow-noise`; the plain command runs the same
    fields (sigma in [0.08, 0.16]); other tasks keep the default bounds."""
    from reinflow.quickstart import KINDS, QuickstartConfig, run_fields
    from reinflow.quickstart_policies import MLP_TASKS
    from reinflow.rl.presets import PRESETS
    so101 = MLP_TASKS["lerobot_env_so101/SO101PickPlace-v0"]
    plain = run_fields(QuickstartConfig(), KINDS["mlp"], so101)
    assert plain == run_fields(QuickstartConfig(preset="narrow-noise"), KINDS["mlp"], so101)
    assert (plain["sigma_min"], plain["sigma_max"]) == (PRESETS["narrow-noise"]["sigma_min"],
                                                        PRESETS["narrow-noise"]["sigma_max"]) == (0.08, 0.16)
    assert "sigma_min" not in run_fields(QuickstartConfig(), KINDS["mlp"], MLP_TASKS["reinflow/ArmPush-v0"])


def test_act_steps_beyond_the_per_env_chunk_is_refused_before_any_write(tmp_path, capsys):
    """The rule is TrainConfig's, checked when the quickstart builds its run's config: before the report
    folder is claimed or a demo recorded (pick-lift's chunk is 50)."""
    assert main(["quickstart", "--act-steps", "80", "--out", str(tmp_path / "qs")]) == 2
    assert "act_steps=80: must be <= chunk_size=50" in capsys.readouterr().err
    assert not (tmp_path / "qs").exists()


def test_smolvla_reach_centres_dsrl_at_zero_and_the_so101_camera_at_the_bc_draw():
    """docs/benchmarks.md §5: tiny SmolVLA reach steers better around x_0 = 0 (its quickstart asks for zero),
    the SO-101 camera BC around the fixed draw it is measured at (the default, auto)."""
    from reinflow.quickstart import KINDS, QuickstartConfig, run_fields
    from reinflow.quickstart_policies import SMOLVLA_TASKS
    from reinflow.rl.algorithms.dsrl import DSRL
    from reinflow.rl.config import TrainConfig
    keep = ("dsrl_init", "initial_noise", "initial_noise_seed")
    centre = {}
    for env in ("reinflow/ArmReach-v0", "lerobot_env_so101/SO101PickPlace-v0", "reinflow/ArmPickLift-v0"):
        fields = run_fields(QuickstartConfig(policy="smolvla", algorithm="dsrl", seed=3), KINDS["smolvla"], SMOLVLA_TASKS[env])
        cfg = TrainConfig(env=env, algorithm="dsrl", policy_path="BC", **{k: v for k, v in fields.items() if k in keep})
        centre[env] = DSRL.x0_seed(cfg)
    assert centre == {"reinflow/ArmReach-v0": None, "lerobot_env_so101/SO101PickPlace-v0": 3, "reinflow/ArmPickLift-v0": 3}
