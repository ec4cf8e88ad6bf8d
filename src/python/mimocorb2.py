"""mimocorb2: mimoCoRB2's names for daq-engine's worker templates.

Shipped inside the daq-engine binary so that a worker file written for mimoCoRB2 0.0.4
(`import mimocorb2 as mi2`, `from mimocorb2.worker_templates import Filter`) runs unchanged.
`mimocorb2.worker_templates` and `mimocorb2.mimo_worker` are this same module.
"""

from daq_engine import (  # noqa: F401
    BufferIO,
    BufferObserver,
    BufferReader,
    BufferWriter,
    Exporter,
    Filter,
    Importer,
    IsAlive,
    Observer,
    Processor,
    SetupError,
    UfuncError,
)

__version__ = "0.0.4+daq-engine"
__path__ = []
