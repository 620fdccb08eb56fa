"""Private networking (vnetEnabled), warm webhooks (alwaysReadyHttpInstances) and zone
redundancy (zoneRedundant): what each switch changes, and that the defaults are the closed,
warm, single-zone deployment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.infra.bicep_templates import (
    INFRA_DIR,
    Resource,
    Template,
    all_templates,
    references,
    template,
)

NETWORK_MODULES = {"app/network.bicep", "app/private-endpoints.bicep"}
PRIVATE_ENDPOINT = "Microsoft.Network/privateEndpoints"
ZONE_GROUP = "Microsoft.Network/privateEndpoints/privateDnsZoneGroups"
DNS_ZONE = "Microsoft.Network/privateDnsZones"
ZONE_LINK = "Microsoft.Network/privateDnsZones/virtualNetworkLinks"
NETWORK_TYPES = {
    "Microsoft.Network/virtualNetworks",
    PRIVATE_ENDPOINT,
    ZONE_GROUP,
    DNS_ZONE,
    ZONE_LINK,
}
# The private endpoints: sub-resource (groupId) -> (the resource it serves, its DNS zone).
ENDPOINTS = {
    "blob": ("storage", "privatelink.blob.${environment().suffixes.storage}"),
    "queue": ("storage", "privatelink.queue.${environment().suffixes.storage}"),
    "table": ("storage", "privatelink.table.${environment().suffixes.storage}"),
    "vault": ("vault", "privatelink.vaultcore.azure.net"),
}
# Module parameters main.bicep sets from vnetEnabled: (closed value, the value without a network).
NETWORK_ACCESS = {
    ("storage", "publicNetworkAccess"): ("Disabled", "Enabled"),
    ("storage", "networkDefaultAction"): ("Deny", "Allow"),
    ("keyVault", "publicNetworkAccess"): ("disabled", "enabled"),
    ("keyVault", "networkDefaultAction"): ("Deny", "Allow"),
}


def _main() -> Template:
    return template("main.bicep")


def _module(symbol: str) -> dict[str, Any]:
    """A module's name, scope, params and dependsOn, whether or not it is conditional."""
    config: dict[str, Any] = _main().modules[symbol]["config"]
    return config["config"] if "condition" in config and "config" in config else config


def _module_by_path(path: str) -> tuple[str, dict[str, Any]]:
    [(symbol, spec)] = [(s, m) for s, m in _main().modules.items() if m["detail"]["path"] == path]
    return symbol, spec


def _parameters_file() -> dict[str, Any]:
    document = json.loads((INFRA_DIR / "main.parameters.json").read_text())
    return dict(document["parameters"])


def _conditional(node: Any) -> dict[str, Any]:
    operator = node["operator"]
    assert operator["type"] == "conditional", node
    return dict(operator["operands"])


def _accessed_output(node: Any) -> tuple[str, str]:
    """(module, output) of an expression written as <module>.outputs.<output>."""
    operands = node["operator"]["operands"]
    inner = operands["operand_2"]["operator"]["operands"]
    assert inner["operand_1"] == "outputs", node
    return str(operands["operand_1"]), str(inner["operand_2"])


def _property(node: Any) -> tuple[Any, Any]:
    """(object, property) of an expression written as <object>.<property>."""
    operands = node["operator"]["operands"]
    assert node["operator"]["type"] == "property_accessor", node
    return operands["operand_1"], operands["operand_2"]


