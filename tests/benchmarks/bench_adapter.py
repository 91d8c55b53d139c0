"""Adapter overhead against raw litellm.acompletion on the same loopback server, same run.

`python tests/benchmarks/bench_adapter.py [--calls N]` (default 1,000 calls each). Calls are
sequential, in interleaved blocks, so both sides see the same noise; reports per-call wall time,
the ratio and the difference. Nothing here asserts.
"""

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import litellm  # noqa: E402  (after lwfsm.provider.adapter: offline price map)
from openai_server import Server  # noqa: E402

from lwfsm.provider.adapter import Adapter, RoleBinding  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CALLS = int(sys.argv[sys.argv.index("--calls") + 1]) if "--calls" in sys.argv else 1000
BLOCKS = 10
MESSAGES = [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": "go on"},
]


async def main() -> None:
    server = Server()
    env = {"BENCH_KEY": "sk-bench"}
    bind = RoleBinding("openai/bench", api_base=server.base, api_key_env="BENCH_KEY")
    session = Adapter(ROOT / "specs" / "lead_worker.yaml", {"lead": bind, "worker": bind}, env=env).session()

    async def raw(n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            await litellm.acompletion(
                model="openai/bench", api_base=server.base, api_key="sk-bench", messages=MESSAGES, num_retries=0
            )
        return time.perf_counter() - t

    async def ours(n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            await session.acompletion(MESSAGES)
        return time.perf_counter() - t

    await raw(20)  # warm both paths (connection pools, imports)
    await ours(20)
    per = CALLS // BLOCKS
    raw_t, ours_t = [], []
    for _ in range(BLOCKS):
        raw_t.append(await raw(per))
        ours_t.append(await ours(per))
    r, o = sum(raw_t) / (per * BLOCKS), sum(ours_t) / (per * BLOCKS)
    spread = max(raw_t) / min(raw_t)
    print(
        f"{per * BLOCKS} calls each on 127.0.0.1: raw litellm.acompletion {r * 1e3:.2f} ms/call, "
        f"lwfsm adapter {o * 1e3:.2f} ms/call: ratio {o / r:.3f} (target <= 1.05), overhead "
        f"{(o - r) * 1e3:.3f} ms/call (or <= 0.3 ms); block medians {statistics.median(raw_t) / per * 1e3:.2f} vs "
        f"{statistics.median(ours_t) / per * 1e3:.2f} ms; raw block spread {spread:.2f}x"
    )
    # The adapter's own time: everything outside litellm.acompletion, measured directly. Steadier
    # than the end-to-end ratio, whose noise is LiteLLM's and the server's.
    inside = [0.0]
    real = litellm.acompletion

    async def timed(**kw: object) -> object:
        t = time.perf_counter()
        try:
            return await real(**kw)
        finally:
            inside[0] += time.perf_counter() - t

    litellm.acompletion = timed
    total = await ours(per * BLOCKS)
    litellm.acompletion = real
    own = (total - inside[0]) / (per * BLOCKS)
    print(f"adapter's own time per call (outside litellm.acompletion): {own * 1e3:.3f} ms")
    print(f"machine turns completed: {session.machine.turn}, ledger calls: {session.ledger.calls}")
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
