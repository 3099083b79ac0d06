"""Progress of long work for a person watching: a tqdm bar on a terminal, otherwise (a log file, nohup) one line
every ``every_s`` seconds with the time left, so no long computation is ever silent."""

from __future__ import annotations

import sys
import time


class Progress:
    """``update(done, note="")`` as work advances through ``total`` units; ``close()`` at the end."""

    def __init__(self, total: int, label: str, *, every_s: float = 30.0, hint: str = "", enabled: bool = True,
                 terminal: bool | None = None, initial: int = 0):
        self.total = max(1, int(total))
        self.label = label
        self.every_s = every_s
        self.hint = hint
        self.enabled = enabled
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self.started = self.last_line = time.monotonic()
        self.bar = None
        if enabled and terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=initial, desc=label, leave=False, dynamic_ncols=True)
        self.initial = self.done = initial  # the rate counts from here (a resumed run's earlier steps took no time)

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(done - self.done)
            if note:
                self.bar.set_postfix_str(note, refresh=False)
        elif time.monotonic() - self.last_line >= self.every_s:
            self.last_line = time.monotonic()
            self._line(done, note)
        self.done = done

    def _line(self, done: int, note: str) -> None:
        elapsed = time.monotonic() - self.started
        left = ""
        if done > self.initial and elapsed > 0:
            left = f", about {(self.total - done) * elapsed / (done - self.initial) / 60:.1f} min left"
        hint = f" ({self.hint})" if self.hint else ""
        print(f"[genlab] {self.label} {done}/{self.total}{' ' + note if note else ''}{left}{hint}",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
