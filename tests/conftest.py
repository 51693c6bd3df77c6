"""flowjit's own tests verify the IR after every pass, and compile afresh: no persistent
compilation cache in this process (tests/runtime/test_compile_cache.py tests the cache in
processes of its own)."""

import flowjit as fj

fj.config.update("verify_passes", True)
fj.config.update("cache_dir", None)
