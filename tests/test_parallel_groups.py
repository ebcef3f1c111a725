"""`make test` relies on pytest-xdist's `--dist loadgroup` keeping a group in one process (one
MovieLens training, one start of each module's fixtures). On pytest 9.2 it silently stopped
grouping (pytest-xdist issue 1386); pyproject pins pytest below it. This fails if an upgrade
breaks the grouping again."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_loadgroup_keeps_a_group_in_one_process(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_groups="""
        import pytest

        @pytest.mark.xdist_group("shared-fixture")
        @pytest.mark.parametrize("i", range(6))
        def test_grouped(i):
            pass

        @pytest.mark.parametrize("i", range(6))
        def test_free(i):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadgroup", "-v")
    result.assert_outcomes(passed=12)
    grouped = {
        line.split()[0] for line in result.outlines if "test_grouped" in line and "PASSED" in line
    }
    assert len(grouped) == 1, f"the group ran in {sorted(grouped)}"
