"""PPO on the ReinFlow chain: GAE, rollout buffer, loss, trainer, health monitor."""
