"""Model families. Each module registers its models with :mod:`genlab.registry`."""
