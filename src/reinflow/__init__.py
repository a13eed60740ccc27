"""reinflow: ReinFlow + PPO fine-tuning of flow-matching chunk policies.

The public seams:
  * ``reinflow.policies.base.FlowPolicy`` - what a policy supplies (velocity, time grid, features, mask).
  * ``reinflow.flow.chain`` - the one chain sampler and the one chain log-prob.
  * ``reinflow.rl.trainer.train`` - the one trainer.
"""

__version__ = "0.1.0"


class ReinflowError(Exception):
    """An error the user can fix: the CLI prints its message on one line and exits with code 2."""


class ConfigError(ReinflowError):
    """A configuration value outside its allowed range (message names the field and the range)."""


class NonFiniteError(ReinflowError):
    """NaN or inf crossed the env boundary, or appeared in a loss or gradient."""


class InvariantError(ReinflowError, RuntimeError):
    """A training invariant of docs/design.md §5 was violated; the message names the likely causes."""
