"""Request adapters: other documented APIs (OpenAI, the AI SDK, the seeds) served over the
same services and event log, one module each; their wire formats are in ``runs.formats``."""
