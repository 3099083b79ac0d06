"""Shared test helpers for comparing the final state of two runs."""

from pathlib import Path

import torch

from genlab.training import checkpoint as ckpt


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    """Weights of a run's last checkpoint plus its tensor-valued model extra state (chains, buffers, carried state)."""
    latest = ckpt.latest_checkpoint(run_dir)
    tensors, _ = ckpt.read_model_file(latest / ckpt.MODEL_FILE)
    state = ckpt.load_train_state(latest / ckpt.STATE_FILE)
    tensors.update({f"extra.{k}": v for k, v in state["model_extra"].items() if isinstance(v, torch.Tensor)})
    return tensors
