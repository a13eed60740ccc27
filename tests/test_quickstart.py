"""A tiny `reinflow quickstart` (seconds of budget, a handful of episodes) writes every report file."""

import json

from reinflow.cli import main
from reinflow.report.plots import PANELS


def test_quickstart_writes_every_report_file(tmp_path, capsys):
    out = tmp_path / "qs"
    rc = main(["quickstart", "--out", str(out), "--minutes", "0.05", "--seed", "1", "--demo-episodes", "3",
               "--bc-episodes", "3", "--bc-steps", "20", "--eval-episodes", "4", "--train-eval-episodes", "2",
               "--chunk-size", "8", "--parallel-envs", "2", "--rollout-steps", "2", "--no-progress"])
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
    assert s["config"]["quickstart_overrides"]["sigma_max"] == 0.8       # reach: the arm-d300 recipe
    assert (out / "summary.md").read_text().startswith("# reinflow quickstart")
    for name, *_ in PANELS:
        assert (out / "plots" / name).stat().st_size > 1000, name


def test_precise_tasks_fine_tune_with_the_defaults_not_the_wide_noise_reach_recipe():
    from reinflow.quickstart import QUICKSTART_OVERRIDES
    from reinflow.rl.config import TrainConfig
    for task in ("push", "pick-lift"):
        cfg = TrainConfig(**QUICKSTART_OVERRIDES[task])
        assert (cfg.sigma_min, cfg.sigma_max, cfg.logprob_reduction) == (0.08, 0.16, "mean"), task
        assert cfg.lr_schedule == "constant"         # the iteration count is only known while it runs
