"""The cost of `?wait=1` (no acknowledged write lost in a failover) on a local Redis Cluster.

`python tests/benchmarks/bench_redis_wait.py [--writes N]` (default 2,000 each). Boots the six-node
cluster of the tests (tests/redis_server.py: three masters, three replicas, on 127.0.0.1), then times
one compare-and-set write of a 2 KB row, as the gateway commits a turn, without and with wait=1, in
interleaved blocks so both see the same noise. Reports the median and 90th percentile per write,
the ratio of the medians, and the spread of the block medians. Nothing here asserts.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lwfsm.store import Row, open_store  # noqa: E402
from tests.redis_server import redis_cluster  # noqa: E402

WRITES = int(sys.argv[sys.argv.index("--writes") + 1]) if "--writes" in sys.argv else 2000
BLOCKS = 20
DATA = "x" * 2048


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        boot = redis_cluster(Path(tmp))
        cluster = next(boot)
        try:
            stores = {
                "no wait": open_store(cluster.url + "?prefix=bench-plain:"),
                "wait=1": open_store(cluster.url + "?prefix=bench-wait:&wait=1&wait_timeout_ms=1000"),
            }
            times: dict[str, list[float]] = {name: [] for name in stores}
            medians: dict[str, list[float]] = {name: [] for name in stores}
            versions = {name: {f"c{i}": 0 for i in range(8)} for name in stores}  # 8 conversations, all masters
            per_block = WRITES // BLOCKS
            for _ in range(BLOCKS):
                for name, store in stores.items():
                    block = []
                    for i in range(per_block):
                        key = f"c{i % 8}"
                        v = versions[name][key]
                        t = time.perf_counter()
                        assert store.write(key, v, Row(DATA, v + 1))
                        block.append(time.perf_counter() - t)
                        versions[name][key] = v + 1
                    times[name] += block
                    medians[name].append(statistics.median(block))
            print(f"{WRITES} compare-and-set writes of a 2 KB row each, {BLOCKS} interleaved blocks, local cluster")
            for name, ts in times.items():
                q = statistics.quantiles(ts, n=10)
                lo, hi = min(medians[name]), max(medians[name])
                print(
                    f"  {name:8} median {statistics.median(ts) * 1e6:7.0f} us   p90 {q[8] * 1e6:7.0f} us   "
                    f"block medians {lo * 1e6:.0f}-{hi * 1e6:.0f} us"
                )
            ratio = statistics.median(times["wait=1"]) / statistics.median(times["no wait"])
            ratios = [w / p for w, p in zip(medians["wait=1"], medians["no wait"], strict=True)]
            print(f"  ratio of medians {ratio:.2f} (per block {min(ratios):.2f}-{max(ratios):.2f})")
            for store in stores.values():
                store.close()
        finally:
            boot.close()


if __name__ == "__main__":
    main()
