"""The public surface is small and explicit; changing it is a decision, not an accident."""

import conformance


def test_public_api() -> None:
    assert conformance.__all__ == [
        "ChatRouteFound", "CheckFinished", "CheckNotExecuted", "CheckResult", "CheckSpec", "Clause", "Depth",
        "Failure", "Feature", "Level", "Limits", "Profile", "Results", "RunConfig", "RunEvent", "RunFinished",
        "RunResult", "RunSession", "RunStarted", "RunVerdict", "Target", "Verdict", "__version__", "load_results",
        "run",
    ]
    for name in conformance.__all__:
        assert getattr(conformance, name) is not None
