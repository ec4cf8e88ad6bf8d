"""A Filter that passes every event on and does nothing else: `daq-engine bench python`
runs this same file under mimoCoRB2 0.0.4 and under daq-engine, so what is measured is each
framework's cost of handing an event to Python and passing it on."""

import mimocorb2 as mi2


def noop(buffer_io):
    flt = mi2.Filter(buffer_io)

    def ufunc(data):
        return True

    flt(ufunc)
