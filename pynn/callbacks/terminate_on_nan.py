"""TerminateOnNaN: stop training as soon as the loss is NaN or infinite."""
from __future__ import annotations

import math
from typing import Any

from pynn.callbacks.callback import Callback, print_msg


class TerminateOnNaN(Callback):
    """Stops training when a training batch's loss is NaN or infinite.

    Args:
        raise_error: raise RuntimeError at once instead of setting `model.stop_training`
            (which lets the current epoch's end hooks run).

    Example:

    ```python
    model.fit(x, y, epochs=10, callbacks=[pynn.callbacks.TerminateOnNaN()])
    ```
    """

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = bool(raise_error)

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        if self.raise_error:
            raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: "
                               f"{loss}. Terminating training immediately.")
        print_msg(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True
