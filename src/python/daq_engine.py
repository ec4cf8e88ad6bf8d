"""daq_engine: the worker templates of mimoCoRB2 over daq-engine's rings.

Shipped inside the daq-engine binary and registered when a Python worker's interpreter
starts; `mimocorb2` and `mimocorb2.worker_templates` name the same objects, so a mimoCoRB2
worker file runs unchanged. The ring protocol (claim, publish, release) stays in Rust
(`_daq_engine`); this layer only decides what goes where.

Events from sources are numpy structured arrays viewing the ring slot (read-only: writing
raises ValueError), valid until the next event is taken. Metadata is a numpy array of one
record (counter, timestamp, deadtime), as in mimoCoRB2.
"""

import logging
import time
from pathlib import Path

import numpy as np

import _daq_engine

__all__ = [
    "BufferIO",
    "SetupError",
    "UfuncError",
    "Importer",
    "Exporter",
    "Filter",
    "Processor",
    "Observer",
    "IsAlive",
]

METADATA_DTYPE = np.dtype([("counter", "<i8"), ("timestamp", "<f8"), ("deadtime", "<f8")])


class SetupError(RuntimeError):
    """A template does not fit the worker's buffers."""


class UfuncError(RuntimeError):
    """The user's function returned something the template cannot use."""


class _Ended(BaseException):
    """Raised in an observer's function by SIGTERM: the supervisor ends the observers still
    running once every other worker has ended (an observer that loops for ever would hold
    the run). Not an Exception, so a user's `except Exception` lets it through."""


def _end_on_sigterm():
    """SIGTERM ends this (observer) process's function as a return would."""
    import signal

    def ended(signum, frame):
        raise _Ended()

    signal.signal(signal.SIGTERM, ended)


class _RunLog(logging.Handler):
    """Passes a worker's log records to the run log (daq-engine.log), naming the worker, as
    mimoCoRB2 wrote them to its log file; WARNING and up also to the terminal, as before."""

    def __init__(self, who):
        super().__init__(logging.INFO)
        self._who = who

    def emit(self, record):
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        _daq_engine.log(record.levelno, f"{self._who}: {text}")
        if record.levelno >= logging.WARNING:
            import sys

            print(text, file=sys.stderr)


def _logger(native, name):
    """The worker's `logger`: INFO and up reach the run log through `_RunLog`."""
    parent = logging.getLogger("daq_engine")
    if not any(isinstance(h, _RunLog) for h in parent.handlers):
        parent.addHandler(_RunLog(native.who()))
        parent.setLevel(logging.INFO)
        # Python's last resort would print WARNING and up a second time.
        parent.propagate = False
    return logging.getLogger(f"daq_engine.{name}")


class _Flag:
    """mimoCoRB2's `is_shutdown` (a shared value): `.value` is True once the stream ended."""

    def __init__(self, native, side, index):
        self._native, self._side, self._index = native, side, index

    @property
    def value(self):
        return self._native.is_closed(self._side, self._index)


class _Buffer:
    def __init__(self, native, side, index, name, dtype, data_length, slot_count):
        self._native = native
        self._index = index
        self.name = name
        self.slot_count = slot_count
        self.data_example = np.zeros(data_length, dtype=dtype)
        self.metadata_example = np.zeros(1, dtype=METADATA_DTYPE)
        self.is_shutdown = _Flag(native, side, index)

    def shutdown_buffer(self):
        """Ends the stream; only a sink's writer can (see BufferWriter)."""


class BufferReader(_Buffer):
    """`with reader as (metadata, data):` — the next event, in place and read-only; both
    None once the stream ended. The event goes back when the block ends."""

    def __init__(self, native, index, *shape):
        super().__init__(native, 0, index, *shape)

    def __enter__(self):
        ev = self._native.take(self._index, False)
        return [None, None] if ev is None else list(ev)

    def __exit__(self, exc_type, exc, tb):
        self._native.release(self._index)
        return False


