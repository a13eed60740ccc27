"""A run folder, checkpoint, dataset or config file from someone else can do nothing; two processes
cannot share a run; every input is bounded (issue 22). Each case: one `error:` line and exit 2 (or it
works), and nothing outside the run changes."""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from reinflow.cli import main
from reinflow.report.logger import read_metrics
from reinflow.rl.runfolder import RunFolder

TRAIN = ["train", "--env", "Pendulum-v1", "--chunk-size", "4", "--parallel-envs", "1", "--rollout-steps", "2",
         "--hidden", "16", "--no-progress", "--eval-episodes", "1", "--eval-every", "0"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
EVIL = "import pathlib\npathlib.Path(__file__).with_name('pwned').write_text('ran')\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("untrusted") / "run"
    assert main([*TRAIN, "--iterations", "2", "--out", str(out)]) == 0
    return out


@pytest.fixture
def evil(user_module):
    """An importable module whose import leaves a file: a stored id naming it must never run it."""
    return user_module("evilmod", EVIL).with_name("pwned")


def copy(run, tmp_path, name="run"):
    dst = tmp_path / name
    shutil.copytree(run, dst)
    return dst


def snapshot(folder):
    return {p.relative_to(folder): (p.is_symlink(), p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(folder.rglob("*"))}


def edit_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def ck_of(run):
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()


def set_env_everywhere(run, env_id):
    for cfg in [run / "config.json", *run.glob("checkpoints/iter_*/config.json")]:
        edit_json(cfg, lambda c: c["train"].update(env=env_id))


# --- 1. nothing from a file imports a module or touches a path outside the folder -------------------

def test_stored_env_module_is_never_imported(run, tmp_path, evil, refused):
    d = copy(run, tmp_path)
    set_env_everywhere(d, "evilmod:Pendulum-v1")
    before = snapshot(d)
    refused(["eval", str(d), "--episodes", "1"], "never imports code named by a file")
    refused(["train", "--resume", "--out", str(d), "--iterations", "3"], "give --env evilmod:Pendulum-v1")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("env: evilmod:Pendulum-v1\n")
    no_env = [a for a in TRAIN if a not in ("--env", "Pendulum-v1")]
    refused([*no_env, "--config", str(cfg), "--out", str(tmp_path / "new")], "names a module to import")
    kw = json.dumps({"base": "evilmod:Pendulum-v1"})
    refused([*TRAIN, "--env", "reinflow/Faulty-v0", "--env-kwargs", kw, "--out", str(tmp_path / "f")],
              "names a module to import")
    assert not evil.exists() and "evilmod" not in sys.modules and snapshot(d) == before
    from reinflow.envs.factory import check_env_id
    check_env_id("evilmod:Pendulum-v1")           # typed on the command line: imported, as documented
    assert evil.exists()


@pytest.mark.parametrize("link", ["config.json", "checkpoints", "tensorboard"])
def test_symlinks_inside_a_run_are_refused(run, tmp_path, refused, link):
    d = copy(run, tmp_path)
    target = tmp_path / "elsewhere"
    src = d / link
    if src.is_dir():
        shutil.move(src, target)
    else:
        target.write_bytes(src.read_bytes()) if src.exists() else target.mkdir()
        src.unlink(missing_ok=True)
    src.symlink_to(target)
    outside = snapshot(tmp_path / "elsewhere") if target.is_dir() else target.read_bytes()
    refused(["train", "--resume", "--out", str(d), "--iterations", "4"], "is a symlink")
    assert (snapshot(target) if target.is_dir() else target.read_bytes()) == outside


def test_overwrite_moves_only_what_reinflow_made(run, tmp_path, refused, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "thesis.tex").write_text("years of work")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {data}\noverwrite: true\n")
    refused([*TRAIN, "--config", str(cfg)], "--overwrite moves only folders reinflow wrote")
    assert (data / "thesis.tex").read_text() == "years of work" and not list(tmp_path.glob("data.old-*"))
    d = copy(run, tmp_path)
    monkeypatch.chdir(d)
    refused([*TRAIN, "--out", ".", "--overwrite"], "is the current folder")
    assert not list(tmp_path.glob("run.old-*"))


def test_eval_json_out_never_replaces_what_it_did_not_write(run, tmp_path, refused):
    d = copy(run, tmp_path)
    weights = ck_of(d) / "model.safetensors"
    before = weights.read_bytes()
    refused(["eval", str(d), "--episodes", "1", "--json-out", str(weights)], "not an earlier `reinflow eval`")
    assert weights.read_bytes() == before
    out = tmp_path / "eval.json"
    assert main(["eval", str(d), "--episodes", "1", "--json-out", str(out)]) == 0
    assert main(["eval", str(d), "--episodes", "1", "--json-out", str(out)]) == 0  # its own result: replaced
    assert json.loads(out.read_text())["episodes"] == 1


# --- 2. one process per run folder ------------------------------------------------------------------

def test_a_second_process_is_refused_and_a_killed_one_leaves_no_lock(run, tmp_path, refused):
    d = copy(run, tmp_path)
    before = snapshot(d)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with RunFolder(d), RunFolder(fresh):         # another process writing them (flock: per open file)
        refused(["train", "--resume", "--out", str(d), "--iterations", "3"], "another reinflow process")
        refused([*TRAIN, "--out", str(d), "--overwrite"], "another reinflow process")
        refused([*TRAIN, "--out", str(fresh)], "another reinflow process")
    assert snapshot(d) == before and not list(tmp_path.glob("run.old-*")) and not any(fresh.iterdir())
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from reinflow.rl.runfolder import RunFolder; "
                               f"f = RunFolder({str(d)!r}); print('locked', flush=True); time.sleep(60)"],
                              env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    refused(["train", "--resume", "--out", str(d), "--iterations", "3"], "another reinflow process")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert main(["train", "--resume", "--out", str(d), "--iterations", "3", "--no-progress"]) == 0


# --- 3. every number is bounded, every reader bounds what it reads ------------------------------------

def nested_residual(policy, depth):
    for _ in range(depth):
        policy = {"type": "residual", "hidden": [8], "base": policy}
    return policy


CHECKPOINT_EDITS = [
    ("denoise-steps", lambda c: c["policy"].update(denoise_steps=1_000_000), "denoise_steps=1000000: must be <= 256"),
    ("chunk-size", lambda c: c["policy"].update(chunk_size=10**9), "chunk_size=1000000000: must be <= 1024"),
    ("mlp-size", lambda c: c["policy"].update(hidden=[65536] * 8), "an MLP policy of"),
    ("nested-residual", lambda c: c.update(policy=nested_residual(c["policy"], 500)), "nested more than 64"),
    ("residual-of-residual", lambda c: c.update(policy=nested_residual(c["policy"], 2)), "is itself a residual"),
    ("sigma-missing", lambda c: c["sampler"].pop("sigma_lo"), "sampler section lacks sigma_lo"),
    ("sigma-order", lambda c: c["sampler"].update(sigma_lo=0.5, sigma_hi=0.1), "need 0 < sigma_lo <= sigma_hi"),
    ("tied-weights", lambda c: c.update(tied_weights=[1]), "tied_weights must map"),
]


@pytest.mark.parametrize("name,edit,needle", CHECKPOINT_EDITS, ids=[c[0] for c in CHECKPOINT_EDITS])
def test_crafted_checkpoint_config(run, tmp_path, refused, name, edit, needle):
    ck = tmp_path / "ck"
    shutil.copytree(ck_of(run), ck)
    edit_json(ck / "config.json", edit)
    t0 = time.time()
    refused(["eval", str(ck), "--episodes", "1"], needle)
    assert time.time() - t0 < 30


FLAGS = [
    (["--denoise-steps", "1000000"], "denoise_steps=1000000: must be <= 256"),
    (["--parallel-envs", "100000"], "parallel_envs=100000: must be <= 1024"),
    (["--parallel-envs", "1000", "--rollout-steps", "1000"], "decisions per iteration"),
    (["--noise-basis", "100000"], "noise_basis=100000: must be <= 1024"),
    (["--lr-critic", "1e300"], "out of range"),
    (["--eval-every", str(10**12)], "out of range (|value| <= 1000000000)"),
    (["--iterations", "1000000000"], "iterations=1000000000: must be <= 100000000"),
]


@pytest.mark.parametrize("flags,needle", FLAGS, ids=[f[0][0] + "-" + f[0][1] for f in FLAGS])
def test_numeric_flags_are_bounded(tmp_path, refused, flags, needle):
    refused([*TRAIN, *flags, "--out", str(tmp_path / "r")], needle)
    assert not (tmp_path / "r").exists()


# --- 4. a refused resume changes nothing; a run killed before its first checkpoint resumes --------------

def test_optimizer_state_of_the_wrong_shape_is_refused_before_anything_is_written(run, tmp_path, refused):
    d = copy(run, tmp_path)
    for ck in (d / "checkpoints").glob("iter_*"):
        tensors = load_file(str(ck / "trainer_state.safetensors"))
        key = next(k for k in tensors if k.endswith("exp_avg") and tensors[k].dim() == 2)
        tensors[key] = torch.zeros(tensors[key].shape[0] + 1, 3)
        save_file(tensors, str(ck / "trainer_state.safetensors"))
    before = snapshot(d)
    refused(["train", "--resume", "--out", str(d), "--iterations", "4"], "has shape")
    assert snapshot(d) == before


@pytest.mark.parametrize("field,value,needle", [
    ("iteration", 10**20, "iteration=100000000000000000000"),
    ("env_steps", -1, "env_steps=-1"),
])
def test_crafted_trainer_state_counters(run, tmp_path, refused, field, value, needle):
    d = copy(run, tmp_path)
    for ck in (d / "checkpoints").glob("iter_*"):
        edit_json(ck / "trainer_state.json", lambda s: s.update({field: value}))
    before = snapshot(d)
    refused(["train", "--resume", "--out", str(d), "--iterations", "4"], needle)
    assert snapshot(d) == before


def test_noise_basis_cannot_change_on_resume(run, tmp_path, refused):
    d = copy(run, tmp_path)
    before = snapshot(d)
    refused(["train", "--resume", "--out", str(d), "--noise-basis", "2"], "noise_basis=2 but the run")
    assert snapshot(d) == before


def test_a_run_stopped_before_its_first_checkpoint_resumes_or_reruns(run, tmp_path):
    d = copy(run, tmp_path)                     # SIGINT right after config.json appeared: no checkpoint yet
    shutil.rmtree(d / "checkpoints")
    shutil.rmtree(d / "best", ignore_errors=True)
    assert main(["train", "--resume", "--out", str(d), "--no-progress"]) == 0
    assert [r["iteration"] for r in read_metrics(d / "metrics.jsonl")] == [0, 1]
    claimed = tmp_path / "claimed"              # kill -9 right after --overwrite's move: only the marker
    RunFolder(claimed).claim()
    assert main([*TRAIN, "--iterations", "1", "--out", str(claimed)]) == 0


def test_sigint_right_after_config_json_leaves_a_resumable_run(tmp_path):
    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "reinflow", *TRAIN, "--iterations", "3", "--out", str(out)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "config.json").exists():
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert "Traceback" not in err, err
    assert main(["train", "--resume", "--out", str(out), "--no-progress"]) == 0
    assert [r["iteration"] for r in read_metrics(out / "metrics.jsonl")] == [0, 1, 2]


