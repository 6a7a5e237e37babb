"""Options shared by every privgate task."""

from prefect.cache_policies import NO_CACHE

# Results hold raw rows: never persisted, never cached.
IN_MEMORY = {"persist_result": False, "cache_policy": NO_CACHE}
