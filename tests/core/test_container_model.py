"""The typed container model against the other places its shape is stated."""

from __future__ import annotations

from moorage.core.sdk.hookspecs.registry import V16_CONFIG_FIELDS
from moorage.core.services.container_model import ContainerConfig


def test_the_registry_contract_states_the_models_v16_config():
    """Registry drivers build image JSON in the v1.6 ``Config`` shape from the SDK's statement of
    it (they cannot import the services): it must be the model's, field for field and in order."""
    zero = ContainerConfig().to_api()
    assert list(zero.items()) == list(V16_CONFIG_FIELDS.items())
