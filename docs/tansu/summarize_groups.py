import json, glob
for f in sorted(glob.glob("/work/research/results/groups-*.json")):
    try: r = json.load(open(f))
    except Exception: print(f, "running/failed"); continue
    i, k, l = r["initial"], r["after_kill"], r["after_leave"]
    fmt = lambda c: f'{c["assign"]} disjoint={c["disjoint"]} complete={c["complete"]}'
    ov = "n/a"
    if "timeline" in r:
        cur, ov = {}, []
        for t, n, p in r["timeline"]:
            if t > r["t_kill"]: cur.pop("C", None)
            if t > r["t_close_B"] + 0.05: cur.pop("B", None)
            cur[n] = p if isinstance(p, list) else []
            allp = [x for l in cur.values() for x in l]
            dup = sorted({x for x in allp if allp.count(x) > 1})
            if dup: ov.append((round(t - r["timeline"][0][0], 1), dict(cur)))
        ov = ov or "none"
    print(f'{r["storage"]:6} P={r["partitions"]} {r["strategy"]:18} static={r["static"]}\n   3 members : {fmt(i)} (settled {r["t_join"]}s)\n   SIGKILL C : {fmt(k)} (waited {r["after_kill_s"]}s)\n   B closes  : {fmt(l)} ({r["after_leave_s"]}s)  errors={r["errors"]}\n   moments where a partition was held by 2 live members : {ov}')
