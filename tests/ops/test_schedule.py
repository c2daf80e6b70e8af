"""The reference pass's path through the run's schedule: the run's own steps by default, or a few
larger steps that land on the reference step's noise level and then take that step itself."""
import pytest

from numina_ops.schedule import is_exact, reference_path


def test_zero_approach_steps_is_the_run_itself_to_the_step_after_the_reading():
    assert reference_path(10, 0) == list(range(12))
    assert reference_path(0, 0) == [0, 1]


def test_a_short_approach_spreads_its_stops_evenly_and_ends_with_the_reading_step():
    assert reference_path(10, 2) == [0, 5, 10, 11]
    assert reference_path(10, 1) == [0, 10, 11]
    assert reference_path(10, 3) == [0, 3, 7, 10, 11]


def test_the_pass_costs_one_evaluation_per_stop_plus_the_reading():
    for step in range(0, 15):
        for approach in range(0, 20):
            path = reference_path(step, approach)
            assert path[0] == 0 and path[-2:] == [step, step + 1]
            assert path == sorted(set(path)), "every stop a new, later sigma"
            taken = step if approach <= 0 else min(approach, step)
            assert len(path) - 1 == taken + 1


def test_an_approach_as_long_as_the_run_is_the_run():
    assert reference_path(4, 4) == reference_path(4, 9) == reference_path(4, 0) == [0, 1, 2, 3, 4, 5]


def test_a_negative_reference_step_is_refused():
    with pytest.raises(ValueError, match="reference_step"):
        reference_path(-1, 2)


def test_only_the_run_s_own_steps_are_the_exact_path():
    assert is_exact(reference_path(10, 0)) and is_exact(reference_path(3, 7)) and is_exact([0, 1])
    assert not is_exact(reference_path(10, 2)) and not is_exact([0, 2, 3])
