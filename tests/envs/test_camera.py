"""Camera observations for any MuJoCo env a user brings (``{"cameras": [...]}`` in env kwargs,
``envs/camera.py``), and no multisampling in reinflow's renderers unless asked (issue 27)."""

from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from reinflow.envs.factory import build_env, make_env
from reinflow.envs.frames import frame_source


def test_hopper_track_camera_renders_on_read_from_a_copy():
    env = build_env("Hopper-v5", {"cameras": ["track"], "image_size": 48})
    plain = gym.make("Hopper-v5")
    obs, _ = env.reset(seed=0)
    ref, _ = plain.reset(seed=0)
    assert set(obs) == {"state", "track"} and obs["track"].shape == (48, 48, 3)
    np.testing.assert_allclose(obs["state"], ref.astype(np.float32))  # the env's own observation
    act = np.full(3, 0.8, np.float32)
    for _ in range(20):
        obs = env.step(act)[0]
    first = env.reset(seed=0)[0]["track"]
    assert np.abs(first.astype(int) - obs["track"].astype(int)).sum() > 0  # the hopper moved in the picture
    sim = env.unwrapped
    assert sim.model.vis.quality.offsamples == plain.unwrapped.model.vis.quality.offsamples  # the user's untouched
    assert env.get_wrapper_attr("_model").vis.quality.offsamples == 0
    env.close(), plain.close()


def test_a_camera_added_to_reacher_and_chunks_defer_frames(tmp_path):
    src = Path(gym.envs.mujoco.__file__).parent / "assets" / "reacher.xml"
    xml = src.read_text().replace("<worldbody>", '<worldbody><camera name="above" pos="0 0 0.8" quat="1 0 0 0"/>', 1)
    (tmp_path / "reacher_cam.xml").write_text(xml)
    kw = {"xml_file": str(tmp_path / "reacher_cam.xml"), "cameras": ["above"], "image_size": 32}
    env = make_env("Reacher-v5", act_steps=5, env_kwargs=kw)
    assert isinstance(frame_source(env.env), gym.Wrapper)  # ChunkWrapper finds it: one frame per chunk
    obs, _ = env.reset(seed=0)
    assert obs["above"].shape == (32, 32, 3) and obs["state"].shape == (10,)
    obs = env.step(np.zeros((5, 2), np.float32))[0]
    assert obs["above"].shape == (32, 32, 3) and obs["above"].any()
    env.close()


@pytest.mark.parametrize("env_id, kwargs, needle", [
    ("Hopper-v5", '{"cameras": ["nope"]}', "cameras=['nope']: allowed a list of the model's cameras: track"),
    ("Hopper-v5", '{"cameras": ["track"], "image_size": 0}', "image_size=0: allowed an integer or [H, W]"),
    ("Pendulum-v1", '{"cameras": ["x"]}', "has no MuJoCo model and data"),
])
def test_bad_camera_kwargs_are_one_line(refused, tmp_path, env_id, kwargs, needle):
    refused(["train", "--env", env_id, "--env-kwargs", kwargs, "--iterations", "1", "--out", str(tmp_path / "r")],
            needle)


def test_renderer_has_no_multisampling_unless_asked(monkeypatch):
    from reinflow.envs.arm.render import CameraRenderer
    xml = "<mujoco><visual><quality offsamples='8'/></visual><worldbody><camera name='c'/></worldbody></mujoco>"
    model = mujoco.MjModel.from_xml_string(xml)
    CameraRenderer(model, 16, 16).close()
    assert model.vis.quality.offsamples == 0
    model = mujoco.MjModel.from_xml_string(xml)
    monkeypatch.setenv("REINFLOW_MULTISAMPLE", "1")
    CameraRenderer(model, 16, 16).close()
    assert model.vis.quality.offsamples == 8


def test_demos_record_a_user_envs_cameras_at_their_size(tmp_path, monkeypatch):
    from reinflow.cli import main
    (tmp_path / "my_expert.py").write_text("import numpy as np\n\ndef policy(obs):\n    return np.zeros(2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    src = Path(gym.envs.mujoco.__file__).parent / "assets" / "reacher.xml"
    (tmp_path / "r.xml").write_text(src.read_text().replace("<worldbody>", '<worldbody><camera name="above" pos="0 0 0.8"/>', 1))
    kw = f'{{"xml_file": "{tmp_path / "r.xml"}", "cameras": ["above"], "image_size": 24}}'
    assert main(["demos", "--env", "Reacher-v5", "--env-kwargs", kw, "--obs-mode", "pixels_state", "--expert",
                 "my_expert:policy", "--episodes", "1", "--out", str(tmp_path / "d"), "--no-progress"]) == 0
    with np.load(tmp_path / "d" / "demos.npz") as z:
        assert z["images_above"].shape == (50, 24, 24, 3) and z["observations"].shape == (50, 10)
