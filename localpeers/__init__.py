"""Local stand-ins for Twilio and Azure, on loopback, for `make run` and the tests.

- twilio_mock: Stoplight Prism serving Twilio's own OpenAPI description, behind a proxy
  that gives each created call and message its own SID, records requests and injects faults
  (programmed or at random rates: Twilio errors, hangs, dropped connections, an outage);
  its parts are twilio_spec (the spec Prism serves), twilio_prism (the Prism process),
  twilio_proxy with twilio_responses (the proxy and how it rewrites Prism's answers) and
  twilio_state (what tests record and program).
- azurite: Azure Storage queues and tables (Azurite, in memory or on disk, restartable).
- keyvault: an HTTPS Key Vault stand-in with a managed-identity token endpoint and a CONNECT
  proxy, so that the real Azure SDK clients run against it.
"""
