pytest_plugins = ["marvin.testing"]  # the marvin_bot fixture
