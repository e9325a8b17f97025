"""Synthetic fingers (SFinGe method): seeded master fingerprints and their impressions on a 500 dpi sensor.

>>> from hardware_sims.fingers import impression
>>> image = impression(seed=7, k=0)          # uint8, 288 high x 256 wide, dark ridges
"""

from hardware_sims.fingers.impression import (
    SENSOR_HEIGHT,
    SENSOR_WIDTH,
    SkinQuality,
    TouchParameters,
    impression,
    impression_with_touch,
)
from hardware_sims.fingers.master import MasterFinger, master_finger
from hardware_sims.fingers.orientation import FingerClass

__all__ = [
    "SENSOR_HEIGHT",
    "SENSOR_WIDTH",
    "FingerClass",
    "MasterFinger",
    "SkinQuality",
    "TouchParameters",
    "impression",
    "impression_with_touch",
    "master_finger",
]
