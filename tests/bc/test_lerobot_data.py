"""LeRobot datasets in and out (real LeRobotDataset, v3.0), and SmolVLA BC through LeRobot's own loss
into a folder `reinflow train --policy smolvla --policy-path` fine-tunes. Tiny data, offline, CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("lerobot")

from reinflow.cli import main  # noqa: E402

ENV = "reinflow/ArmReach-v0"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("lr")
    common = ["--env", ENV, "--episodes", "2", "--obs-mode", "pixels_state", "--image-size", "32", "32",
              "--no-progress"]
    assert main(["demos", *common, "--out", str(root / "npz")]) == 0
    assert main(["demos", *common, "--format", "lerobot", "--out", str(root / "lerobot")]) == 0
    return root


def test_dataset_loads_in_lerobot_and_round_trips(recorded):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from reinflow.bc.lerobot_data import load_lerobot_demos
    from reinflow.envs.demos import load_demos
    ds = LeRobotDataset("reinflow/ArmReach-v0", root=recorded / "lerobot")   # LeRobot's own reader, offline
    assert ds.fps == 20 and ds.num_episodes == 2
    item = ds[0]
    assert item["observation.images.top"].shape == (3, 32, 32) and item["action"].shape == (6,)
    assert item["task"] == "move the gripper to the green target"
    npz, back = load_demos(recorded / "npz"), load_lerobot_demos(recorded / "lerobot")
    assert len(ds) == npz.num_steps == back.num_steps
    assert back.env_id == ENV and back.instruction == npz.instruction
    for e in range(2):  # the same seeds: the same episodes, bit for bit (PNG is lossless)
        np.testing.assert_array_equal(back.observations[e], npz.observations[e])
        np.testing.assert_array_equal(back.actions[e], npz.actions[e])
        for cam in ("top", "wrist"):
            np.testing.assert_array_equal(back.images[cam][e], npz.images[cam][e])


def test_user_dataset_without_state_is_a_clear_error(recorded, tmp_path):
    import shutil

    from reinflow import ConfigError
    from reinflow.bc.lerobot_data import load_lerobot_demos
    bad = tmp_path / "bad"
    shutil.copytree(recorded / "lerobot", bad)
    info = json.loads((bad / "meta" / "info.json").read_text())
    info["features"].pop("observation.state")
    (bad / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="observation.state"):
        load_lerobot_demos(bad)


def test_mlp_pretrain_reads_a_lerobot_dataset(recorded, tmp_path):
    assert main(["pretrain", "--demos", str(recorded / "lerobot"), "--out", str(tmp_path / "mlp"), "--steps", "5",
                 "--batch-size", "8", "--chunk-size", "8", "--no-progress"]) == 0
    cfg = json.loads((tmp_path / "mlp" / "config.json").read_text())
    assert cfg["train"]["env"] == ENV and cfg["policy"]["obs_dim"] > 0


def test_smolvla_bc_then_reinflow_train(recorded, tmp_path):
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    from reinflow.policies.smolvla.tiny import write_tiny_vlm
    from reinflow.report.logger import read_metrics
    vlm = write_tiny_vlm(tmp_path / "vlm")
    bc = tmp_path / "bc"
    assert main(["pretrain", "--policy", "smolvla", "--vlm-path", str(vlm), "--demos", str(recorded / "lerobot"),
                 "--out", str(bc), "--steps", "40", "--batch-size", "8", "--lr", "3e-3", "--no-progress"]) == 0
    summary = json.loads((bc / "bc_summary.json").read_text())
    assert summary["loss_last"] < summary["loss_first"]            # LeRobot's flow-matching loss went down
    loaded = SmolVLAPolicy.from_pretrained(str(bc / "lerobot"))    # a plain LeRobot policy folder
    assert loaded.config.chunk_size == 50
    pre = json.loads((bc / "lerobot" / "policy_preprocessor.json").read_text())
    assert any("normalizer" in s.get("registry_name", "") for s in pre["steps"])
    # reinflow eval takes the BC folder as it is (LeRobot's files, no reinflow sampler): the quickstart's sampler
    assert main(["eval", str(bc), "--episodes", "2"]) == 2                   # LeRobot's folder names no env
    res_file = tmp_path / "bc_eval.json"
    assert main(["eval", str(bc), "--env", ENV, "--env-kwargs", '{"image_size": [32, 32]}', "--episodes", "2",
                 "--json-out", str(res_file)]) == 0
    res = json.loads(res_file.read_text())
    assert res["episodes"] == 2 and 0.0 <= res["success_rate"] <= 1.0 and res["x0"] == "fixed, seed 0"
    assert res["checkpoint"] == str(bc / "lerobot") and res["env_kwargs"]["obs_mode"] == "pixels_state"
    out = tmp_path / "run"
    assert main(["train", "--env", ENV, "--env-kwargs", '{"image_size": [32, 32]}', "--policy", "smolvla",
                 "--policy-path", str(bc), "--parallel-envs", "2", "--iterations", "1", "--rollout-steps", "2",
                 "--minibatch-size", "2", "--update-epochs", "1", "--eval-episodes", "1", "--no-progress",
                 "--no-tensorboard", "--out", str(out)]) == 0
    row = read_metrics(out / "metrics.jsonl")[0]
    assert row["ppo/pre_update_ratio_max_dev"] == 0.0 and row["ppo/context_reused"] == 1.0


def test_bc_frames_keep_uint8_images_and_give_lerobots_floats_back(recorded):
    """SmolVLA BC holds every frame in memory: the images as uint8, read a few frames at a time, and
    turned back into exactly the float [0, 1] LeRobot's own dataset item has, with every other field."""
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from reinflow.bc.smolvla_bc import float_images, load_chunked
    ds = LeRobotDataset(ENV, root=recorded / "lerobot", delta_timestamps={"action": [i / 20 for i in range(4)]})
    data = load_chunked(recorded / "lerobot", 20, 4, None, read_batch=3)   # batches of 3 concatenated
    assert data["observation.images.top"].dtype == torch.uint8 and len(data["task"]) == len(ds)
    back = float_images(data)
    for i in (0, 1, len(ds) - 1):
        item = ds[i]
        for k in ("observation.images.top", "observation.images.wrist", "observation.state", "action", "action_is_pad"):
            assert torch.equal(back[k][i], item[k]), k
        assert data["task"][i] == item["task"]
    assert back["observation.state"] is data["observation.state"]   # only the images are converted


