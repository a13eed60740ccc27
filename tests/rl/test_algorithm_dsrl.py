"""--algorithm dsrl end to end on a small env: a frozen base, a trained noise actor that evaluation
starts from, SAC metrics (and no PPO alarms), refusals, and a resume that continues bit-identically
(replay buffer, critics, temperature, optimizers)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from reinflow.cli import main
from reinflow.policies.dsrl import DSRLFlowPolicy
from reinflow.report.logger import read_metrics
from reinflow.rl.checkpoint import load_agent, resolve_checkpoint
from reinflow.rl.health_checks import CHECK_SETS
from reinflow.rl.trainer_state import read_trainer_state

FAST = ["--env", "Pendulum-v1", "--chunk-size", "8", "--act-steps", "4", "--rollout-steps", "4",
        "--parallel-envs", "2", "--hidden", "32", "32", "--eval-episodes", "2", "--no-progress", "--no-tensorboard"]
DSRL = ["--algorithm", "dsrl", "--dsrl-warmup", "8", "--dsrl-batch-size", "8", "--dsrl-hidden", "32",
        "--dsrl-components", "2", "--reset-each-iteration", "--eval-every", "0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsrl")
    assert main(["train", *FAST, "--iterations", "1", "--out", str(root / "base")]) == 0
    common = [*FAST, *DSRL, "--policy-path", str(root / "base")]
    assert main(["train", *common, "--iterations", "3", "--out", str(root / "a")]) == 0
    assert main(["train", *common, "--iterations", "2", "--out", str(root / "b")]) == 0
    assert main(["train", "--out", str(root / "b"), "--resume", "--iterations", "3", "--no-progress"]) == 0
    return root


def test_only_the_actor_trains_and_evaluation_starts_from_its_x0(runs):
    base = load_file(str(resolve_checkpoint(runs / "base") / "model.safetensors"))
    agent, cfg, ck = load_agent(runs / "a")
    pol = agent.policy
    assert cfg["policy"]["type"] == "dsrl" and isinstance(pol, DSRLFlowPolicy) and pol.latent_dim == 2 * 1
    trained = load_file(str(ck / "model.safetensors"))
    frozen = [k for k in base if k.startswith("policy.")]
    assert frozen and all(torch.equal(trained[k.replace("policy.", "policy.base.", 1)], base[k]) for k in frozen)
    last = max((k for k in trained if k.startswith("policy.actor.net.") and k.endswith(".weight")),
               key=lambda k: int(k.split(".")[3]))
    assert trained[last].abs().sum() > 0                                  # zero at the start, trained since
    obs = pol.prepare_obs(torch.randn(5, 3).numpy())
    with torch.no_grad():
        det = agent.act(obs, deterministic=True)
        mean, _ = pol.actor.dist(pol.value_features(pol.encode(obs)))
        sto = agent.act(obs, generator=torch.Generator().manual_seed(0))
        ode = agent.act(obs, deterministic=True, x0=sto.chain[:, 0])
    x0 = pol.latent_to_x0(pol.bound * torch.tanh(mean))
    assert torch.equal(det.chain[:, 0], x0) and x0.abs().sum() > 0      # eval's x_0 is the actor's mean
    assert torch.equal(sto.chain, ode.chain) and sto.logp is None        # stochastic: a sampled x_0, the ODE after it
    assert not torch.equal(sto.chain[:, 0], x0)


def test_sac_metrics_and_health_without_ppo_alarms(runs):
    rows = read_metrics(runs / "a" / "metrics.jsonl")
    last = rows[-1]
    assert last["sac/updates"] > 0 and last["sac/buffer_size"] == 3 * 4 * 2 and last["env_steps"] == 3 * 4 * 2 * 4
    assert rows[0]["sac/warmup_fraction"] == 1.0 and last["sac/warmup_fraction"] == 0.0
    # dsrl_utd (2) gradient steps per new decision (2 envs x 4): 16 per iteration, the warmup (8) met at once
    assert [r["sac/updates"] for r in rows] == [16, 16, 16] and [r["sac/grad_steps"] for r in rows] == [16, 32, 48]
    # the iteration's worst critic loss is its largest, above the mean of its 16 steps
    assert all(r["sac/q_loss_max"] > r["sac/q_loss"] for r in rows)
    # the temperature's target is per latent dim (2 here): the per-dim entropy is the entropy over those dims
    assert all(r["sac/entropy_per_dim"] == pytest.approx(r["sac/entropy"] / 2) for r in rows)
    assert not any(k.startswith(("ppo/", "logprob/", "noise/")) for r in rows for k in r)
    health = {k for r in rows for k in r if k.startswith("health/")}
    assert health == {f"health/{c}" for c in (*CHECK_SETS["sac"], "HEALTHY")}


def test_resume_continues_bit_identically(runs):
    a, b = (load_file(str(resolve_checkpoint(runs / r) / "model.safetensors")) for r in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = (read_trainer_state(resolve_checkpoint(runs / r, for_resume=True))["algorithm"] for r in ("a", "b"))
    for k, v in sa["replay"]["data"].items():
        assert torch.equal(v, sb["replay"]["data"][k])
    assert sa["sac"]["log_alpha"] == sb["sac"]["log_alpha"] and sa["grad_steps"] == sb["grad_steps"] > 0
    assert read_metrics(runs / "a" / "metrics.jsonl")[-1]["sac/q_loss"] == \
        read_metrics(runs / "b" / "metrics.jsonl")[-1]["sac/q_loss"]


def test_refusals_name_the_field(runs, tmp_path, capsys):
    assert main(["train", *FAST, *DSRL, "--iterations", "1", "--out", str(tmp_path / "x")]) == 2
    assert "steers a pretrained policy" in capsys.readouterr().err
    assert main(["train", *FAST, *DSRL, "--policy-path", str(runs / "base"), "--nproc", "2",
                 "--out", str(tmp_path / "y")]) == 2
    assert "nproc=2: algorithm=dsrl runs in one process" in capsys.readouterr().err
    assert main(["train", "--out", str(runs / "a"), "--resume", "--dsrl-buffer-size", "50", "--no-progress"]) == 2
    assert "dsrl_buffer_size" in capsys.readouterr().err
    assert main(["train", *FAST, "--dsrl-bound", "0", "--out", str(tmp_path / "z")]) == 2
    assert "dsrl_bound=0.0: allowed range" in capsys.readouterr().err


def test_doctor_judges_a_dsrl_run_with_the_sac_checks(runs, capsys):
    assert main(["doctor", str(runs / "a"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    judged = set(CHECK_SETS["sac"]) - {n.split(":")[0] for n in out["not_judged"]}
    assert {"BUFFER_TOO_SMALL", "Q_DIVERGING", "NON_FINITE"} <= judged
    assert not {f["code"] for f in out["findings"]} & set(CHECK_SETS["ppo"]) - {"NON_FINITE", "REWARD_DECLINING"}
    assert not any(n.startswith(("CLIP_", "RATIO_", "LOGPROB_")) for n in out["not_judged"])


def test_the_latent_is_centred_at_the_fixed_x0_of_a_fixed_noise_bc_unless_told(runs):
    """dsrl_init fixed, or auto (the default: None below) with --initial-noise fixed: the untrained actor
    plays that seeded x_0; zero, or auto with sampled noise: x_0 = 0."""
    from reinflow.flow.chain import seeded_x0
    from reinflow.rl.algorithms.dsrl import DSRL
    from reinflow.rl.config import TrainConfig
    for init, noise, centred in [("auto", "fixed", True), ("auto", "sample", False), ("zero", "fixed", False),
                                 ("fixed", "sample", True), (None, "fixed", True), (None, "sample", False)]:
        agent, _, _ = load_agent(runs / "base")
        cfg = TrainConfig(env="Pendulum-v1", algorithm="dsrl", policy_path=str(runs / "base"),
                          dsrl_components=2, dsrl_hidden=[32], initial_noise=noise, initial_noise_seed=5,
                          **({} if init is None else {"dsrl_init": init}))
        pol = DSRL.prepare_agent(cfg, agent).policy
        x0 = pol.latent_to_x0(torch.zeros(1, pol.latent_dim))[0]
        assert torch.equal(x0, seeded_x0(8, pol.padded_action_dim, 5) if centred else torch.zeros_like(x0)), (init, noise)


@pytest.mark.parametrize("truncation,cut", [("bootstrap", 0.0), ("terminal", 1.0)])
def test_a_time_limit_ends_a_transition_only_under_truncation_terminal(runs, tmp_path, truncation, cut):
    """Pendulum cut every 8 env steps (2 decisions of 4 steps; it never terminates): the replay's done flag
    of a cut decision is 0 when a time limit bootstraps and 1 under --truncation terminal. Two envs add
    two rows per decision, so rows 2, 3 (decision 1) and 6, 7 (decision 3) are the cut ones. A warmup of
    16 transitions is not met by these 8: no gradient step is taken yet. The replay stores the rewards
    times --dsrl-reward-scale (0.5), the rollout's reward mean is the env's."""
    out = tmp_path / truncation
    assert main(["train", *FAST, *DSRL, "--policy-path", str(runs / "base"), "--iterations", "1",
                 "--dsrl-warmup", "16", "--env-kwargs", json.dumps({"max_episode_steps": 8}),
                 "--truncation", truncation, "--dsrl-reward-scale", "0.5", "--out", str(out)]) == 0
    replay = read_trainer_state(resolve_checkpoint(out, for_resume=True))["algorithm"]["replay"]
    assert replay["data"]["done"].tolist() == [0.0, 0.0, cut, cut, 0.0, 0.0, cut, cut]
    row = read_metrics(out / "metrics.jsonl")[0]
    assert row["sac/updates"] == 0 and row["sac/grad_steps"] == 0 and row["sac/buffer_size"] == 8
    assert float(replay["data"]["reward"].mean()) == pytest.approx(0.5 * row["rollout/reward_mean"], rel=1e-5)


def test_one_env_one_decision_is_all_warmup(runs, tmp_path):
    assert main(["train", *FAST, *DSRL, "--policy-path", str(runs / "base"), "--iterations", "1",
                 "--parallel-envs", "1", "--rollout-steps", "1", "--out", str(tmp_path / "one")]) == 0
    assert read_metrics(tmp_path / "one" / "metrics.jsonl")[0]["sac/warmup_fraction"] == 1.0


@pytest.mark.parametrize("field,value,shown", [("owed", 1.5, "owed=1.5"), ("owed", -0.25, "owed=-0.25"),
                                               ("grad_steps", -1, "grad_steps=-1")])
def test_a_resume_refuses_dsrl_step_counters_out_of_range(runs, tmp_path, refused, field, value, shown):
    """The fractional gradient step carried over is in [0, 1) and the step count an int >= 0; anything else
    in a run folder's trainer state is one error line, not a resumed run."""
    import shutil

    from reinflow.rl.trainer_state import STRUCTURE
    run = tmp_path / "a"
    shutil.copytree(runs / "a", run)
    path = resolve_checkpoint(run, for_resume=True) / STRUCTURE
    state = json.loads(path.read_text())
    state["algorithm"][field] = value
    path.write_text(json.dumps(state))
    refused(["train", "--out", str(run), "--resume", "--iterations", "4", "--no-progress"], shown)


@pytest.mark.parametrize("field, inside, outside", [
    ("dsrl_batch_size", 1, 0), ("dsrl_tau", 1.0, 1.5), ("dsrl_reward_scale", 1.5e-6, 0.5e-6),
    ("dsrl_init_alpha", 1e-6, 0.5e-6), ("dsrl_utd", 256.0, 300.0), ("dsrl_components", 0, -1)])
def test_dsrl_ranges_are_the_documented_ones(field, inside, outside):
    """The edges the --help and the refusals name (DSRLConfig.RANGES): the edge itself is accepted, past it refused
    with one line naming the field."""
    from reinflow import ConfigError
    from reinflow.rl.config import TrainConfig
    TrainConfig(algorithm="dsrl", **{field: inside})
    with pytest.raises(ConfigError, match=field):
        TrainConfig(algorithm="dsrl", **{field: outside})

