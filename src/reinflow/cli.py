"""``reinflow`` command line: quickstart | demos | pretrain | train | eval | doctor | scale | smolvla-tiny.

Every user error (ReinflowError) ends with one line ``error: ...`` and exit code 2; ``--debug``
anywhere on the command line shows the traceback instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import tyro
import yaml

from reinflow import ConfigError, ReinflowError

USAGE = """usage: reinflow COMMAND [flags]   (reinflow COMMAND --help for the flags)

commands:
  quickstart    demos -> pretrain -> eval -> ReinFlow fine-tuning -> eval -> report (arm task, or --env ID)
  demos         record expert demonstrations (arm, MetaWorld, or --expert module:callable)
  pretrain      flow-matching behaviour cloning of the MLP flow policy on demonstrations
  train         ReinFlow + PPO fine-tuning on any gymnasium env with a Box action space
  eval          evaluate a checkpoint with the sampler it was trained with
  doctor        diagnose a run folder (reinflow or W&B) or a summary JSON
  scale         rescale sigma / lr / KL / clip for a chain dimension D
  smolvla-tiny  write a tiny random SmolVLA backbone for offline tests
"""


def load_config_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(p.read_text()) if p.suffix in (".yaml", ".yml") else json.loads(p.read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--config {path}: cannot parse ({str(exc).splitlines()[0]})") from None
    if isinstance(data, dict) and "train" in data and isinstance(data["train"], dict):
        data = data["train"]  # a run folder's config.json works as a config file too
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of field names to values")
    return data


def _pop_flag(argv: list[str], name: str) -> tuple[str | None, list[str]]:
    out, val, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == name and i + 1 < len(argv):
            val, i = argv[i + 1], i + 2
            continue
        if a.startswith(name + "="):
            val = a.split("=", 1)[1]
        else:
            out.append(a)
        i += 1
    return val, out


def parse_with_defaults(cls: type, argv: list[str], prog: str, presets: Callable[[str], dict] | None = None):
    """tyro over a dataclass, with ``--config FILE`` and ``--preset NAME`` as defaults under the flags."""
    cfg_path, argv = _pop_flag(argv, "--config")
    preset, argv = _pop_flag(argv, "--preset") if presets else (None, argv)
    values: dict = {}
    if preset:
        values.update(presets(preset))
        values["preset"] = preset
    if cfg_path:
        values.update(load_config_file(cfg_path))
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"--config {cfg_path}: unknown field(s) {', '.join(unknown)}")
    try:
        default = cls(**values) if values or _all_defaults(cls) else None
    except TypeError as exc:
        raise ConfigError(f"{prog}: {exc}") from None
    return tyro.cli(cls, args=argv, prog=prog, default=default)


def _all_defaults(cls: type) -> bool:
    return all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(cls))


def cmd_train(argv: list[str]) -> int:
    from reinflow.rl.config import TrainConfig
    from reinflow.rl.presets import preset_overrides
    from reinflow.rl.trainer import train
    given = list(argv)
    if "--resume" in argv:
        argv = _resume_defaults(argv)
    cfg = parse_with_defaults(TrainConfig, argv, "reinflow train", preset_overrides)
    if cfg.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_torchrun(cfg.nproc, given)
    res = train(cfg)
    if os.environ.get("RANK", "0") != "0":
        return 0  # only rank 0 reports
    ev = res.final_eval or {}
    succ = ev.get("success_rate")
    print(f"done: {res.iterations} iterations, {res.env_steps} env steps in {res.wall_s:.1f}s "
          f"({res.wall_s / max(res.iterations, 1):.2f}s/iteration); eval return {ev.get('return_mean', float('nan')):.4g}"
          + (f", success {succ:.3f}" if succ is not None else "") + f"; run folder {res.out}")
    return 0


def _launch_torchrun(nproc: int, argv: list[str]) -> int:
    """``--nproc N``: rerun this command under PyTorch's own launcher on this machine."""
    import subprocess
    _, rest = _pop_flag(argv, "--nproc")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "reinflow", "train", *rest]
    print("launching: " + " ".join(cmd[2:]), flush=True)
    return subprocess.call(cmd)