def test_image_shift_moves_each_picture_by_at_most_pad_and_repeats_its_edge():
    """BC's random-shift augmentation: every image is its edge-padded self cropped at a random offset
    (so a pixel moves by the same (dy, dx) everywhere, within +-pad), other fields untouched; pad 0 is
    the identity and draws nothing from the generator (BC without it stays bit for bit)."""
    import torch

    from reinflow.bc.smolvla_bc import shift_images
    img = torch.arange(2 * 3 * 8 * 8, dtype=torch.int64).reshape(2, 3, 8, 8).to(torch.uint8)
    batch = {"observation.images.top": img, "observation.state": torch.ones(2, 4)}
    gen = torch.Generator().manual_seed(0)
    assert shift_images(batch, 0, gen)["observation.images.top"] is img
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())
    seen = set()
    for _ in range(30):
        out = shift_images(batch, 2, gen)
        assert out["observation.state"] is batch["observation.state"]
        shot = out["observation.images.top"]
        assert shot.shape == img.shape and shot.dtype == torch.uint8
        for i in range(2):
            ref = torch.nn.functional.pad(img[i:i + 1].float(), (2, 2, 2, 2), mode="replicate")[0]
            hits = [(dy, dx) for dy in range(5) for dx in range(5)
                    if torch.equal(shot[i].float(), ref[:, dy:dy + 8, dx:dx + 8])]
            assert len(hits) == 1
            seen.add(hits[0])
    assert len(seen) >= 15  # 60 draws spread over the 5 x 5 window of offsets


def test_image_shift_is_checked(tmp_path):
    from reinflow import ConfigError
    from reinflow.bc.pretrain import PretrainConfig
    with pytest.raises(ConfigError, match="image_shift=17: allowed 0-16 pixels"):
        PretrainConfig(demos=str(tmp_path), policy="smolvla", image_shift=17)
    with pytest.raises(ConfigError, match="image_shift=2: only for --policy smolvla"):
        PretrainConfig(demos=str(tmp_path), image_shift=2)


def test_state_noise_adds_gaussian_noise_to_the_state_only():
    import torch

    from reinflow.bc.smolvla_bc import noisy_state
    batch = {"observation.state": torch.zeros(4000, 3), "observation.images.top": torch.zeros(4000, 3, 2, 2)}
    gen = torch.Generator().manual_seed(0)
    assert noisy_state(batch, 0.0, gen) is batch
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())  # 0: nothing drawn
    out = noisy_state(batch, 2.0, gen)
    assert out["observation.images.top"] is batch["observation.images.top"] and batch["observation.state"].abs().sum() == 0
    std = out["observation.state"].std(0)
    assert torch.allclose(std, torch.full((3,), 2.0), rtol=0.05) and out["observation.state"].mean().abs() < 0.1
    from reinflow import ConfigError
    from reinflow.bc.pretrain import PretrainConfig
    with pytest.raises(ConfigError, match="state_noise=11.0: allowed 0-10"):
        PretrainConfig(demos="d", policy="smolvla", state_noise=11.0)
    with pytest.raises(ConfigError, match="state_noise=1.0: only for --policy smolvla"):
        PretrainConfig(demos="d", state_noise=1.0)
