"""``reinflow quickstart``: demos -> BC -> evaluation -> fine-tuning -> evaluation -> report, for the MLP
flow policy (``reinflow.quickstart``) or SmolVLA (``--policy smolvla``, ``reinflow.quickstart_smolvla``)."""

from __future__ import annotations

from reinflow import ConfigError
from reinflow.cli_args import pop_flag, tyro_cli


def run(argv: list[str]) -> int:
    policy, argv = pop_flag(list(argv), "--policy")
    if policy == "smolvla":  # LeRobot's SmolVLA end to end
        from reinflow.quickstart_smolvla import SmolVLAQuickstartConfig, run_smolvla_quickstart
        run_smolvla_quickstart(tyro_cli(SmolVLAQuickstartConfig, argv, "reinflow quickstart --policy smolvla"))
        return 0
    if policy not in (None, "mlp"):
        raise ConfigError(f"policy={policy!r}: allowed mlp, smolvla")
    from reinflow.quickstart import QuickstartConfig, run_quickstart
    run_quickstart(tyro_cli(QuickstartConfig, argv, "reinflow quickstart"))
    return 0
