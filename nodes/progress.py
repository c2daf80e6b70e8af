"""The `progress` callback numina_ops' long loops take, for ComfyUI: it stops the loop when the
user interrupts (Cancel in the queue) and moves the running node's progress bar."""
from __future__ import annotations

from typing import Optional

import comfy.model_management
import comfy.utils

from ..numina_ops.capture import Progress


def comfy_progress(node_id: Optional[str] = None) -> Progress:
    """A fresh callback: checks ComfyUI's interrupt flag at every call (raising
    `comfy.model_management.InterruptProcessingException`) and shows done / total on the node's
    progress bar (the running node's when `node_id` is None)."""
    bar: Optional[comfy.utils.ProgressBar] = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        comfy.model_management.throw_exception_if_processing_interrupted()
        if bar is None:
            bar = comfy.utils.ProgressBar(total, node_id=node_id)
        bar.update_absolute(done, total)

    return progress
