import pytest

# the contract suite lives in the package: let pytest explain its failed assertions
pytest.register_assert_rewrite("moorage.core.testing.exec", "moorage.core.testing.confinement",
                                "moorage.core.testing.exec_cgroups")
