pytest_plugins = ["tests.fixtures_cluster"]
