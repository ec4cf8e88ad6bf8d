"""An Importer: pulses on a noisy baseline, one event per waveform (mimoCoRB2 style)."""

import numpy as np

import mimocorb2 as mi2


def pulses(buffer_io):
    importer = mi2.Importer(buffer_io)
    n_events = int(buffer_io.get("n_events", 1000))
    rng = np.random.default_rng(int(buffer_io.get("seed", 1)))
    event = importer.data_example.copy()
    t = np.arange(event.size)

    def ufunc():
        for _ in range(n_events):
            height = rng.exponential(0.3)
            event["chA"] = rng.normal(0.0, 0.01, event.size) + height * np.exp(-np.abs(t - 20) / 5.0)
            yield event
        yield None

    importer(ufunc)
