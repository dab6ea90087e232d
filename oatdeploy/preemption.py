"""SIGTERM/SIGINT during training: finish the step, checkpoint, exit with the signal's code.

SLURM, Kubernetes and torchrun stop a job with SIGTERM (then SIGKILL after a grace period, 30 s by
default); Ctrl-C sends SIGINT. The handler only records the request; the training loop checks it
after each step, so the checkpoint it writes is a consistent step boundary. Repeated signals do not
cut the save short: under torchrun or srun each worker is typically signalled twice (by the launcher
and by the scheduler), and a checkpoint half-way is worth more than a faster exit. Ctrl-\\ (SIGQUIT)
still quits at once; the previous checkpoint survives it because saves are atomic.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(Exception):
    """Raised by `train()` after the checkpoint for a stop request is written."""

    def __init__(self, signum: int, step: int, total: int, checkpoint: str) -> None:
        self.signum, self.step, self.total, self.checkpoint = signum, step, total, checkpoint
        super().__init__(f"{signal.Signals(signum).name} after step {step}/{total}; checkpoint {checkpoint}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number: 143 for SIGTERM, 130 for SIGINT (the shell's convention)."""
        return 128 + self.signum


class StopRequests:
    """Context manager: while active, SIGTERM/SIGINT set `signum` instead of killing the process."""

    def __init__(self, announce: bool = True) -> None:
        self.signum = 0
        self.announce = announce
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = not self.signum
        self.signum = self.signum or signum
        if self.announce and first:
            print(f"\n{signal.Signals(signum).name}: finishing this step, then saving a checkpoint "
                  "(Ctrl-\\ quits without saving)", file=sys.stderr, flush=True)

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():  # Python only signals the main thread
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()
