"""The layout-tracks diagnostic's own measures (benchmarks/countworld_layout_tracks.py)."""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from countworld import quality  # noqa: E402


def test_an_added_instance_that_stays_has_iou_one_and_one_that_jumps_zero():
    from countworld_layout_tracks import added_self_iou

    labels = np.zeros((3, 8, 8), dtype=np.int32)
    labels[:, 0:2, 0:2] = 1              # a read instance: not counted
    labels[0:2, 5:7, 5:7] = 100          # stays in frames 0 and 1 ...
    labels[2, 5:7, 1:3] = 100            # ... and jumps in frame 2
    labels[0, 3:4, 3:5] = 101            # in one frame only: no pair
    assert added_self_iou(labels) == [1.0, 0.0]


def test_unmatched_are_the_births_and_deaths_of_the_tracks_measure():
    from countworld_layout_tracks import unmatched

    def square(frame, y, x):
        mask = np.zeros((12, 12), dtype=bool)
        mask[y:y + 3, x:x + 3] = True
        return quality.Instance(frame, "circles", mask, True, 1.0)
    objects = [square(0, 0, 0), square(1, 0, 1),      # moves one pixel: matched
               square(0, 8, 8),                        # dies
               square(1, 5, 0)]                        # is born
    assert unmatched(objects, 2) == {2, 3}
    assert quality.track_continuity(objects, "circles", 2) == 0.5


def test_a_malformed_instance_is_a_fragment_a_bloated_object_or_the_wrong_shape():
    from countworld_layout_tracks import size_class, world_area

    def instance(mask):
        return quality.Instance(0, "circles", mask, True, quality.best_fit_iou("circles", mask))
    assert 20 <= world_area("circles") <= 30          # radius 2.8 latent pixels
    fragment, blob, bar = (np.zeros((24, 24), dtype=bool) for _ in range(3))
    fragment[10:12, 10:13] = True                     # 6 pixels: counted, a fragment
    blob[4:13, 4:13] = True                           # 81 pixels: over three times the circle
    bar[11:13, 2:14] = True                           # 24 pixels, a circle's area in a bar
    for mask, fault in ((fragment, "small"), (blob, "large"), (bar, "shape")):
        assert not instance(mask).well_formed
        assert size_class(instance(mask)) == fault
