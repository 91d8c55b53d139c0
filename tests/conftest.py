import os
from pathlib import Path

# Offline: LiteLLM must never fetch its remote price map, whichever module imports it first.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

# `ci` (the default) finds real bugs in well under a minute; `--hypothesis-profile=thorough` is for
# long local runs. No deadlines: this suite runs on noisy 2-core machines and asserts no timings.
settings.register_profile(
    "ci", max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=5000, stateful_step_count=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def root() -> Path:
    return ROOT
