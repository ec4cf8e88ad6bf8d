"""An Exporter: writes each event's counter and values to a CSV file in the run directory."""

import csv

import mimocorb2 as mi2


def to_csv(buffer_io):
    exporter = mi2.Exporter(buffer_io)
    names = exporter.data_example.dtype.names
    path = buffer_io.run_dir / f"{buffer_io.name}.csv"
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["counter", *names])
        for data, metadata in exporter:
            for record in data:
                out.writerow([int(metadata["counter"][0]), *record.tolist()])
