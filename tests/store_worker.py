"""A separate process serving calls of a stored conversation, driven by JSON lines on stdin.

Lines in: {"open": [store URL, conversation id, models]} (answered {"ready": true}; a process is
re-used across tests because importing LiteLLM takes seconds), {"messages": [...], "mock": "text"}
(one call; answered with role, content, replayed), {"race": n, "tag": "p1"} (n calls with distinct
messages; answered with {"done": n}). Every answer is one JSON line on stdout.
"""

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

from lwfsm.provider.adapter import Adapter, AgentSession  # noqa: E402

SPEC = Path(__file__).resolve().parent.parent / "specs" / "lead_worker.yaml"


def main() -> None:
    session: AgentSession | None = None
    print(json.dumps({"started": True}), flush=True)
    for line in sys.stdin:
        cmd: dict[str, Any] = json.loads(line)
        if "open" in cmd:
            url, name, models = cmd["open"]
            if session is not None and session.adapter.store is not None:
                session.adapter.store.close()
            session = Adapter(SPEC, models, env={"TEST_KEY": "sk-test"}, backoff=0.0, store=url).session(name)
            print(json.dumps({"ready": True}), flush=True)
            continue
        assert session is not None, "open a conversation first"
        if "race" in cmd:
            for k in range(cmd["race"]):
                session.completion([{"role": "user", "content": f"{cmd['tag']} call {k}"}], mock_response="ok")
            print(json.dumps({"done": cmd["race"]}), flush=True)
        else:
            extra = {"mock_response": cmd["mock"]} if "mock" in cmd else {}
            r = session.completion(cmd["messages"], **extra)
            last = session.last
            assert last is not None
            content = r.choices[0].message.content
            print(json.dumps({"role": last.role, "content": content, "replayed": last.replayed}), flush=True)


if __name__ == "__main__":
    main()
    # Every answer is written and every store write committed by now: end without the interpreter's
    # teardown of LiteLLM, which takes over a second per process.
    sys.stdout.flush()
    os._exit(0)
