"""jaxmix.status: one table of status codes for fit and fit_many."""
from __future__ import annotations

from jaxmix import status
from jaxmix.api.generalized import SEPARATION_STATUS
from jaxmix.results.sweep import SWEEP_STATUS, status_message


def test_one_table_serves_the_optimiser_the_screening_and_separation():
    STATUS = {int(c) for c in status.OPTIMIZER}
    assert STATUS == {0, 1, 2, 3, 4, 5} and set(SWEEP_STATUS) == {10, 11, 12, 13, 14, 15, 16}
    assert SEPARATION_STATUS == 20
    codes = set(STATUS) | set(SWEEP_STATUS) | {SEPARATION_STATUS}
    assert codes == {int(s) for s in status.Status}
    for c in codes:
        assert status_message(c) == status.status_message(c) == status.MESSAGES[status.Status(c)]
    assert status_message(0) == "converged" and status_message(99) == "unknown status 99"
