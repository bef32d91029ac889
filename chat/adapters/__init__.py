"""Request adapters: other APIs' shapes over the same services, one module each."""
