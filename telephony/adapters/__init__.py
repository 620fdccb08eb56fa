"""Adapters: the only modules that import SDKs (Twilio, Azure Storage, Key Vault)."""