def test_a_second_signal_stops_at_once(tmp_path):
    """The first SIGINT finishes the iteration (and here a 10 s final evaluation); the second stops now."""
    out = tmp_path / "r"
    kw = json.dumps({"base": "Pendulum-v1", "sleep_s": 0.05})
    proc = subprocess.Popen([sys.executable, "-m", "reinflow", *TRAIN, "--env", "reinflow/Faulty-v0", "--env-kwargs",
                             kw, "--iterations", "1000", "--no-tensorboard", "--out", str(out)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text()):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert time.time() - t0 < 5 and proc.returncode == 2, err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("[reinflow")]
    assert len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in err, err


def test_disk_full_at_start_is_one_line(tmp_path):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
    res = subprocess.run([sys.executable, "-m", "reinflow", *TRAIN, "--iterations", "1", "--out",
                          str(tmp_path / "r")], capture_output=True, text=True, env=ENV, timeout=300, preexec_fn=limit)
    lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith("[reinflow")]
    assert res.returncode == 2 and len(lines) == 1 and "File too large" in lines[0], res.stderr
    assert "Traceback" not in res.stderr and "Exception in thread" not in res.stderr


# --- evaluation does not depend on how episodes are batched ------------------------------------------

@pytest.mark.parametrize("stochastic", [False, True])
def test_evaluation_does_not_depend_on_parallel_envs(run, capsys, stochastic):
    results = []
    for n in (1, 2, 5):
        capsys.readouterr()
        assert main(["eval", str(run), "--episodes", "5", "--parallel-envs", str(n)]
                    + (["--stochastic"] if stochastic else [])) == 0
        results.append(json.loads(capsys.readouterr().out))
    for res in results[1:]:
        assert res["return_mean"] == pytest.approx(results[0]["return_mean"], rel=1e-6)
