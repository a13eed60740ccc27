"""--keep-best: the best selection evaluation's policy lands in <out>/best and is re-measured on
held-out episodes; a resumed run keeps its earlier best."""

import json

import pytest

from reinflow.cli import main
from reinflow.report.logger import read_metrics
from reinflow.rl.checkpoint import load_agent
from reinflow.envs.factory import make_vector_env
from reinflow.rl.config import TrainConfig
from reinflow.rl.keep_best import BestKeeper, Evaluator, heldout_seed, selection_seed

ARM = ["--env", "reinflow/ArmReach-v0", "--chunk-size", "10", "--parallel-envs", "2", "--rollout-steps", "10",
       "--eval-every", "1", "--eval-episodes", "4", "--hidden", "32", "32", "--no-progress", "--no-tensorboard"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("kb") / "run"
    assert main(["train", *ARM, "--iterations", "3", "--out", str(out)]) == 0
    return out


def test_best_is_the_first_maximum_of_success_then_return(run):
    rows = [r for r in read_metrics(run / "metrics.jsonl") if r.get("eval/iteration") == r["iteration"]]
    scores = [(r["eval/success_rate"], r["eval/return_mean"]) for r in rows]
    best = json.loads((run / "best" / "config.json").read_text())["best"]
    assert (best["success_rate"], best["return_mean"]) == max(scores)
    assert best["iteration"] == rows[scores.index(max(scores))]["iteration"]  # exact ties keep the earlier policy
    assert str(selection_seed(0)) in best["chosen_by"]
    held = best["heldout"]
    assert held["seed"] == heldout_seed(0) != selection_seed(0) and held["episodes"] == 4
    assert 0.0 <= held["success_rate"] <= 1.0
    last = read_metrics(run / "metrics.jsonl")[-1]          # the last row reports all three
    assert last["eval/best_iteration"] == best["iteration"]
    assert last["eval/heldout_success_rate"] == held["success_rate"]
    agent, cfg, ck = load_agent(run / "best")                # an ordinary checkpoint folder
    assert ck.name == "best" and cfg["best"]["iteration"] == best["iteration"]


def test_offer_replaces_on_higher_success_or_equal_success_and_higher_return(run, tmp_path):
    agent = load_agent(run)[0]
    keeper = BestKeeper(tmp_path, enabled=True)
    offers = [(0.2, -50, True), (0.1, 0, False), (0.2, -50, False), (0.2, -60, False), (0.2, -40, True),
              (0.3, -90, True), (None, 0, False)]
    for it, (rate, ret, written) in enumerate(offers):
        ev = {"success_rate": rate, "return_mean": ret, "episodes": 10}
        assert keeper.offer(agent, ev, 7, it, 100 * it, {}) is written
    assert keeper.info["iteration"] == 5 and keeper.best_rate == pytest.approx(0.3)
    again = BestKeeper(tmp_path, enabled=True)              # what a resumed run reads back
    assert again.info["iteration"] == 5
    assert not again.offer(agent, {"success_rate": 0.25, "return_mean": 0, "episodes": 10}, 7, 9, 900, {})
    assert again.offer(agent, {"success_rate": 0.3, "return_mean": -80, "episodes": 10}, 7, 10, 1000, {})
    old = BestKeeper(tmp_path / "old", enabled=True)        # a best saved before returns were kept
    old.info = {"success_rate": 0.5}
    assert old.offer(agent, {"success_rate": 0.5, "return_mean": -1e9, "episodes": 10}, 7, 0, 0, {})
    assert BestKeeper(tmp_path, enabled=False).info is None   # --no-keep-best never reads an earlier best
    off = BestKeeper(tmp_path / "off", enabled=False)
    assert not off.offer(agent, {"success_rate": 1.0, "episodes": 10}, 7, 0, 0, {})
    assert not (tmp_path / "off" / "best").exists()


def test_no_keep_best_writes_no_best_folder(tmp_path, capsys):
    out = tmp_path / "nokeep"
    assert main(["train", *ARM, "--iterations", "1", "--no-keep-best", "--out", str(out)]) == 0
    assert not (out / "best").exists()
    assert "eval/heldout_success_rate" not in read_metrics(out / "metrics.jsonl")[-1]


@pytest.mark.parametrize("text", ["[1, 2]", "{", '{"best": {"success_rate": "high"}}'])
def test_a_damaged_best_folder_is_replaced_not_trusted(run, tmp_path, text):
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "config.json").write_text(text)
    keeper = BestKeeper(tmp_path, enabled=True)
    assert keeper.info is None
    assert keeper.offer(load_agent(run)[0], {"success_rate": 0.0, "episodes": 4}, 7, 0, 0, {})


def test_episode_seeds_are_the_documented_ones():
    """The module docstring, the docs and the published held-out numbers use 10_000 + seed (selection) and
    20_000 + seed (held-out): disjoint episode sets for any run of fewer than 10_000 evaluation episodes."""
    assert [selection_seed(s) for s in (0, 7)] == [10_000, 10_007]
    assert [heldout_seed(s) for s in (0, 7)] == [20_000, 20_007]


def test_each_iteration_evaluated_and_the_success_gap_logged(run):
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["eval/iteration"] for r in rows] == [0, 1, 2]                       # --eval-every 1
    for r in rows:
        assert r["rollout/success_gap"] == pytest.approx(r["eval/success_rate"] - r["rollout/success_rate"])


@pytest.mark.parametrize("every,evaluated", [(2, [0, 0, 2, 2, 4]), (0, [None, None, None, None, 4])])
def test_evaluator_evaluates_every_n_iterations_and_at_the_last(run, tmp_path, every, evaluated):
    agent = load_agent(run)[0]
    cfg = TrainConfig(env="reinflow/ArmReach-v0", eval_every=every, eval_episodes=2, keep_best=False, out=str(tmp_path))
    envs = make_vector_env(cfg.env, 2, agent.sampler.act_steps)
    try:
        ev = Evaluator(tmp_path, cfg, envs, {}, "cpu")
        outs = [ev.step(agent, it, it == 4, 0, 0.25) for it in range(5)]
    finally:
        envs.close()
    assert [o.get("eval/iteration") for o in outs] == evaluated
    for o in outs:  # the deterministic policy's success against the rollout's (0.25 here)
        assert "eval/success_rate" not in o or o["rollout/success_gap"] == pytest.approx(o["eval/success_rate"] - 0.25)
