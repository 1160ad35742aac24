#!/usr/bin/env bash
# Extra Q1 runs: members started simultaneously ("together") and static membership.
cd "$(dirname "$0")"
for strat in range cooperative-sticky roundrobin; do
  venv/bin/python group_test.py memory 6 $strat together > results/groups-memory-6-$strat-together.json
  venv/bin/python group_test.py sqlite 6 $strat static > results/groups-sqlite-6-$strat-static.json
  echo "done $strat"
done
