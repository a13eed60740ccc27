"""The ReinFlow chain: bounded noise head, the one sampler/log-prob, dimension-aware scaling."""
