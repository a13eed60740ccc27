"""Flow-matching behaviour cloning (pretraining the policy ReinFlow then fine-tunes)."""
