"""Configuration: the settings, the secret store, and the documents shipped with the app."""
