"""Security properties of the templates, so they cannot regress without a failing test."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.infra.bicep_templates import (
    INFRA_DIR,
    REPO_ROOT,
    Resource,
    all_templates,
    app_settings,
    references,
    template,
)

EVENT_GRID_DATA_SENDER = "d5a91429-5739-47e2-a06b-3470a27159e7"
EVENT_GRID_TOPIC = "Microsoft.EventGrid/topics"
# The only role assignments the app's identity gets: (built-in role definition ID, the
# `existing` symbol in rbac.bicep it is scoped to). Role IDs are the same in every tenant.
ALLOWED_ASSIGNMENTS = {
    # Host storage and the Flex Consumption deployment package: blobs only, on the account.
    ("b7e6dc6d-f1e8-4753-8033-0f276bb0955b", "storage"): "Storage Blob Data Owner",
    # Enqueue, and the queue trigger's get, delete and release (Update Message).
    ("974c5e8b-45b9-4653-ba55-5f855dd0fb88", "outboundQueue"): "Storage Queue Data Contributor",
    # The host only adds failed messages to the poison queue.
    ("c6a89b2d-59bc-44d0-9896-0f6e12d7b80a", "poisonQueue"): "Storage Queue Data Message Sender",
    # The app only adds outcome events to the events queue.
    ("c6a89b2d-59bc-44d0-9896-0f6e12d7b80a", "eventsQueue"): "Storage Queue Data Message Sender",
    # Publish only, on the one topic, and only when there is one (CONDITIONAL_ASSIGNMENTS).
    (EVENT_GRID_DATA_SENDER, "eventGridTopic"): "EventGrid Data Sender",
    ("0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", "deliveriesTable"): "Storage Table Data Contributor",
    ("0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", "optoutsTable"): "Storage Table Data Contributor",
    ("0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", "callTrailsTable"): "Storage Table Data Contributor",
    ("0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", "callDataTable"): "Storage Table Data Contributor",
    ("4633458b-17de-408a-b874-0445c86b69e6", "vault"): "Key Vault Secrets User",
    ("3913510d-42f4-4e42-8a64-420c390055eb", "applicationInsights"): "Monitoring Metrics Publisher",
}
# Every built-in Queue and Table data role: none of them may be granted on the account (or on
# a queue or table service), only on one queue or one table.
QUEUE_AND_TABLE_DATA_ROLES = {
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "19e7f393-937e-4f77-808e-94535e297925": "Storage Queue Data Reader",
    "8a0f0c08-91a1-4084-bc3d-661d67233fed": "Storage Queue Data Message Processor",
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": "Storage Queue Data Message Sender",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "76199698-9eea-4c19-bc75-cec21354c6b6": "Storage Table Data Reader",
}
QUEUE = "Microsoft.Storage/storageAccounts/queueServices/queues"
TABLE = "Microsoft.Storage/storageAccounts/tableServices/tables"
# The queue and table scopes in rbac.bicep: (type, the rbac.bicep parameter naming it, the
# storage.bicep resource whose `<symbol>Name` output main.bicep passes as that parameter).
STORAGE_CHILD_SCOPES = {
    "outboundQueue": (QUEUE, "outboundQueueName", "outboundQueue"),
    "poisonQueue": (QUEUE, "poisonQueueName", "poisonQueue"),
    "eventsQueue": (QUEUE, "eventsQueueName", "eventsQueue"),
    "deliveriesTable": (TABLE, "deliveriesTableName", "deliveriesTable"),
    "optoutsTable": (TABLE, "optoutsTableName", "optoutsTable"),
    "callTrailsTable": (TABLE, "callTrailsTableName", "callTrailsTable"),
    "callDataTable": (TABLE, "callDataTableName", "callDataTable"),
}
# Broad roles that must never appear anywhere under infra/, named for a readable failure.
FORBIDDEN_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "17d1049b-9a84-46fb-8f53-869881c3d3ab": "Storage Account Contributor",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
}
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
# Assignments that exist only with an optional resource: scope symbol -> the condition.
CONDITIONAL_ASSIGNMENTS = {"eventGridTopic": "eventGridEnabled"}
# An inline Checkov skip, as .checkov.yaml's: a check ID, then a reason.
INLINE_SKIP = re.compile(r"//\s*checkov:skip=(\S+)")
INLINE_SKIP_WITH_REASON = re.compile(r"//\s*checkov:skip=CKV2?_[A-Z]+_\d+: \S.{10,}")


def python_version() -> str:
    """The app's Python: the first line of .python-version, which builds .venv."""
    return (REPO_ROOT / ".python-version").read_text().splitlines()[0].strip()


