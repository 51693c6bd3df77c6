"""flowjit's own tests verify the IR after every pass."""

import flowjit as fj

fj.config.update("verify_passes", True)
