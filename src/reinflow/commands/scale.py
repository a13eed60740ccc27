"""``reinflow scale``: the sigma / lr / KL / clip a chain of dimension D needs, from D_ref settings."""

from __future__ import annotations

import sys

from reinflow import ConfigError
from reinflow.cli_args import tyro_cli
from reinflow.flow.scaling import ScaleArgs, ScaleReference, format_scale_table, ratio_term_dims, scale_for_dimension
from reinflow.validate import check_fields


def run(argv: list[str]) -> int:
    """Print the rescaled values and one reason each. Exit 2 on bad values."""
    a = tyro_cli(ScaleArgs, argv, "reinflow scale")
    try:
        check_fields(a)  # finite floats (scale --ref-lr inf would print nan rows)
        act = a.chunk_size if a.act_steps is None else a.act_steps
        if not 1 <= act <= a.chunk_size:
            raise ConfigError(f"act_steps={act}: allowed range [1, chunk_size={a.chunk_size}]")
        ref = ScaleReference(dim=a.ref_dim, sigma_min=a.ref_sigma_min, sigma_max=a.ref_sigma_max, lr=a.ref_lr,
                             target_kl=a.ref_target_kl, clip_epsilon=a.ref_clip_epsilon, reduction=a.ref_reduction)
        dims = ratio_term_dims(act, a.action_dim, a.denoise_steps, a.reduction)
        res = scale_for_dimension(ref, dims, a.reduction, a.rule)
    except ConfigError as e:
        print(f"error: reinflow scale: {e}", file=sys.stderr)
        return 2
    print(format_scale_table(res))
    return 0