def _storage() -> Resource:
    return template("app/storage.bicep").resource("Microsoft.Storage/storageAccounts")


def _vault() -> Resource:
    return template("app/keyvault.bicep").resource("Microsoft.KeyVault/vaults")


def _function_app() -> Resource:
    return template("app/api.bicep").resource("Microsoft.Web/sites")


# Storage


def test_storage_account_accepts_only_entra_auth_over_tls12_https() -> None:
    props = _storage().properties

    assert props["allowSharedKeyAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["allowBlobPublicAccess"] is False


def test_blob_containers_are_private() -> None:
    containers = template("app/storage.bicep").resources(
        "Microsoft.Storage/storageAccounts/blobServices/containers"
    )

    assert containers
    assert all(c.properties.get("publicAccess") == "None" for c in containers)


def test_storage_has_the_outbound_queue_its_poison_queue_the_events_queue_and_the_tables() -> None:
    storage = template("app/storage.bicep")
    queues = {
        r.body["name"]
        for r in storage.resources("Microsoft.Storage/storageAccounts/queueServices/queues")
    }
    tables = {
        r.body["name"]
        for r in storage.resources("Microsoft.Storage/storageAccounts/tableServices/tables")
    }
    params = template("main.bicep").modules["storage"]["config"]["params"]

    # The host names the poison queue <queue>-poison.
    assert queues == {"outboundQueueName", "${outboundQueueName}-poison", "eventsQueueName"}
    assert tables == {
        "deliveriesTableName", "optoutsTableName", "callTrailsTableName", "callDataTableName",
    }  # fmt: skip
    assert params["outboundQueueName"] == "outboundQueueName"
    assert params["eventsQueueName"] == "eventsQueueName"
    assert params["deliveriesTableName"] == "deliveriesTableName"
    assert params["optoutsTableName"] == "optoutsTableName"
    assert params["callTrailsTableName"] == "callTrailsTableName"
    assert params["callDataTableName"] == "callDataTableName"


def test_host_storage_is_reached_by_identity_only() -> None:
    settings = app_settings()

    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert "AzureWebJobsStorage" not in settings  # a connection string would carry a key
    for service in ("blob", "queue", "table"):
        assert references(settings[f"AzureWebJobsStorage__{service}ServiceUri"], "storage")


# Key Vault


def test_key_vault_uses_rbac_soft_delete_and_purge_protection() -> None:
    props = _vault().properties

    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True
    assert props["enablePurgeProtection"] is True
    assert "accessPolicies" not in props


def test_required_secret_is_always_written_and_optional_ones_only_when_given() -> None:
    vault = template("app/keyvault.bicep")
    secrets = {r.body["name"]: r for r in vault.resources("Microsoft.KeyVault/vaults/secrets")}

    assert secrets["twilio-auth-token"].condition is None
    assert vault.parameters["twilioAuthToken"]["default"] is None  # required
    for name, param in (
        ("twilio-auth-token-secondary", "twilioAuthTokenSecondary"),
        ("twilio-api-key-secret", "twilioApiKeySecret"),
    ):
        condition = secrets[name].condition
        assert condition is not None, name
        assert condition["operator"]["type"] == "not", name
        assert condition["operator"]["operands"]["bool_value"]["function"] == {
            "type": "empty",
            "parameters": {"item_to_test": param},
        }
    for secret in secrets.values():
        assert secret.body["parent"] == "vault"
        assert secret.properties["contentType"] == "text/plain", secret.symbol


def test_app_gets_the_vault_uri_and_its_client_id() -> None:
    settings = app_settings()

    assert settings["KEY_VAULT_URI"] == "keyVaultUri"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    api = template("main.bicep").modules["api"]["config"]["params"]
    assert references(api["keyVaultUri"], "keyVault")


# Monitoring


def test_monitoring_has_local_auth_off_and_the_app_signs_in() -> None:
    monitoring = template("app/monitoring.bicep")
    insights = monitoring.resource("Microsoft.Insights/components").properties
    workspace = monitoring.resource("Microsoft.OperationalInsights/workspaces").properties

    assert insights["DisableLocalAuth"] is True
    assert workspace["features"]["disableLocalAuth"] is True
    auth = app_settings()["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    assert auth == "ClientId=${identityClientId};Authorization=AAD"


# Function App


def test_function_app_runs_on_flex_consumption_with_the_apps_python() -> None:
    api = template("app/api.bicep")
    plan = api.resource("Microsoft.Web/serverfarms")
    config = _function_app().properties["functionAppConfig"]

    assert plan.body["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert config["runtime"] == {"name": "python", "version": python_version()}
    scale = config["scaleAndConcurrency"]
    assert scale["maximumInstanceCount"] == "maximumInstanceCount"
    assert scale["instanceMemoryMB"] == "instanceMemoryMB"
    assert scale["triggers"]["http"]["perInstanceConcurrency"] == "httpPerInstanceConcurrency"
    for param in ("maximumInstanceCount", "instanceMemoryMB", "httpPerInstanceConcurrency"):
        assert param in template("main.bicep").parameters, param


def test_function_app_runs_as_the_user_assigned_identity_and_only_over_https() -> None:
    app = _function_app()
    deployment = app.properties["functionAppConfig"]["deployment"]["storage"]

    assert app.body["identity"]["type"] == "UserAssigned"
    assert deployment["type"] == "blobContainer"
    assert deployment["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    assert app.properties["httpsOnly"] is True
    assert app.properties["siteConfig"]["minTlsVersion"] == "1.2"
    assert app.properties["siteConfig"]["ftpsState"] == "Disabled"


# Event Grid


def _topic() -> Resource:
    return template("app/events.bicep").resource(EVENT_GRID_TOPIC)


def test_event_grid_topic_exists_only_behind_the_parameter() -> None:
    main = template("main.bicep")
    [module] = [m for m in main.modules.values() if m["detail"]["path"] == "app/events.bicep"]

    assert module["config"]["condition"] == "eventGridEnabled"
    assert main.parameters["eventGridEnabled"]["default"] is False
    declaring = [t.path for t in all_templates() if t.resources(EVENT_GRID_TOPIC)]
    assert declaring == ["app/events.bicep"]
    assert _topic().condition is None  # the module as a whole is the condition


def test_event_grid_topic_takes_only_entra_tokens_and_cloud_events() -> None:
    props = _topic().properties

    assert props["disableLocalAuth"] is True
    assert props["inputSchema"] == "CloudEventSchemaV1_0"
    assert props["minimumTlsVersionAllowed"] == "1.2"
    assert "inboundIpRules" not in props


def test_event_grid_role_is_data_sender_on_the_topic_for_the_app_identity() -> None:
    rbac, main = template("app/rbac.bicep"), template("main.bicep")
    [assignment] = [
        a
        for a in rbac.resources(ROLE_ASSIGNMENT)
        if _role_id(rbac.variables, a) == EVENT_GRID_DATA_SENDER
    ]
    existing = {r.symbol: r for r in rbac.resources(existing=True)}

    assert assignment.condition == "eventGridEnabled"
    scope = existing[assignment.body["scope"]]
    assert scope.type == EVENT_GRID_TOPIC
    assert scope.body["name"] == "eventGridTopicName"
    assert assignment.properties["principalId"] == "principalId"
    params = main.modules["rbac"]["config"]["params"]
    # The app's identity: the one the Function App runs as.
    assert _accessed_output(params["principalId"]) == ("identity", "principalId")
    assert _accessed_output(main.modules["api"]["config"]["params"]["identityId"]) == (
        "identity",
        "id",
    )
    # The topic the events module made (so the assignment waits for it), when enabled.
    name = params["eventGridTopicName"]["operator"]
    assert name["type"] == "conditional"
    assert name["operands"]["condition"] == "eventGridEnabled"
    assert _accessed_output(name["operands"]["true_value"]) == ("events", "name")
    assert params["eventGridEnabled"] == "eventGridEnabled"


def test_app_gets_the_topic_endpoint_only_when_the_topic_exists() -> None:
    main, api = template("main.bicep"), template("app/api.bicep")
    passed = main.modules["api"]["config"]["params"]["eventGridTopicEndpoint"]
    output = main.outputs["EVENT_GRID_TOPIC_ENDPOINT"]["value"]

    assert app_settings()["EVENT_GRID_TOPIC_ENDPOINT"] == "eventGridTopicEndpoint"
    assert api.parameters["eventGridTopicEndpoint"]["default"] == ""
    for value in (passed, output):
        operands = value["operator"]["operands"]
        assert operands["condition"] == "eventGridEnabled"
        assert _accessed_output(operands["true_value"]) == ("events", "endpoint")
        assert operands["false_value"] == ""
    endpoint = template("app/events.bicep").outputs["endpoint"]["value"]
    assert references(endpoint, "topic")


def test_every_inline_checkov_skip_has_a_reason() -> None:
    for path in INFRA_DIR.rglob("*.bicep"):
        for line in path.read_text().splitlines():
            if INLINE_SKIP.search(line):
                assert INLINE_SKIP_WITH_REASON.search(line), f"{path.name}: {line.strip()}"


# Role assignments


def test_every_role_assignment_is_in_rbac_bicep() -> None:
    elsewhere = [
        t.path
        for t in all_templates()
        if t.path != "app/rbac.bicep" and t.resources(ROLE_ASSIGNMENT)
    ]

    assert not elsewhere


def test_role_assignments_are_exactly_the_allowed_roles_on_their_resources() -> None:
    rbac = template("app/rbac.bicep")
    assignments = rbac.resources(ROLE_ASSIGNMENT)
    granted = {(_role_id(rbac.variables, a), a.body["scope"]): a for a in assignments}

    assert len(granted) == len(assignments), "a role is assigned twice on the same scope"
    assert set(granted) == set(ALLOWED_ASSIGNMENTS), sorted(
        (ALLOWED_ASSIGNMENTS.get(key, key[0]), key[1]) for key in granted
    )
    for (role_id, scope), assignment in granted.items():
        role_name = f"{ALLOWED_ASSIGNMENTS[(role_id, scope)]} on {scope}"
        assert assignment.properties["principalId"] == "principalId", role_name
        assert assignment.properties["principalType"] == "ServicePrincipal", role_name
        assert assignment.condition == CONDITIONAL_ASSIGNMENTS.get(scope), role_name


def test_no_queue_or_table_data_role_is_granted_on_the_storage_account() -> None:
    rbac = template("app/rbac.bicep")
    scope_types = {r.symbol: r.type for r in rbac.resources(existing=True)}

    for assignment in rbac.resources(ROLE_ASSIGNMENT):
        role_id = _role_id(rbac.variables, assignment)
        if role_id in QUEUE_AND_TABLE_DATA_ROLES:
            scope_type = scope_types[assignment.body["scope"]]
            assert scope_type in (QUEUE, TABLE), (QUEUE_AND_TABLE_DATA_ROLES[role_id], scope_type)
    granted_on_account = {
        _role_id(rbac.variables, a)
        for a in rbac.resources(ROLE_ASSIGNMENT)
        if scope_types[a.body["scope"]] == "Microsoft.Storage/storageAccounts"
    }
    assert granted_on_account == {"b7e6dc6d-f1e8-4753-8033-0f276bb0955b"}  # Blob Data Owner


@pytest.mark.parametrize("symbol", sorted(STORAGE_CHILD_SCOPES))
def test_queue_and_table_scopes_are_the_ones_storage_bicep_declares(symbol: str) -> None:
    rbac, main = template("app/rbac.bicep"), template("main.bicep")
    storage = template("app/storage.bicep")
    existing = {r.symbol: r for r in rbac.resources(existing=True)}
    type_, param, output = STORAGE_CHILD_SCOPES[symbol]

    # rbac.bicep: storageAccounts(storageAccountName)/<service>/default/<type>(param).
    scope = existing[symbol]
    assert scope.type == type_
    assert scope.body["name"] == param
    assert param in rbac.parameters
    service = existing[scope.body["parent"]]
    assert service.type == type_.rsplit("/", 1)[0]
    assert service.body["name"] == "default"
    account = existing[service.body["parent"]]
    assert account.type == "Microsoft.Storage/storageAccounts"
    assert account.body["name"] == "storageAccountName"

    # main.bicep passes the storage module's output, so the assignment waits for the resource.
    passed = main.modules["rbac"]["config"]["params"][param]
    assert _accessed_output(passed) == ("storage", output + "Name")
    assert main.modules["storage"]["detail"]["path"] == "app/storage.bicep"
    # ... and that output is the name of a queue or table that storage.bicep declares.
    value = storage.outputs[output + "Name"]["value"]["operator"]["operands"]
    assert value == {"operand_1": output, "operand_2": "name"}
    assert output in {r.symbol for r in storage.resources(type_)}


def test_role_assignment_names_are_guid_of_scope_principal_and_role() -> None:
    rbac = template("app/rbac.bicep")
    for assignment in rbac.resources(ROLE_ASSIGNMENT):
        function = assignment.body["name"]["function"]
        args = function["parameters"]

        assert function["type"] == "guid", assignment.symbol
        scope_id = args["base_string"]["operator"]["operands"]
        assert scope_id == {"operand_1": assignment.body["scope"], "operand_2": "id"}
        assert args["extra_string_1"] == "principalId"
        role = assignment.properties["roleDefinitionId"]["function"]["parameters"]
        assert args["extra_string_2"] == role["resource_name_1"], assignment.symbol


def test_rbac_scopes_are_existing_resources_not_groups_or_subscriptions() -> None:
    rbac = template("app/rbac.bicep")
    existing = {r.symbol for r in rbac.resources(existing=True)}

    assert rbac.tree["globals"]["scope"]["value"] == "resourceGroup"
    assert {a.body["scope"] for a in rbac.resources(ROLE_ASSIGNMENT)} <= existing


@pytest.mark.parametrize("role_id", sorted(FORBIDDEN_ROLES), ids=FORBIDDEN_ROLES.get)
def test_no_broad_role_appears_anywhere(role_id: str) -> None:
    for path in INFRA_DIR.rglob("*"):
        if path.is_file():
            assert role_id not in path.read_text().lower(), f"{FORBIDDEN_ROLES[role_id]} in {path}"


def _role_id(variables: dict[str, Any], assignment: Resource) -> str:
    """The role definition GUID of an assignment written as subscriptionResourceId(..., roles.x)."""
    function = assignment.properties["roleDefinitionId"]["function"]
    assert function["type"] == "subscription_resource_id", assignment.symbol
    args = function["parameters"]
    assert args["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    name = args["resource_name_1"]
    if isinstance(name, str):
        return name
    operands = name["operator"]["operands"]
    return str(variables[operands["operand_1"]][operands["operand_2"]])


def _accessed_output(node: Any) -> tuple[str, str]:
    """(module, output) of an expression written as <module>.outputs.<output>."""
    operands = node["operator"]["operands"]
    inner = operands["operand_2"]["operator"]["operands"]
    assert inner["operand_1"] == "outputs", node
    return str(operands["operand_1"]), str(inner["operand_2"])
