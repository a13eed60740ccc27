"""Reporting: metrics writers (jsonl, TensorBoard, W&B), plots, doctor."""
