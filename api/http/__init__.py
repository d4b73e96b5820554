"""The HTTP API: the route table, one module per resource group, typed errors to statuses."""
