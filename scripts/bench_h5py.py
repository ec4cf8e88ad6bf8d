"""Write the daq-engine benchmark data with h5py, the way a user would: a resizable compound
dataset (4 float32 channels x 4096 samples per event), chunks of 16 events, extended and
written one chunk at a time. Prints one JSON line with the time taken (including the final
fsync) so `daq-engine bench hdf5` can compare.

usage: python bench_h5py.py FILE EVENTS COMPRESSION   (COMPRESSION: none | gzip1)
"""
import json
import os
import sys
import time

import h5py
import numpy as np

path, events, compression = sys.argv[1], int(sys.argv[2]), sys.argv[3]
samples, chunk = 4096, 16
dtype = np.dtype([("ch0", "<f4"), ("ch1", "<f4"), ("ch2", "<f4"), ("ch3", "<f4")])
rng = np.random.default_rng(1)
# 64 distinct events of noise around a baseline, reused cyclically (as the Rust side does).
pool = np.zeros((64, samples), dtype=dtype)
for name in dtype.names:
    pool[name] = (rng.normal(0.0, 2.0, (64, samples)) + 100.0).astype("<f4")
meta_dtype = np.dtype([("counter", "<i8"), ("timestamp", "<f8"), ("deadtime", "<f8")])

kw = {} if compression == "none" else {"compression": "gzip", "compression_opts": 1, "shuffle": True}
start = time.perf_counter()
with h5py.File(path, "w", libver="latest") as f:
    g = f.create_group("raw")
    data = g.create_dataset("data", shape=(0, samples), maxshape=(None, samples),
                            chunks=(chunk, samples), dtype=dtype, **kw)
    meta = g.create_dataset("metadata", shape=(0,), maxshape=(None,),
                            chunks=(chunk * 170,), dtype=meta_dtype, **kw)
    block = np.empty((chunk, samples), dtype=dtype)
    mblock = np.zeros(chunk, dtype=meta_dtype)
    done = 0
    while done < events:
        n = min(chunk, events - done)
        for k in range(n):
            block[k] = pool[(done + k) % 64]
        mblock["counter"][:n] = np.arange(done, done + n)
        data.resize(done + n, axis=0)
        data[done:done + n] = block[:n]
        meta.resize(done + n, axis=0)
        meta[done:done + n] = mblock[:n]
        done += n
fd = os.open(path, os.O_RDONLY)
os.fsync(fd)
os.close(fd)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "bytes": events * samples * dtype.itemsize,
                  "file_bytes": os.path.getsize(path), "h5py": h5py.__version__,
                  "hdf5": h5py.version.hdf5_version}))
