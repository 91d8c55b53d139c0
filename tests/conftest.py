import os
from pathlib import Path

# Offline: LiteLLM must never fetch its remote price map, whichever module imports it first.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import pytest
from hypothesis import settings

from lwfsm.testing import register_profiles

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))

# `ci` (the default) finds real bugs in well under a minute; `--hypothesis-profile=thorough` is for
# long local runs. The same profiles a user gets from lwfsm.testing.register_profiles().
register_profiles()
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def root() -> Path:
    return ROOT
