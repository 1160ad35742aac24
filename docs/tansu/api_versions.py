"""Lists the API versions Tansu advertises (ApiVersions v0, raw)."""
import sys
from common import broker
from kproto import Conn
NAMES = {0:"Produce",1:"Fetch",2:"ListOffsets",3:"Metadata",8:"OffsetCommit",9:"OffsetFetch",10:"FindCoordinator",11:"JoinGroup",
 12:"Heartbeat",13:"LeaveGroup",14:"SyncGroup",15:"DescribeGroups",16:"ListGroups",18:"ApiVersions",19:"CreateTopics",20:"DeleteTopics",
 21:"DeleteRecords",22:"InitProducerId",24:"AddPartitionsToTxn",25:"AddOffsetsToTxn",26:"EndTxn",28:"TxnOffsetCommit",
 32:"DescribeConfigs",33:"AlterConfigs",44:"IncrementalAlterConfigs",42:"DeleteGroups",60:"DescribeCluster",68:"ConsumerGroupHeartbeat",69:"ConsumerGroupDescribe"}
with broker(sys.argv[1] if len(sys.argv) > 1 else "memory") as b:
    r = Conn(b.bootstrap).call(18, 0, b"")
    err = r.i16()
    for _ in range(r.i32()):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        print(f"{k:3} {NAMES.get(k, '?'):24} v{lo}..v{hi}")
