"""Reads a lake the way its users do, and prints what it found as JSON on stdout.

DuckDB reads every file with Hive partitioning (the rows, their partition columns and file
names); pyarrow reads each file's metadata (row groups, compression, statistics). Neither is
the archive's writer. Every data file is also named with the SHA-256 of its bytes, so that two
lakes can be compared file for file.

    python read_lake.py LAKE_DIR
    python read_lake.py s3://BUCKET ENDPOINT

A bucket is read through the S3 API (pyarrow's S3 filesystem on the endpoint, with the
standard AWS credential variables): every object is listed and fetched with GET, then read as
a directory would be. Nothing is read from the server's own disk.
"""
import hashlib
import json
import os
import sys
import tempfile

import duckdb
import pyarrow.parquet as pq


def fetch_bucket(url, endpoint, into):
    """Copies every object of the bucket at `url` into the directory `into`, under its key."""
    from pyarrow import fs

    scheme, _, address = endpoint.partition("://")
    s3 = fs.S3FileSystem(
        access_key=os.environ["AWS_ACCESS_KEY_ID"],
        secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        endpoint_override=address,
        scheme=scheme,
        region="us-east-1",
    )
    bucket = url.removeprefix("s3://").rstrip("/")
    # Many objects: fetched on several threads (each GET is a round trip of its own).
    fs.copy_files(bucket, into, source_filesystem=s3, destination_filesystem=fs.LocalFileSystem(), use_threads=True)


# The lake's own directories beside the data: the partitions' states, a group's heartbeats, and
# the Delta table's log (whose checkpoints are Parquet, and not data).
METADATA = {"_state", "_members", "_delta_log"}


def read(root):
    paths = []
    leftovers = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root)
            if relative.split(os.sep)[0] in METADATA:
                continue
            if name.endswith(".parquet"):
                paths.append(path)
            else:
                leftovers.append(relative)

    rows = []
    if paths:
        relation = duckdb.sql(
            f"SELECT *, epoch_ms(event_time) AS event_ms FROM read_parquet('{root}/topic=*/**/*.parquet', "
            "hive_partitioning=true, filename=true)"
        )
        columns = relation.columns
        for values in relation.fetchall():
            row = dict(zip(columns, values))
            row["event_time"] = None
            row["date"] = str(row["date"])
            row["filename"] = os.path.relpath(row["filename"], root)
            rows.append(row)

    files = []
    for path in sorted(paths):
        meta = pq.ParquetFile(path).metadata
        group = meta.row_group(0)
        with open(path, "rb") as f:
            sha256 = hashlib.sha256(f.read()).hexdigest()
        files.append({
            "path": os.path.relpath(path, root),
            "sha256": sha256,
            "rows": meta.num_rows,
            "row_groups": meta.num_row_groups,
            "compression": group.column(0).compression,
            "statistics": all(group.column(i).is_stats_set for i in range(group.num_columns)),
            "schema": [f"{field.name}:{field.type}" for field in pq.read_schema(path)],
        })
    return {"rows": rows, "files": files, "leftovers": leftovers}


if __name__ == "__main__":
    if sys.argv[1].startswith("s3://"):
        with tempfile.TemporaryDirectory() as copy:
            fetch_bucket(sys.argv[1], sys.argv[2], copy)
            found = read(copy)
    else:
        found = read(sys.argv[1])
    json.dump(found, sys.stdout, default=str)
