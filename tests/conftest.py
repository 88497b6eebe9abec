"""Suite-wide settings."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def small_root_offset_fit():
    """Converting a release model fits its root offset with the model's own networks (hundreds
    of generator passes); tests convert tiny random releases many times, so they fit on fewer
    samples and rounds. The fixed point itself is tested in test_convert."""
    from synthgen.models import lasagne

    saved = lasagne.ROOT_FIT_SAMPLES, lasagne.ROOT_FIT_ROUNDS
    lasagne.ROOT_FIT_SAMPLES, lasagne.ROOT_FIT_ROUNDS = 32, 3
    yield
    lasagne.ROOT_FIT_SAMPLES, lasagne.ROOT_FIT_ROUNDS = saved
