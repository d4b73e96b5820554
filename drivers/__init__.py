"""Built-in drivers; each module is a plugin named in the ``moorage`` entry-point group."""
