"""The count of shed connections behind the worker's WARNING: one line a minute at most, counting
every connection shed since the previous line (the e2e tests cannot wait a minute to see the sum)."""

from service.server.worker import ShedReport


def test_the_first_shedding_is_reported_at_once_with_its_count():
    report = ShedReport(every=60)
    assert report.due(now=100.0) is None  # nothing shed, nothing to say
    report.add(25, in_use=50)
    assert report.due(now=100.0) == (25, 50)
    assert report.due(now=100.25) is None  # said once


def test_sheddings_within_the_minute_are_summed_into_the_next_line():
    report = ShedReport(every=60)
    report.add(25, in_use=50)
    assert report.due(now=0.0) == (25, 50)
    report.add(10, in_use=48)
    report.add(5, in_use=46)
    assert report.due(now=30.0) is None
    assert report.due(now=59.9) is None
    assert report.due(now=60.0) == (15, 48)  # the sum, and the most connections seen in use
    assert report.due(now=500.0) is None  # nothing shed since
    report.add(3, in_use=47)
    assert report.due(now=500.0) == (3, 47)  # a minute and more after the last line: at once