class BufferWriter(_Buffer):
    """`with writer as (metadata, data):` — fill the arrays; the event is published when
    the block ends without an exception (one copy into the slot)."""

    def __init__(self, native, index, *shape):
        super().__init__(native, 1, index, *shape)
        self._data = np.zeros_like(self.data_example)
        self._meta = np.zeros_like(self.metadata_example)

    def __enter__(self):
        return [self._meta, self._data]

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self._native.write(self._index, self._data, None, self._meta)
        return False

    def shutdown_buffer(self):
        self._native.close_sink(self._index)

    send_flush_event = shutdown_buffer


class BufferObserver(_Buffer):
    """`with observer as (metadata, data):` — a copy of the newest event (waits for one
    newer than the last); both None once the stream ended."""

    def __init__(self, native, index, *shape):
        super().__init__(native, 2, index, *shape)
        self._dtype = self.data_example.dtype

    def __enter__(self):
        got = self._native.observe(self._index)
        if got is None:
            return [None, None]
        meta, data = got
        return [np.frombuffer(meta, METADATA_DTYPE), np.frombuffer(data, self._dtype)]

    def __exit__(self, exc_type, exc, tb):
        return False


class BufferIO:
    """What a worker function is given: its buffers, config, names and directories."""

    def __init__(self, native, name, config, setup_dir, run_dir, read, write, observe):
        self._native = native
        self.name = name
        self.config = dict(config)
        self.setup_dir = Path(setup_dir)
        self.run_dir = Path(run_dir)
        self.logger = _logger(native, name)
        self.read = read
        self.write = write
        self.observe = observe
        self.sources, self.sinks, self.observes = read, write, observe
        self.data_in_examples = [b.data_example for b in read]
        self.metadata_in_examples = [b.metadata_example for b in read]
        self.buffer_names_in = [b.name for b in read]
        self.data_out_examples = [b.data_example for b in write]
        self.metadata_out_examples = [b.metadata_example for b in write]
        self.buffer_names_out = [b.name for b in write]
        self.data_observe_examples = [b.data_example for b in observe]
        self.metadata_observe_examples = [b.metadata_example for b in observe]
        self.buffer_names_observe = [b.name for b in observe]

    def shutdown_sinks(self):
        """Ends every sink's stream."""
        for i in range(len(self.write)):
            self._native.close_sink(i)

    def __getitem__(self, key):
        if key not in self.config:
            raise KeyError(f"Key '{key}' not found in configuration of {self.name}.")
        return self.config[key]

    def get(self, key, default=None):
        return self.config.get(key, default)

    def __str__(self):
        return (
            f"BufferIO(sources={self.buffer_names_in}, sinks={self.buffer_names_out}, "
            f"observes={self.buffer_names_observe}, config={self.config})"
        )


def _io_of(args):
    """A template takes the BufferIO itself (mimoCoRB2 0.0.4) or the worker's `*mimo_args`
    (the manual's `Filter(mimo_args)`), a tuple holding it."""
    if isinstance(args, BufferIO):
        return args
    if isinstance(args, (tuple, list)) and len(args) == 1 and isinstance(args[0], BufferIO):
        return args[0]
    raise SetupError(f"a template takes the worker's BufferIO or its *mimo_args, not {args!r}")


def _conform(x, example, scratch):
    """`x` as an array of exactly the sink's dtype and shape, C-contiguous: `x` itself when
    it already is one (then copied once, into the slot), else cast into `scratch` as
    mimoCoRB2's `data_buffer[:] = x` would."""
    if (
        type(x) is np.ndarray
        and x.dtype == example.dtype
        and x.shape == example.shape
        and x.flags.c_contiguous
    ):
        return x
    scratch[...] = x
    return scratch


