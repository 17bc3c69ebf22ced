"""Socket tests: each starts with a fresh channel layer.

Every ``async_to_sync`` scenario runs on its own event loop, and channels_redis binds its
locks to the loop that first used them: a layer left with a lock held by a finished
loop (a consumer still closing when its test ended) would fail every later test.
"""

import pytest
from channels.layers import channel_layers


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
