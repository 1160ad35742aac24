#!/usr/bin/env bash
# Q1 matrix: storage x partitions x strategy (+ static membership). Results in results/groups-*.json
cd "$(dirname "$0")"
for storage in ${STORAGES:-memory sqlite}; do
  for parts in 3 6; do
    for strat in range roundrobin cooperative-sticky; do
      venv/bin/python group_test.py $storage $parts $strat $STATIC > results/groups-$storage-$parts-$strat${STATIC:+-static}.json
      echo "done $storage $parts $strat $STATIC"
    done
  done
done
