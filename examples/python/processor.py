"""A Processor with two sinks: every event's pulse height and position, and the large
pulses' waveforms."""

import numpy as np

from mimocorb2.worker_templates import Processor


def heights(*mimo_args):
    processor = Processor(mimo_args)
    large = processor.config["large"]
    result = processor.io.data_out_examples[0].copy()

    def ufunc(data):
        wave = data["chA"]
        i = int(np.argmax(wave))
        result["height"] = wave[i]
        result["position"] = i
        return [result, data if wave[i] > large else None]

    processor(ufunc)
