"""Kill a run at an iteration and resume it from its checkpoint (the resume tests)."""

import pytest


class Killed(Exception):
    """Raised by the callback to stop a run as a crash or kill would."""


def killed_then_resumed(run, iteration, checkpoint):
    """Call ``run(checkpoint=..., callback=...)`` with a callback that raises :class:`Killed`
    at ``iteration``, then ``run(checkpoint=..., resume=True)``; returns the resumed result."""
    def kill(record):
        if record["iteration"] == iteration:
            raise Killed

    with pytest.raises(Killed):
        run(checkpoint=checkpoint, callback=kill)
    return run(checkpoint=checkpoint, resume=True)
