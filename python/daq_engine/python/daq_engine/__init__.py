"""Look at and steer a running daq-engine run from a notebook or a script.

    import daq_engine
    run = daq_engine.attach("target/demo-runs/run_2026-12-05T08-05-55")
    run.buffers["raw"].dtype          # the numpy dtype of the setup's data_dtype
    data, metadata = run.latest("raw")  # a copy of the newest event
    run.stats()["buffers"]["raw"]["rate_hz"]
    run.pause(); run.resume(); run.stop(); run.wait()

Looking never holds the run back: `latest` copies the newest event the way an observer
worker does (the producer never waits for it, readers lose nothing). `pause`, `resume` and
`stop` are carried out by the run's supervisor, as the web monitor's buttons are, and
return once it has done so.

Inside a worker process `import daq_engine` gives the worker templates instead (Filter,
Processor, ...), which ship inside the daq-engine binary.
"""

import collections
import json
import pathlib
import time

import numpy as np

from . import _native

__all__ = ["attach", "Run", "Buffer", "Event", "METADATA_DTYPE"]

#: The metadata record of every event, as mimoCoRB2 has it.
METADATA_DTYPE = np.dtype([("counter", "<i8"), ("timestamp", "<f8"), ("deadtime", "<f8")])

#: One buffer of a run.
Buffer = collections.namedtuple(
    "Buffer", "name dtype data_length slot_count policy writer readers"
)

#: One event: `data`, a structured array of `data_length` records, and `metadata`, a
#: one-record array of METADATA_DTYPE (as a worker's `(data, metadata)`).
Event = collections.namedtuple("Event", "data metadata")


def attach(run_dir):
    """The run in `run_dir` (a directory daq-engine made for a run, with its plan.json)."""
    return Run(run_dir)


class Run:
    """A run directory, attached. See the module's help."""

    def __init__(self, run_dir):
        self.run_dir = pathlib.Path(run_dir)
        self._native = _native.Run(str(self.run_dir))
        self.run_id = self._native.run_id
        #: name -> Buffer, in setup order.
        self.buffers = {
            name: Buffer(name, np.dtype(fields), length, slots, policy, writer, list(readers))
            for name, fields, length, slots, policy, writer, readers in self._native.buffers()
        }

    def __repr__(self):
        state = "ended" if self.ended else "live"
        return f"<daq_engine.Run {self.run_dir} ({state}; buffers {', '.join(self.buffers)})>"

    def latest(self, buffer, new_only=False):
        """A copy of the newest event of `buffer` as an Event(data, metadata), or None
        when none was published yet. With `new_only`, None also when nothing was published
        since the last `latest(buffer, new_only=True)`."""
        got = self._native.latest(buffer, bool(new_only))
        if got is None:
            return None
        raw, counter, timestamp, deadtime = got
        data = np.frombuffer(raw, dtype=self.buffers[buffer].dtype)
        metadata = np.array([(counter, timestamp, deadtime)], dtype=METADATA_DTYPE)
        return Event(data, metadata)

    def stats(self):
        """The newest statistics snapshot (the last complete line of stats.jsonl) as a dict,
        or None before the first one is written."""
        # From the file's end (its last MiB), as `daq-engine status` reads it: the file of a
        # long run holds hours of lines.
        try:
            with open(self.run_dir / "stats.jsonl", "rb") as f:
                size = f.seek(0, 2)
                start = max(0, size - (1 << 20))
                f.seek(start)
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return None
        lines = text.split("\n")
        if start > 0:
            lines = lines[1:]  # begun in the middle of a line
        # The supervisor appends; a line without its newline may still be being written.
        for line in reversed(lines[:-1]):
            if line.strip():
                try:
                    return json.loads(line)
                except ValueError:
                    continue
        return None

    @property
    def ended(self):
        """True once the run has ended (its summary.json is written)."""
        return (self.run_dir / "summary.json").exists()

    def summary(self):
        """The run's summary.json as a dict, or None while the run goes on."""
        try:
            return json.loads((self.run_dir / "summary.json").read_text())
        except FileNotFoundError:
            return None

    def wait(self, timeout=None, poll=0.1):
        """Waits until the run has ended and returns its summary; raises TimeoutError
        after `timeout` seconds (None: for ever)."""
        start = time.monotonic()
        while True:
            s = self.summary()
            if s is not None:
                return s
            if timeout is not None and time.monotonic() - start >= timeout:
                raise TimeoutError(f"the run in {self.run_dir} did not end within {timeout} s")
            time.sleep(poll)

    def pause(self, timeout=10.0):
        """Importers keep reading their devices but publish nothing (mimoCoRB2's pause).
        Returns once the supervisor has passed it on; RuntimeError if the run has ended or
        no supervisor answered within `timeout` seconds."""
        self._native.request("pause", float(timeout))

    def resume(self, timeout=10.0):
        """Importers publish again (see pause)."""
        self._native.request("resume", float(timeout))

    def stop(self, timeout=10.0):
        """Stops the importers; every buffer drains and the exporters close their files, as
        on the first Ctrl-C. Returns once the supervisor has begun stopping; `wait()` for
        the end."""
        self._native.request("stop", float(timeout))
