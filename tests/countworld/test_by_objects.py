"""Count and well-formed-only accuracy by the number of objects asked (benchmarks/countworld_by_objects.py)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


def videos(rows):
    """rows: (prompt, noun, target, count read, well-formed score, malformed share), one latent frame each."""
    found = [dict(prompt=p, seed=0, targets=[[noun, k]], counts={noun: [c]}, seconds=0.0, evaluations=8)
             for p, noun, k, c, *_ in rows]
    looks = [dict(well_formed_score=w, malformed=m) for *_, w, m in rows]
    return found, looks


def test_videos_are_binned_by_the_objects_their_prompt_asks_for_and_the_gain_is_per_prompt():
    from countworld_by_objects import bin_of, by_objects, well_formed_gain
    assert [bin_of(n) for n in (1, 2, 3, 4, 5, 7, 8, 16)] == ["1-2", "1-2", "3-4", "3-4", "5-7", "5-7", "8+", "8+"]
    plain = videos([("one red circle", "circles", 1, 1, 1.0, 0.0), ("eight red circles", "circles", 8, 4, 0.0, 0.5)])
    numina = videos([("one red circle", "circles", 1, 1, 1.0, 0.0), ("eight red circles", "circles", 8, 8, 0.0, 0.25)])
    report = {"videos": {"plain": plain[0], "numina": numina[0]},
              "videos_quality": {"plain": plain[1], "numina": numina[1]}}
    rows = by_objects(report, "numina")
    assert list(rows) == ["1-2", "8+"]
    assert rows["8+"] == {"videos": 1, "count": 1.0, "well_formed": 0.0, "malformed": 0.25}, \
        "the count right, one malformed instance: not right counting well-formed ones only"
    assert by_objects(report, "plain")["8+"]["count"] == 0.0
    assert well_formed_gain(report, "numina")[0] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="asks for 0 objects"):
        bin_of(0)
