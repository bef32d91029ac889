"""Request adapters: other documented APIs served as written, one module each, each a thin
layer over the canonical services, access rule and relay (its wire format lives beside
the relay, in ``runs.formats``). Each module holds its views and its ``urlpatterns``."""
