"""Several GPUs through torchrun (issue 30, item 2), what a CPU machine can check: the backend follows
the resolved --device (not CUDA merely existing), one GPU per local rank, and the refusals name the fix."""

import pytest

from reinflow import ConfigError
from reinflow.rl.dist import backend_for, rank_device


@pytest.mark.parametrize("device,cuda,backend", [("cpu", True, "gloo"), ("cpu", False, "gloo"), ("cuda", True, "nccl"),
                                                 ("cuda:1", True, "nccl"), ("auto", True, "nccl"), ("auto", False, "gloo")])
def test_backend_follows_the_device(device, cuda, backend):
    assert backend_for(device, cuda) == backend     # --device cpu on a GPU machine: gloo, the model stays put


def test_one_gpu_per_local_rank():
    assert [rank_device("cuda", r, 4, 4) for r in range(4)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert rank_device("auto", 2, 4, 4) == "cuda:2" and rank_device("auto", 2, 4, 0) == "cpu"
    assert rank_device("cuda:1", 0, 1, 2) == "cuda:1" and rank_device("cpu", 3, 4, 8) == "cpu"
    with pytest.raises(ConfigError, match=r"device='cuda:0': with nproc=4 every rank would run on GPU 0; give --device cuda"):
        rank_device("cuda:0", 1, 4, 4)
    with pytest.raises(ConfigError, match=r"nproc=4: this machine has 2 CUDA GPU\(s\).*use --nproc 2 or fewer"):
        rank_device("cuda", 0, 4, 2)
    with pytest.raises(ConfigError, match="not a torch device"):
        backend_for("gpu", True)


def test_the_launcher_refuses_before_starting_processes(refused, tmp_path):
    # this machine has no GPU: four ranks on cuda are refused before torchrun starts anything
    refused(["train", "--env", "Pendulum-v1", "--nproc", "4", "--device", "cuda", "--out", str(tmp_path / "x")],
            "nproc=4: this machine has 0 CUDA GPU(s)")
    refused(["train", "--env", "Pendulum-v1", "--nproc", "4", "--device", "cuda:0", "--out", str(tmp_path / "x")],
            "every rank would run on GPU 0")
    refused(["train", "--env", "Pendulum-v1", "--dist-timeout-min", "0.5", "--out", str(tmp_path / "x")],
            "dist_timeout_min=0.5: allowed range [1, 10080] minutes")
    assert not (tmp_path / "x").exists()
