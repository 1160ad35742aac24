"""Reads the lake's Delta table the way its users do, with two readers that are not our
writer, and prints what each found as JSON on stdout: delta-rs (Python deltalake) and DuckDB's
delta extension (loaded from the file given, nothing downloaded).

    python read_table.py EXTENSION TABLE_DIR
    python read_table.py EXTENSION s3://BUCKET[/PREFIX] ENDPOINT
    python read_table.py EXTENSION TABLE_DIR --poll STOP_FILE

Each reader gives every row as [partition, offset, sensor_id, record_id, temperature,
co_concentration, humidity, event_ms, date, hour, file]. Then the pruning of a filter on the
date and hour of the first row: how many of the table's files each reader reads for it, and
how many rows it finds there. deltalake reads a bucket through the S3 API itself (with the
standard AWS credential variables); DuckDB reads a copy fetched through the S3 API (its own S3
support would be an extension downloaded at run time).

With --poll, deltalake reads the table again and again until STOP_FILE exists, printing one
line per read: ["live", version, rows, distinct (partition, offset) pairs]; then it reads
every version between the first and the last it saw again ("time travel"), one line each:
["version", version, rows, distinct pairs].
"""
import json
import os
import re
import sys
import tempfile

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

COLUMNS = "\"partition\", \"offset\", sensor_id, record_id, temperature, co_concentration, humidity"


def storage(url, endpoint):
    if not url.startswith("s3://"):
        return None
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }


def with_deltalake(url, endpoint):
    table = DeltaTable(url, storage_options=storage(url, endpoint))
    data = table.to_pyarrow_table()
    names = data.column_names
    # Timestamps as milliseconds, by Arrow (a Python datetime per row would be slow).
    event_ms = data.column("event_time").cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())
    hours = data.column("hour").to_pylist() if "hour" in names else [None] * data.num_rows
    columns = [data.column(name).to_pylist() for name in
               ("partition", "offset", "sensor_id", "record_id", "temperature", "co_concentration", "humidity")]
    dates = [str(d) for d in data.column("date").to_pylist()]
    rows = [list(r) + [ms, d, h, None] for r, ms, d, h in zip(zip(*columns), event_ms.to_pylist(), dates, hours)]
    files = table.file_uris()
    return table, {"version": table.version(), "rows": rows, "files": len(files), "columns": names}


def with_duckdb(extension, root):
    connection = duckdb.connect(config={
        "allow_unsigned_extensions": "true",
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
    })
    connection.execute(f"LOAD '{extension}'")
    relation = connection.sql(
        f"SELECT {COLUMNS}, epoch_ms(event_time) AS event_ms, CAST(date AS VARCHAR) AS date, "
        f"{'hour' if has_hour(connection, root) else 'NULL'} AS hour, filename "
        f"FROM delta_scan('{root}', filename=true)"
    )
    rows = [list(r[:-1]) + [os.path.relpath(r[-1], root)] for r in relation.fetchall()]
    return connection, rows


def has_hour(connection, root):
    names = [c[0] for c in connection.sql(f"DESCRIBE SELECT * FROM delta_scan('{root}')").fetchall()]
    return "hour" in names


def pruning(table, connection, root, date, hour):
    where = f"date = DATE '{date}'" + (f" AND hour = {hour}" if hour is not None else "")
    plan = connection.sql(f"EXPLAIN ANALYZE SELECT count(*) FROM delta_scan('{root}') WHERE {where}").fetchall()
    text = "\n".join(str(cell) for row in plan for cell in row)
    # DuckDB's plan says "Scanning Files: read/of", or (with many files) "Total Files Read".
    scanning = re.search(r"Scanning Files: (\d+)/(\d+)", text)
    total = re.search(r"Total Files Read: (\d+)", text)
    duck_rows = connection.sql(f"SELECT count(*) FROM delta_scan('{root}') WHERE {where}").fetchone()[0]
    filters = [("date", "=", date)] + ([("hour", "=", str(hour))] if hour is not None else [])
    delta_files = table.file_uris(partition_filters=filters)
    delta_rows = table.to_pyarrow_table(partitions=filters).num_rows
    return {
        "date": date,
        "hour": hour,
        "duckdb_files": [int(scanning.group(1)), int(scanning.group(2))] if scanning
        else [int(total.group(1)), len(table.file_uris())] if total else None,
        "duckdb_rows": duck_rows,
        "deltalake_files": len(delta_files),
        "deltalake_rows": delta_rows,
    }


def counts(table):
    data = table.to_pyarrow_table(columns=["partition", "offset"])
    pairs = set(zip(data.column("partition").to_pylist(), data.column("offset").to_pylist()))
    return data.num_rows, len(pairs)


def poll(url, stop):
    seen = []
    while True:
        stopping = os.path.exists(stop)
        table = DeltaTable(url)
        seen.append(table.version())
        print(json.dumps(["live", table.version(), *counts(table)]), flush=True)
        if stopping:
            break
    for version in range(min(seen), max(seen) + 1):
        print(json.dumps(["version", version, *counts(DeltaTable(url, version=version))]), flush=True)


def main():
    import warnings

    warnings.simplefilter("ignore")
    extension, url = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3 and sys.argv[3] == "--poll":
        return poll(url, sys.argv[4])
    endpoint = sys.argv[3] if len(sys.argv) > 3 else None
    table, found = with_deltalake(url, endpoint)
    with tempfile.TemporaryDirectory() as copy:
        root = url
        if url.startswith("s3://"):
            from read_lake import fetch_bucket

            bucket, _, prefix = url.removeprefix("s3://").partition("/")
            fetch_bucket(f"s3://{bucket}", endpoint, copy)
            root = os.path.join(copy, prefix)
        connection, duck_rows = with_duckdb(extension, root)
        first = found["rows"][0] if found["rows"] else None
        prune = pruning(table, connection, root, first[8], first[9]) if first else None
    json.dump({"deltalake": found, "duckdb": {"rows": duck_rows}, "pruning": prune}, sys.stdout)


main()
# Leave without the interpreter's teardown: once, a reader that had printed every read was
# then aborted at exit by a C++ library's destructors ("terminate called without an active
# exception"), and the test saw a failed reader although every read was checked.
sys.stdout.flush()
os._exit(0)