def _dicts(node: Any) -> Iterator[dict[str, Any]]:
    """Every object literal under a parsed node."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _dicts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dicts(item)


def _endpoints_module() -> Template:
    return template("app/private-endpoints.bicep")


def _loop_array(resource: Resource) -> str:
    assert resource.loop is not None, f"{resource.symbol} is not declared in a loop"
    return str(resource.loop["detail"]["array_name"])


# The switch


def test_private_networking_is_on_by_default_and_the_azd_environment_can_turn_it_off() -> None:
    parameter = _main().parameters["vnetEnabled"]

    assert parameter["type"] == "bool"
    assert parameter["default"] is True
    assert _parameters_file()["vnetEnabled"]["value"] == "${VNET_ENABLED=true}"


def test_network_and_private_endpoints_exist_only_with_a_virtual_network() -> None:
    for path in NETWORK_MODULES:
        _, module = _module_by_path(path)
        assert module["config"]["condition"] == "vnetEnabled", path
    declaring = {t.path for t in all_templates() for r in t.resources() if r.type in NETWORK_TYPES}
    assert declaring == NETWORK_MODULES


def test_without_a_virtual_network_the_layout_is_the_public_one() -> None:
    # Everything vnetEnabled changes outside the two network modules, and its value when off.
    off: dict[tuple[str, str], Any] = {}
    for symbol, module in _main().modules.items():
        if module["detail"]["path"] in NETWORK_MODULES:
            continue
        for name, value in _module(symbol)["params"].items():
            if references(value, "vnetEnabled"):
                off[(symbol, name)] = _conditional(value)["false_value"]

    assert off == {
        **{key: public for key, (_, public) in NETWORK_ACCESS.items()},
        ("api", "virtualNetworkSubnetId"): "",
    }


# The virtual network


def test_the_app_subnet_is_delegated_to_flex_consumption_and_endpoints_have_their_own() -> None:
    network = template("app/network.bicep")
    subnets = {
        network.variables[s["name"]]: s["properties"]
        for s in network.resource("Microsoft.Network/virtualNetworks").properties["subnets"]
    }

    assert set(subnets) == {"app", "private-endpoints"}
    [delegation] = subnets["app"]["delegations"]
    assert delegation["properties"]["serviceName"] == "Microsoft.App/environments"
    assert "delegations" not in subnets["private-endpoints"]
    app_subnet = network.outputs["appSubnetId"]["value"]["function"]["parameters"]
    assert app_subnet["resource_type"] == "Microsoft.Network/virtualNetworks/subnets"
    assert app_subnet["resource_name_2"] == "appSubnetName"
    assert network.outputs["privateEndpointsSubnetName"]["value"] == "privateEndpointsSubnetName"


def test_the_app_integrates_with_the_app_subnet_only_with_a_virtual_network() -> None:
    api = template("app/api.bicep")
    passed = _conditional(_module("api")["params"]["virtualNetworkSubnetId"])
    subnet = _conditional(api.resource("Microsoft.Web/sites").properties["virtualNetworkSubnetId"])

    assert passed["condition"] == "vnetEnabled"
    assert _accessed_output(passed["true_value"]) == ("network", "appSubnetId")
    assert passed["false_value"] == ""
    assert api.parameters["virtualNetworkSubnetId"]["default"] == ""
    # An empty ID is left out (null), not sent as a subnet.
    assert subnet["condition"]["function"]["type"] == "empty"
    assert subnet["true_value"] is None
    assert subnet["false_value"] == "virtualNetworkSubnetId"


def test_the_app_starts_after_the_private_endpoints_and_the_roles() -> None:
    assert {"rbac", "privateEndpoints"} <= set(_module("api")["dependsOn"])


# Private endpoints and DNS


def test_storage_and_key_vault_have_an_endpoint_per_service_with_its_dns_zone() -> None:
    endpoints = _endpoints_module().variables["endpoints"]

    assert {e["groupId"]: (_property(e["target"])[0], e["zone"]) for e in endpoints} == ENDPOINTS
    for endpoint in endpoints:
        assert _property(endpoint["target"])[1] == "id"


def test_every_private_endpoint_has_a_dns_zone_group_in_its_zone() -> None:
    for t in all_templates():
        zones = {z.symbol for z in t.resources(DNS_ZONE)}
        for endpoint in t.resources(PRIVATE_ENDPOINT):
            [group] = [g for g in t.resources(ZONE_GROUP) if _is_child_of(g, endpoint)]
            [config] = group.properties["privateDnsZoneConfigs"]
            zone, attribute = _property(config["properties"]["privateDnsZoneId"])

            assert attribute == "id", endpoint.symbol
            # A zone declared here (zones[i] when the zones are declared in the same loop).
            symbol = zone if isinstance(zone, str) else zone["operator"]["operands"]["operand_1"]
            assert symbol in zones, endpoint.symbol


def _is_child_of(child: Resource, parent: Resource) -> bool:
    """Whether `child` is declared under `parent`, item by item when both are loops."""
    if parent.loop is None:
        return bool(child.body.get("parent") == parent.symbol)
    if child.loop is None or _loop_array(child) != _loop_array(parent):
        return False
    accessor = child.body.get("parent", {}).get("operator", {})
    expected = {"operand_1": parent.symbol, "operand_2": child.loop["detail"]["index_name"]}
    return bool(accessor.get("type") == "index_accessor" and accessor["operands"] == expected)


def test_endpoints_connect_each_service_from_the_endpoint_subnet() -> None:
    module = _endpoints_module()
    endpoint = module.resource(PRIVATE_ENDPOINT)
    [connection] = endpoint.properties["privateLinkServiceConnections"]
    existing = {r.symbol: r for r in module.resources(existing=True)}

    assert _loop_array(endpoint) == "endpoints"
    assert _property(connection["properties"]["privateLinkServiceId"]) == ("endpoint", "target")
    [group_id] = connection["properties"]["groupIds"]
    assert _property(group_id) == ("endpoint", "groupId")
    assert _property(endpoint.properties["subnet"]["id"]) == ("subnet", "id")
    assert existing["subnet"].body == {"parent": "vnet", "name": "subnetName"}
    assert existing["vnet"].body == {"name": "virtualNetworkName"}


def test_dns_zones_are_linked_to_the_virtual_network_without_registration() -> None:
    module = _endpoints_module()
    zones, link = module.resource(DNS_ZONE), module.resource(ZONE_LINK)

    assert _loop_array(zones) == _loop_array(link) == "endpoints"
    assert _property(zones.body["name"]) == ("endpoint", "zone")
    assert zones.body["location"] == link.body["location"] == "global"
    assert link.body["parent"]["operator"]["operands"]["operand_1"] == "zones"
    assert link.properties["registrationEnabled"] is False
    assert _property(link.properties["virtualNetwork"]["id"]) == ("vnet", "id")


def test_main_passes_the_network_the_account_and_the_vault_to_the_endpoints() -> None:
    params = _module("privateEndpoints")["params"]

    for name, output in (
        ("virtualNetworkName", "name"),
        ("subnetName", "privateEndpointsSubnetName"),
    ):
        value = _conditional(params[name])
        assert value["condition"] == "vnetEnabled"
        assert _accessed_output(value["true_value"]) == ("network", output)
    assert _accessed_output(params["storageAccountName"]) == ("storage", "name")
    assert _accessed_output(params["keyVaultName"]) == ("keyVault", "name")


# Public access


def test_storage_and_key_vault_refuse_public_traffic_with_a_virtual_network() -> None:
    modules = {"storage": "app/storage.bicep", "keyVault": "app/keyvault.bicep"}
    for (symbol, parameter), (closed, public) in NETWORK_ACCESS.items():
        declared = template(modules[symbol]).parameters[parameter]
        passed = _conditional(_module(symbol)["params"][parameter])

        # The module's default is the closed value, so Checkov reads that one.
        assert declared["default"] == closed, (symbol, parameter)
        assert passed == {"condition": "vnetEnabled", "true_value": closed, "false_value": public}
    for path, type_ in (
        ("app/storage.bicep", "Microsoft.Storage/storageAccounts"),
        ("app/keyvault.bicep", "Microsoft.KeyVault/vaults"),
    ):
        props = template(path).resource(type_).properties
        assert props["publicNetworkAccess"] == "publicNetworkAccess", path
        assert props["networkAcls"]["defaultAction"] == "networkDefaultAction", path


# Warm webhooks and zone redundancy


def test_the_http_function_group_keeps_always_ready_instances() -> None:
    api = template("app/api.bicep")
    scale = api.resource("Microsoft.Web/sites").properties["functionAppConfig"]
    entries = [
        d for d in _dicts(scale["scaleAndConcurrency"]["alwaysReady"]) if d.get("name") == "http"
    ]
    count = _conditional(api.variables["httpAlwaysReadyInstances"])

    assert entries == [{"name": "http", "instanceCount": "httpAlwaysReadyInstances"}]
    # Zone redundancy keeps (and bills) two per group whatever is asked, and refuses one.
    assert count["condition"] == "zoneRedundant"
    assert count["true_value"]["function"] == {
        "type": "max",
        "parameters": {"arg_1": "alwaysReadyHttpInstances", "arg_2": 2},
    }
    assert count["false_value"] == "alwaysReadyHttpInstances"
    for t in (api, _main()):
        parameter = t.parameters["alwaysReadyHttpInstances"]
        assert parameter["default"] == 1, t.path
        assert {"type": "min_value", "argument": 0} in parameter["decorators"], t.path
    assert _module("api")["params"]["alwaysReadyHttpInstances"] == "alwaysReadyHttpInstances"
    assert (
        _parameters_file()["alwaysReadyHttpInstances"]["value"]
        == "${ALWAYS_READY_HTTP_INSTANCES=1}"
    )


def test_zone_redundancy_is_off_by_default_and_covers_the_plan_and_the_storage() -> None:
    main, storage = _main(), template("app/storage.bicep")
    plan = template("app/api.bicep").resource("Microsoft.Web/serverfarms")
    sku = _conditional(_module("storage")["params"]["skuName"])

    assert main.parameters["zoneRedundant"]["type"] == "bool"
    assert main.parameters["zoneRedundant"]["default"] is False
    assert _parameters_file()["zoneRedundant"]["value"] == "${ZONE_REDUNDANT=false}"
    assert plan.properties["zoneRedundant"] == "zoneRedundant"
    assert _module("api")["params"]["zoneRedundant"] == "zoneRedundant"
    # Geo-redundant either way; zone-redundant in the region too when the plan is.
    assert sku == {
        "condition": "zoneRedundant",
        "true_value": "Standard_GZRS",
        "false_value": "Standard_GRS",
    }
    assert storage.parameters["skuName"]["default"] == "Standard_GRS"
    assert storage.resource("Microsoft.Storage/storageAccounts").body["sku"] == {"name": "skuName"}
