"""Key Vault secrets, read with the app's managed identity (azure-identity, azure-keyvault-secrets).

The SDKs are imported on the first read: a webhook whose secrets are in the environment
never loads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from telephony.errors import SecretBackendError

if TYPE_CHECKING:
    from azure.keyvault.secrets import SecretClient


class KeyVaultSecretFetcher:
    """Reads secrets from Azure Key Vault with the app's managed identity.

    One credential and one client serve every secret, so a process asks for one token,
    answers the vault's challenge once and reuses one connection (bench/cold_secrets.py).
    """

    def __init__(self, vault_url: str, client_id: str | None = None) -> None:
        self._vault_url = vault_url
        self._client_id = client_id
        self._client: SecretClient | None = None

    def fetch(self, secret_name: str) -> str | None:
        # Imported here: the Azure SDKs cost cold-start time that most requests never need.
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            return self._secret_client().get_secret(secret_name).value
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise SecretBackendError(
                f"Key Vault read of {secret_name} failed ({type(exc).__name__})"
            ) from exc

    def _secret_client(self) -> SecretClient:
        if self._client is None:
            from azure.identity import ManagedIdentityCredential
            from azure.keyvault.secrets import SecretClient

            credential = ManagedIdentityCredential(client_id=self._client_id)
            self._client = SecretClient(
                self._vault_url,
                credential,
                # The store falls back to a cached value; fail fast rather than stall a webhook.
                retry_total=2,
                retry_backoff_factor=0.2,
                retry_backoff_max=2,
                connection_timeout=3,
                read_timeout=5,
            )
        return self._client
