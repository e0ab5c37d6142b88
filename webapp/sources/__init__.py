"""Sources at run time: the registry of configured upstream accounts and their providers."""
