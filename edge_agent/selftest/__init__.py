"""The unit's self-test: picture checks against the deployment baseline, system checks,
a runner with per-check time limits, fault hysteresis, the engineer's table and the
shift-change schedule."""

from edge_agent.selftest.baseline import Baseline, BaselineError, learn_baseline, measured_fps
from edge_agent.selftest.image import (
    Polygon,
    check_black,
    check_blur,
    check_frozen,
    check_moved,
    check_obstructed,
    check_overexposed,
    check_privacy_masks,
    check_signal,
    prepare_all,
    run_image_checks,
)
from edge_agent.selftest.outcome import CheckOutcome, Verdict, worst_verdict
from edge_agent.selftest.runner import (
    FaultTracker,
    FaultTransition,
    SelfTestCheck,
    SelfTestReport,
    SelfTestRunner,
    Trigger,
)
from edge_agent.selftest.sampler import FrameSampler, SampleWindow
from edge_agent.selftest.schedule import DEFAULT_TIMES, ScheduleError, next_run, next_runs
from edge_agent.selftest.sntp import NtpError, SntpResult, sntp_query
from edge_agent.selftest.system import (
    check_broker,
    check_clock,
    check_recording,
    check_storage,
    check_temperature,
    check_ups,
)
from edge_agent.selftest.table import render_table
from edge_agent.selftest.thresholds import SelfTestThresholds, ThresholdError

__all__ = [
    "DEFAULT_TIMES",
    "Baseline",
    "BaselineError",
    "CheckOutcome",
    "FaultTracker",
    "FaultTransition",
    "FrameSampler",
    "NtpError",
    "Polygon",
    "SampleWindow",
    "ScheduleError",
    "SelfTestCheck",
    "SelfTestReport",
    "SelfTestRunner",
    "SelfTestThresholds",
    "SntpResult",
    "ThresholdError",
    "Trigger",
    "Verdict",
    "check_black",
    "check_blur",
    "check_broker",
    "check_clock",
    "check_frozen",
    "check_moved",
    "check_obstructed",
    "check_overexposed",
    "check_privacy_masks",
    "check_recording",
    "check_signal",
    "check_storage",
    "check_temperature",
    "check_ups",
    "learn_baseline",
    "measured_fps",
    "next_run",
    "next_runs",
    "prepare_all",
    "render_table",
    "run_image_checks",
    "sntp_query",
    "worst_verdict",
]
