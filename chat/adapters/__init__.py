"""Request adapters: other documents' APIs served as they are written, one module each, as
thin layers over the sessions API's services, its access rule and the one relay."""