def _mask(result, n):
    """A Filter result as a sink bit mask: a bool for every sink, or one bool per sink."""
    if isinstance(result, (bool, np.bool_)):
        return (1 << n) - 1 if result else 0
    flags = list(result)
    if len(flags) != n:
        raise UfuncError(f"the filter function returned {len(flags)} flags for {n} sinks")
    m = 0
    for i, f in enumerate(flags):
        if f:
            m |= 1 << i
    return m


class Base:
    def __init__(self, io):
        io = _io_of(io)
        self.io = io
        self.read = io.read
        self.write = io.write
        self.observe = io.observe
        self.config = io.config
        self.logger = io.logger
        self.name = io.name
        self.run_dir = io.run_dir
        self.setup_dir = io.setup_dir
        self.shutdown_sinks = io.shutdown_sinks
        self._native = io._native

    def _need(self, what, sources, sinks, observes):
        counts = (len(self.read), len(self.write), len(self.observe))
        for (side, want), have in zip(
            (("sources", sources), ("sinks", sinks), ("observes", observes)), counts
        ):
            ok = have >= 1 if want == "1+" else have == want
            if not ok:
                raise SetupError(f"worker '{self.name}': {what} must have {want} {side}, it has {have}")

    def _works_on(self, buffer):
        """`buffer`, the one the template works on: mimoCoRB2's `data_example` and
        `metadata_example` are its."""
        self.data_example = buffer.data_example
        self.metadata_example = buffer.metadata_example
        return buffer

    def _one_source_to_sinks(self, what):
        self._need(what, 1, "1+", 0)
        self.reader = self._works_on(self.read[0])
        self.writers = self.write

    def _started(self, ufunc):
        if not callable(ufunc):
            raise UfuncError("ufunc not callable")
        return self._native

    def _same_shape_sinks(self, what):
        src = self.io.data_in_examples[0]
        for name, do in zip(self.io.buffer_names_out, self.io.data_out_examples):
            if do.shape != src.shape or do.dtype != src.dtype:
                raise SetupError(
                    f"worker '{self.name}': {what} source and sink '{name}' differ in shape or dtype"
                )


class Importer(Base):
    """Runs a generator of events into the one sink; the generator ends with `None`."""

    def __init__(self, io):
        super().__init__(io)
        self._need("Importer", 0, 1, 0)
        self.writer = self._works_on(self.write[0])

    def __call__(self, ufunc):
        if not callable(ufunc):
            raise UfuncError("ufunc not callable")
        generator = ufunc()
        example = self.data_example
        scratch = np.zeros_like(example)

        def next_event():
            data = next(generator, None)
            return None if data is None else _conform(data, example, scratch)

        self._native.run_importer(next_event)


class Exporter(Base):
    """`for data, metadata in exporter:` — every event of the one source, in place; passed
    on unchanged to each sink first, when there are sinks."""

    def __init__(self, io):
        super().__init__(io)
        self._need("Exporter", 1, len(self.write), 0)
        if self.write:
            self._same_shape_sinks("Exporter")
        self.reader = self._works_on(self.read[0])

    def __iter__(self):
        native = self._native
        take = native.take
        everywhere = (1 << len(self.write)) - 1
        copy = native.copy
        try:
            while True:
                ev = take(0, True)
                if ev is None:
                    break
                if everywhere:
                    copy(0, everywhere)
                yield ev
        finally:
            native.release(0)
        self.shutdown_sinks()


class Filter(Base):
    """Copies each event to all, some or none of the sinks, as `ufunc(data)` says."""

    def __init__(self, io):
        super().__init__(io)
        self._one_source_to_sinks("Filter")
        self._same_shape_sinks("Filter")

    def __call__(self, ufunc):
        native = self._started(ufunc)
        take, copy = native.take, native.copy
        n = len(self.write)
        everywhere = (1 << n) - 1
        while True:
            ev = take(0, False)
            if ev is None:
                break
            try:
                result = ufunc(ev[1])
            except BaseException:
                # Nothing came of this event: counted lost for this reader, not delivered.
                native.unused(0)
                raise
            if result is True:
                copy(0, everywhere)
            elif result is False or result is None:
                continue
            else:
                m = _mask(result, n)
                if m:
                    copy(0, m)
        native.release(0)
        self.shutdown_sinks()


