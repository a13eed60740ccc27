"""``reinflow demos``: record expert demonstrations (npz, or a LeRobotDataset with ``--format lerobot``)."""

from __future__ import annotations

import json

from reinflow import ConfigError
from reinflow.bc.pretrain import DemosConfig
from reinflow.cli_args import tyro_cli


def run(argv: list[str]) -> int:
    from reinflow.envs.camera import image_hw
    from reinflow.envs.demos import record_demos
    from reinflow.envs.factory import check_env_id
    from reinflow.rl.build import resolve_env_kwargs
    from reinflow.rl.runfolder import check_out, claim_out
    cfg = tyro_cli(DemosConfig, argv, "reinflow demos")
    check_env_id(cfg.env)
    kwargs = resolve_env_kwargs(cfg.env_kwargs, cfg.env, "mlp")
    obs_mode = kwargs.pop("obs_mode", cfg.obs_mode)
    image_size = kwargs.pop("image_size", None)  # in --env-kwargs (the env's own key) or --image-size
    image_size = tuple(cfg.image_size) if image_size is None else image_hw(image_size)
    check_out(cfg.out, overwrite=cfg.overwrite, can_resume=False)
    with claim_out(cfg.out, cfg.overwrite):  # locked: one process per output folder
        record = record_demos
        if cfg.format == "lerobot":
            from reinflow.bc.lerobot_data import record_lerobot_demos as record
        try:
            summary = record(cfg.env, cfg.episodes, cfg.out, seed=cfg.seed, only_success=cfg.only_success,
                             action_noise=cfg.action_noise,
                             progress=cfg.progress, obs_mode=obs_mode, image_size=image_size,
                             expert=cfg.expert, **kwargs)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    print(json.dumps(summary, indent=2, default=str))
    return 0
