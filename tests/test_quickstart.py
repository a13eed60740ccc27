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
                 "--no-progress"]) == 0
    train = json.loads((out / "summary.json").read_text())["config"]["train"]
    assert (train["algorithm"], train["lr_actor"]) == ("chain-ppo", 3e-5)
    cfg = json.loads((out / "train" / "config.json").read_text())["train"]
    assert cfg["algorithm"] == "chain-ppo"
