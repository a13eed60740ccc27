"""Frames only when read (envs/frames.py): a chunked rollout renders the cameras once per chunk and
returns bit for bit what rendering every step returned; anything unknown in between falls back."""

import importlib.util

import gymnasium as gym
import numpy as np
import pytest

import reinflow.envs  # noqa: F401  (registers the arm ids)
from reinflow.envs.arm.render import CameraRenderer
from reinflow.envs.chunk import ChunkWrapper, NonFiniteError
from reinflow.envs.frames import frame_source

ENV, CHUNK, LIMIT = "reinflow/ArmReach-v0", 10, 25  # the episode ends 5 steps into its third chunk
KW = {"obs_mode": "pixels_state", "image_size": (16, 20), "max_episode_steps": LIMIT}


@pytest.fixture
def renders(monkeypatch):
    """Counts real camera renders (the renderer itself runs unchanged)."""
    count = {"n": 0}
    real = CameraRenderer.render

    def counted(self, data, camera):
        count["n"] += 1
        return real(self, data, camera)

    monkeypatch.setattr(CameraRenderer, "render", counted)
    return count


def _arm():
    return gym.make(ENV, **KW)


def _chunks(rng, n, dim=6):
    return [rng.uniform(-1.2, 1.2, (CHUNK, dim)).astype(np.float32) for _ in range(n)]


def _reference(chunks, make=_arm):
    """Today's semantics: the raw env stepped one step at a time, rendering every step; the
    observation after each chunk's last executed step (or the episode's last step)."""
    env = make()
    obs, _ = env.reset(seed=3)
    out = [obs]
    for chunk in chunks:
        total = 0.0
        for a in chunk:
            obs, r, term, trunc, _ = env.step(np.clip(a, -1, 1))
            total += r
            if term or trunc:
                break
        out.append((obs, total, term, trunc))
        if term or trunc:
            out.append(env.reset()[0])
    env.close()
    return out


def _chunked(env, chunks):
    obs, _ = env.reset(seed=3)
    out = [obs]
    for chunk in chunks:
        obs, r, term, trunc, _ = env.step(chunk)
        out.append((obs, r, term, trunc))
        if term or trunc:
            out.append(env.reset()[0])
    env.close()
    return out


def _assert_same(a, b, keys=("state", "top", "wrist")):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        ox, oy = (x, y) if isinstance(x, dict) else (x[0], y[0])
        assert list(ox) == list(oy) == list(keys)
        for key in ox:
            np.testing.assert_array_equal(ox[key], oy[key])     # images bit for bit
        if not isinstance(x, dict):
            assert x[1:] == pytest.approx(y[1:], abs=1e-12)     # reward, terminated, truncated


def test_chunked_rollout_renders_once_per_chunk_and_matches_every_step_rendering(renders):
    chunks = _chunks(np.random.default_rng(0), 4)  # 10 + 10 + 5 (ends: truncated) | reset + 10
    ref = _reference(chunks)
    assert ref[3][3] and not ref[3][2]                           # the episode ends mid-chunk
    renders["n"] = 0
    env = ChunkWrapper(_arm(), CHUNK)
    assert frame_source(env.env) is None                          # env checker: reads the first step
    got = _chunked(env, chunks)
    _assert_same(got, ref)
    # resets 2, first chunk (checker) 10 steps, then one observation per chunk: 3 -> 15 obs x 2 cameras
    assert renders["n"] == 2 * (2 + CHUNK + 3)


def test_a_wrapper_that_may_touch_observations_means_every_step_renders(renders):
    chunks = _chunks(np.random.default_rng(1), 2)
    ref = _reference(chunks)
    renders["n"] = 0
    env = ChunkWrapper(gym.Wrapper(_arm()), CHUNK)   # unknown wrapper: no deferral
    _assert_same(_chunked(env, chunks), ref)
    assert frame_source(env.env) is None and renders["n"] == 2 * (1 + 2 * CHUNK)


def test_the_env_is_never_left_deferring():
    env = ChunkWrapper(_arm(), CHUNK)
    env.reset(seed=0)
    env.step(np.zeros((CHUNK, 6)))
    src = frame_source(env.env)
    assert src is env.unwrapped and not src.defer_frames
    with pytest.raises(NonFiniteError):
        env.step(np.full((CHUNK, 6), np.nan))                     # raises before any step
    assert not src.defer_frames
    obs, *_ = env.unwrapped.step(np.zeros(6))                     # stepped alone: full observation
    assert set(obs) == {"state", "top", "wrist"}
    env.close()


@pytest.mark.skipif(importlib.util.find_spec("metaworld") is None, reason='needs pip install -e ".[metaworld]"')
def test_metaworld_cameras_render_once_per_chunk_and_match(renders):
    from reinflow.envs.factory import build_env
    from reinflow.envs.metaworld import CameraObservation

    def make():
        return build_env("metaworld:Meta-World/MT1", {"env_name": "reach-v3", "obs_mode": "pixels_state",
                                                      "image_size": [16, 16], "max_episode_steps": 15})
    chunks = _chunks(np.random.default_rng(2), 3, dim=4)   # 10 + 5 (ends: truncated) | reset + 10
    ref = _reference(chunks, make)
    assert ref[2][3]                                        # the episode ends mid-chunk
    renders["n"] = 0
    env = ChunkWrapper(make(), CHUNK)
    assert isinstance(frame_source(env.env), CameraObservation)
    _assert_same(_chunked(env, chunks), ref, ("state", "corner", "gripperPOV"))
    assert renders["n"] == 2 * (2 + 3)                      # 2 resets + 3 chunk ends, 2 cameras
