"""The paired comparison of two settings' reports (benchmarks/countworld_paired.py)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


def report(counts_by_video, well_formed):
    """A report's NUMINA videos: 'three red circles' x seeds, one latent frame each."""
    videos = [dict(prompt=f"three red circles {i // 2}", seed=i % 2, targets=[["circles", 3]],
                   counts={"circles": [c]}, seconds=0.0, evaluations=8) for i, c in enumerate(counts_by_video)]
    looks = [dict(well_formed_score=w, count_constancy=1.0, track_continuity=1.0, malformed=0.0, fit_iou=float("nan"))
             for w in well_formed]
    return {"videos": {"numina": videos}, "videos_in_colour": {"numina": videos}, "videos_quality": {"numina": looks}}


def test_the_difference_is_per_video_then_per_prompt_with_an_interval_around_it():
    from countworld_paired import paired, per_video
    a = per_video(report([3, 2, 2, 2, 3, 3], [1, 0, 0, 0, 1, 1]))
    b = per_video(report([3, 3, 3, 2, 3, 3], [1, 1, 0, 0, 1, 1]))
    difference, low, high, prompts = paired(a, b, "published metric")
    assert prompts == 3 and difference == pytest.approx(1.0 / 3)        # prompts 0 and 1 gain 0.5 each
    assert 0.0 <= low <= difference <= high <= 0.5
    assert paired(a, b, "well_formed_score")[0] == pytest.approx(0.5 / 3)
    assert paired(a, b, "fit_iou")[3] == 0, "no instance anywhere: no fit to compare"


def test_reports_of_other_prompts_or_seeds_are_refused():
    from countworld_paired import paired, per_video
    a = per_video(report([3, 2], [1, 0]))
    b = per_video(report([3, 2, 3, 3], [1, 0, 1, 1]))
    with pytest.raises(SystemExit, match="same --set and --seeds"):
        paired(a, b, "published metric")
