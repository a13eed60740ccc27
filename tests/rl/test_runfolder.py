"""Run folders are never lost: a reused --out is refused (or moved aside with --overwrite), nothing
writes into a --policy-path, a refused resume leaves the run byte-identical and resumable, a resume
records what it changed, and a lost `latest` pointer still resumes from the newest complete checkpoint."""

import json
import shutil

import pytest

from reinflow.cli import main
from reinflow.report.logger import read_metrics
from reinflow.rl.checkpoint import resolve_checkpoint
from reinflow.rl.runfolder import check_out, claim_out

SMALL = ["--env", "Pendulum-v1", "--chunk-size", "4", "--parallel-envs", "1", "--rollout-steps", "2", "--hidden", "16",
         "--no-progress", "--no-tensorboard", "--eval-episodes", "1", "--eval-every", "0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", *SMALL, "--iterations", "2", "--out", str(out)]) == 0
    return out


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def copy(run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def test_reusing_out_is_refused_and_touches_nothing(run, capsys):
    before = snapshot(run)
    assert main(["train", *SMALL, "--iterations", "1", "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: out={run}: the folder exists and is not empty") and len(err.splitlines()) == 1
    assert "--resume" in err and "--overwrite" in err
    assert snapshot(run) == before


def test_overwrite_moves_the_old_run_aside(run, tmp_path):
    d = copy(run, tmp_path)
    before = snapshot(d)
    assert main(["train", *SMALL, "--iterations", "1", "--out", str(d), "--overwrite"]) == 0
    assert snapshot(tmp_path / "run.old-1") == before
    assert [r["iteration"] for r in read_metrics(d / "metrics.jsonl")] == [0]
    assert sorted(p.name for p in (d / "checkpoints").glob("iter_*")) == ["iter_000000"]


def test_policy_path_is_never_written(run, tmp_path):
    ck = resolve_checkpoint(run)
    before = snapshot(ck)
    assert main(["train", *SMALL, "--iterations", "1", "--policy-path", str(ck), "--out", str(ck), "--overwrite"]) == 2
    assert main(["train", *SMALL, "--iterations", "1", "--policy-path", str(ck), "--out", str(tmp_path / "new")]) == 0
    assert snapshot(ck) == before


def test_refused_resume_leaves_the_run_resumable_and_a_resume_records_its_changes(run, tmp_path, capsys):
    d = copy(run, tmp_path)
    before = snapshot(d)
    for bad, needle in ((["--env", "MountainCarContinuous-v0"], "env="), (["--chunk-size", "16"], "chunk_size=16"),
                        (["--sigma-max", "0.5"], "sigma_max=0.5"), (["--device", "gpu9"], "device='gpu9'")):
        assert main(["train", "--resume", "--out", str(d), *bad]) == 2, bad
        assert needle in capsys.readouterr().err
        assert snapshot(d) == before, bad
    assert main(["train", "--resume", "--out", str(d), "--iterations", "3", "--lr-actor", "5e-5"]) == 0
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["train"]["iterations"] == 3 and cfg["train"]["lr_actor"] == 5e-5
    assert cfg["resumes"] == [{"at_iteration": 2, "changed": {"iterations": {"from": 2, "to": 3},
                                                              "lr_actor": {"from": 3e-5, "to": 5e-5}}}]
    assert json.loads((resolve_checkpoint(d) / "config.json").read_text())["resumes"] == cfg["resumes"]
    assert [r["iteration"] for r in read_metrics(d / "metrics.jsonl")] == [0, 1, 2]


def test_resume_without_latest_uses_the_newest_complete_checkpoint(run, tmp_path):
    d = copy(run, tmp_path)
    (d / "checkpoints" / "latest").unlink()
    (d / "checkpoints" / "iter_000001" / "trainer_state.json").unlink()  # incomplete for resuming
    assert resolve_checkpoint(d).name == "iter_000001"                  # its weights still evaluate
    assert resolve_checkpoint(d, for_resume=True).name == "iter_000000"
    assert main(["train", "--resume", "--out", str(d), "--iterations", "3"]) == 0
    assert [r["iteration"] for r in read_metrics(d / "metrics.jsonl")] == [0, 1, 2]
    assert (d / "checkpoints" / "latest").read_text().strip() == "iter_000002"


def test_quickstart_refuses_a_used_out_and_overwrite_moves_it_aside(tmp_path, capsys):
    out = tmp_path / "qs"
    out.mkdir()
    report = '{"success_before": 0.3, "run_folder": "qs/train"}'  # a quickstart report (made before the marker)
    (out / "summary.json").write_text(report)
    assert main(["quickstart", "--out", str(out), "--minutes", "0.01", "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err
    check_out(out, overwrite=True)                                      # what --overwrite then does
    with claim_out(out, overwrite=True) as claimed:
        assert claimed.moved == tmp_path / "qs.old-1"
    assert (tmp_path / "qs.old-1" / "summary.json").read_text() == report
    assert [p.name for p in out.iterdir()] == [".reinflow"]             # the marker of a folder reinflow made