class Processor(Base):
    """Writes `ufunc(data)` — a list with one array (or None) per sink, or None — to the
    sinks; each result carries the input event's metadata."""

    def __init__(self, io):
        super().__init__(io)
        self._one_source_to_sinks("Processor")

    def __call__(self, ufunc):
        native = self._started(ufunc)
        take, write = native.take, native.write
        examples = self.io.data_out_examples
        scratch = [np.zeros_like(e) for e in examples]
        n = len(examples)
        while True:
            ev = take(0, False)
            if ev is None:
                break
            try:
                results = ufunc(ev[1])
            except BaseException:
                native.unused(0)
                raise
            if results is None:
                continue
            if len(results) != n:
                raise UfuncError(
                    f"the processor function returned {len(results)} results for {n} sinks"
                )
            for i, r in enumerate(results):
                if r is not None:
                    write(i, _conform(r, examples[i], scratch[i]), 0, None)
        native.release(0)
        self.shutdown_sinks()


class Observer(Base):
    """`observer()` yields `(data, metadata)` copies of the newest events, then `(None, None)`
    once the buffer's stream ended. It never holds the writer back."""

    def __init__(self, io):
        super().__init__(io)
        self._need("Observer", 0, 0, 1)
        self.observer = self._works_on(self.observe[0])

    def __call__(self):
        while True:
            with self.observe[0] as (metadata, data):
                if data is None:
                    break
                yield data, metadata
        yield None, None


class IsAlive(Base):
    """`is_alive()` is True while the observed buffer's stream goes on."""

    def __init__(self, io):
        super().__init__(io)
        self._need("IsAlive", 0, 0, 1)

    def __call__(self):
        return not self.observe[0].is_shutdown.value


def _make_views(meta_memory, data_memory, dtype):
    """The (metadata, data) and (data, metadata) pairs viewing one slot, made once per slot."""
    meta = np.frombuffer(meta_memory, METADATA_DTYPE)
    data = np.frombuffer(data_memory, dtype)
    return (meta, data), (data, meta)


def _buffer_io(native, name, config, setup_dir, run_dir, read, write, observe):
    """Builds the BufferIO from the plan's buffers: (name, [(field, type)], length, slots)."""

    def make(cls, specs):
        out = []
        for i, (bname, fields, length, slots) in enumerate(specs):
            dtype = np.dtype([(f, t) for f, t in fields])
            out.append(cls(native, i, bname, dtype, length, slots))
        return out

    readers = make(BufferReader, read)
    native.set_dtypes([r.data_example.dtype for r in readers])
    return BufferIO(
        native,
        name,
        config,
        setup_dir,
        run_dir,
        readers,
        make(BufferWriter, write),
        make(BufferObserver, observe),
    )


def _load(path, function):
    """Imports the worker file (its directory first on sys.path, as a script's would be)
    and returns `function` from it."""
    import importlib.util
    import sys

    path = Path(path)
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    f = getattr(module, function, None)
    if f is None:
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise AttributeError(
            f"{path} has no function '{function}' (it has: {', '.join(names) or 'nothing callable'})"
        )
    if not callable(f):
        raise TypeError(f"{path}: '{function}' is not a function")
    import inspect

    try:
        inspect.signature(f).bind(None)
    except TypeError:
        raise TypeError(
            f"{path}: {function}{inspect.signature(f)} cannot be called with one argument: "
            "a worker function takes the BufferIO (`def {0}(buffer_io)`) or `*mimo_args`".format(
                function
            )
        ) from None
    except ValueError:
        pass
    return f
