"""The app settings in Bicep are exactly the settings the code reads, plus platform ones.

The rule, against telephony.config.settings.SETTINGS:
- a non-secret setting that is not local_only is an app setting (its value may be empty,
  which the code reads as "use the default");
- a secret is never an app setting: it is a Key Vault secret named by its secret_name, read
  by the code through the Key Vault SDK;
- a local_only or deploy_only setting is never deployed (deploy_only ones are read from
  the azd environment by azd's hooks, not by the app);
- anything else in the app settings must be on PLATFORM_SETTINGS, read by the Functions
  host or an Azure SDK rather than by telephony.config.settings.
"""

from __future__ import annotations

from telephony.config.settings import SETTINGS, SETTINGS_BY_NAME
from tests.infra.bicep_templates import all_templates, app_settings, template

PLATFORM_SETTINGS = frozenset(
    {
        # Host storage by managed identity (no connection string exists to leak).
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "AzureWebJobsStorage__blobServiceUri",
        "AzureWebJobsStorage__queueServiceUri",
        "AzureWebJobsStorage__tableServiceUri",
        # Telemetry; the authentication string makes the host sign in with the identity.
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        # Read by azure-identity to pick the user-assigned identity.
        "AZURE_CLIENT_ID",
    }
)


def test_app_settings_are_the_code_settings_plus_platform_settings() -> None:
    expected = {
        s.name for s in SETTINGS if not s.is_secret and not s.local_only and not s.deploy_only
    }
    expected |= PLATFORM_SETTINGS
    actual = set(app_settings())

    missing, unexpected = sorted(expected - actual), sorted(actual - expected)
    assert not missing and not unexpected, (
        f"app settings drifted from telephony/config/settings.py: missing {missing}, "
        f"not read by the code {unexpected}"
    )


def test_secrets_are_key_vault_secrets_and_not_app_settings() -> None:
    secrets = [s for s in SETTINGS if s.is_secret]
    vault_secrets = {
        r.body["name"]
        for r in template("app/keyvault.bicep").resources("Microsoft.KeyVault/vaults/secrets")
    }

    assert not {s.name for s in secrets} & set(app_settings())
    assert vault_secrets == {s.secret_name for s in secrets}


def test_local_only_settings_are_not_deployed() -> None:
    local_only = {s.name for s in SETTINGS if s.local_only or s.deploy_only}

    assert not local_only & set(app_settings())


def test_platform_settings_do_not_shadow_code_settings() -> None:
    assert not PLATFORM_SETTINGS & set(SETTINGS_BY_NAME)


def test_app_settings_are_declared_in_one_place() -> None:
    # A second appsettings resource, or siteConfig.appSettings, would replace or hide the
    # block the drift test reads.
    for t in all_templates():
        for site in t.resources("Microsoft.Web/sites"):
            assert "appSettings" not in site.properties.get("siteConfig", {}), t.path
        configs = t.resources("Microsoft.Web/sites/config")
        if t.path != "app/api.bicep":
            assert not configs, t.path


def test_names_shared_with_the_code_have_the_code_defaults() -> None:
    names = template("main.bicep").variables

    assert names["outboundQueueName"] == SETTINGS_BY_NAME["OUTBOUND_QUEUE_NAME"].default
    assert names["deliveriesTableName"] == SETTINGS_BY_NAME["DELIVERIES_TABLE_NAME"].default
    assert names["optoutsTableName"] == SETTINGS_BY_NAME["OPTOUTS_TABLE_NAME"].default
    assert names["callDataTableName"] == SETTINGS_BY_NAME["CALL_DATA_TABLE_NAME"].default
