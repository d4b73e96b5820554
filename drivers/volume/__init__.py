"""The built-in volume drivers (``local``)."""