def _resume_defaults(argv: list[str]) -> list[str]:
    """``--resume``: the run's saved config becomes the defaults, flags given now override it."""
    out, rest = _pop_flag(argv, "--out")
    if out is None:
        raise ConfigError("--resume needs --out RUN_FOLDER (the run to continue)")
    saved = Path(out) / "config.json"
    if not saved.is_file():
        raise ConfigError(f"--resume: {saved} not found; is --out the folder of an earlier run?")
    cfg_flag, rest = _pop_flag(rest, "--config")
    if cfg_flag:
        raise ConfigError("--resume and --config cannot be combined: a resumed run keeps its own config")
    return ["--config", str(saved), "--out", out, *rest]


@dataclass
class EvalConfig:
    """Evaluate a checkpoint with the sampler it was trained with."""

    checkpoint: tyro.conf.Positional[str]
    """checkpoint folder, or a run folder (its latest checkpoint)"""
    env: str | None = None
    """env id (default: the one the checkpoint was trained on)"""
    episodes: int = 20
    """evaluation episodes"""
    parallel_envs: int = 10
    """environments stepped in parallel"""
    stochastic: bool = False
    """sample with the learned noise instead of the deterministic ODE"""
    seed: int = 10_000
    """first env seed"""
    json_out: str | None = None
    """also write the result as JSON here"""

    def __post_init__(self) -> None:
        for name in ("episodes", "parallel_envs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")


def cmd_eval(argv: list[str]) -> int:
    from reinflow.envs.factory import make_vector_env, set_headless_gl
    from reinflow.rl.build import resolve_env_kwargs
    from reinflow.rl.checkpoint import load_agent
    from reinflow.rl.evaluate import run_episodes
    cfg = tyro.cli(EvalConfig, args=argv, prog="reinflow eval")
    set_headless_gl()
    agent, ck_cfg, ck = load_agent(cfg.checkpoint)
    train_cfg = ck_cfg.get("train", {})
    env_id = cfg.env or train_cfg.get("env")
    if not env_id:
        raise ConfigError(f"checkpoint {ck} does not name its env: pass --env")
    kw = resolve_env_kwargs(train_cfg.get("env_kwargs"), env_id, ck_cfg["policy"].get("type", "mlp"))
    envs = make_vector_env(env_id, min(cfg.parallel_envs, cfg.episodes), agent.sampler.act_steps, "sync", kw)
    try:
        res = run_episodes(agent, envs, cfg.episodes, cfg.seed, deterministic=not cfg.stochastic)
    finally:
        envs.close()
    res.update(checkpoint=str(ck), env=env_id, mode="stochastic" if cfg.stochastic else "deterministic")
    print(json.dumps(res, indent=2))
    if cfg.json_out:
        Path(cfg.json_out).write_text(json.dumps(res, indent=2))
    return 0


def _lazy(module: str, func: str = "cli_main") -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        import importlib
        return importlib.import_module(module).__getattribute__(func)(argv)
    return run


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": cmd_train,
    "eval": cmd_eval,
    "quickstart": _lazy("reinflow.quickstart"),
    "demos": _lazy("reinflow.bc.pretrain", "demos_cli"),
    "pretrain": _lazy("reinflow.bc.pretrain", "pretrain_cli"),
    "doctor": _lazy("reinflow.report.doctor"),
    "scale": _lazy("reinflow.flow.scaling"),
    "smolvla-tiny": _lazy("reinflow.policies.smolvla.tiny"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"error: unknown command {cmd!r}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        return int(COMMANDS[cmd](rest) or 0)
    except BrokenPipeError:  # output piped into `head`: not an error of the run
        return 0
    except ReinflowError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
