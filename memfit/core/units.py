"""Byte units shared by the planner's reports and the loop's telemetry."""

GiB = 1024**3
