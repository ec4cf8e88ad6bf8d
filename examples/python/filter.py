"""A Filter: keeps events whose peak passes `min_height`."""

import numpy as np

from mimocorb2.worker_templates import Filter


def above(*mimo_args):
    flt = Filter(mimo_args)
    min_height = flt.config["min_height"]

    def ufunc(data):
        return bool(np.max(data["chA"]) > min_height)

    flt(ufunc)
