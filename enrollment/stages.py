"""Every stage of the pipeline, in flow order: the Stage objects their `consume_<stage>` commands run."""
from allocations.handlers import STAGE as ALLOCATIONS
from enrollment.cache_invalidation import STAGE as CACHE
from purchases.handlers import STAGE as PURCHASES
from sessions_sched.handlers import STAGE as SESSIONS

ALL_STAGES = (PURCHASES, ALLOCATIONS, SESSIONS, CACHE)
