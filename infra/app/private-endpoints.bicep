// Private endpoints for the storage account (blob, queue, table) and the Key Vault, with a
// private DNS zone per service linked to the virtual network. Inside the network the usual
// host names (<account>.queue.core.windows.net, <vault>.vault.azure.net) resolve to the
// endpoints' private addresses, so the app's settings and code stay as they are; the public
// endpoints are closed (publicNetworkAccess in storage.bicep and keyvault.bicep).

param location string
param tags object = {}
@description('Prefix of the private endpoints\' names (pep-, from abbreviations.json).')
param namePrefix string
param virtualNetworkName string
param subnetName string
param storageAccountName string
param keyVaultName string

resource vnet 'Microsoft.Network/virtualNetworks@2025-09-01' existing = {
  name: virtualNetworkName
}

resource subnet 'Microsoft.Network/virtualNetworks/subnets@2025-09-01' existing = {
  parent: vnet
  name: subnetName
}

resource storage 'Microsoft.Storage/storageAccounts@2026-04-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2026-02-01' existing = {
  name: keyVaultName
}

// One endpoint per sub-resource (groupId), each with the zone Azure names for it. The host
// uses blob (host storage, the deployment package), queue and table; the app reads secrets
// from the vault. Azure Files is not used on Flex Consumption, so it gets no endpoint.
var endpoints = [
  {
    name: '${storage.name}-blob'
    target: storage.id
    groupId: 'blob'
    zone: 'privatelink.blob.${environment().suffixes.storage}'
  }
  {
    name: '${storage.name}-queue'
    target: storage.id
    groupId: 'queue'
    zone: 'privatelink.queue.${environment().suffixes.storage}'
  }
  {
    name: '${storage.name}-table'
    target: storage.id
    groupId: 'table'
    zone: 'privatelink.table.${environment().suffixes.storage}'
  }
  {
    name: '${vault.name}-vault'
    target: vault.id
    groupId: 'vault'
    zone: 'privatelink.vaultcore.azure.net'
  }
]

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for endpoint in endpoints: {
  name: endpoint.zone
  location: 'global'
  tags: tags
}]

// Without the link, the network would keep resolving the public addresses.
resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (endpoint, i) in endpoints: {
  parent: zones[i]
  name: vnet.name
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

resource privateEndpoints 'Microsoft.Network/privateEndpoints@2025-09-01' = [for endpoint in endpoints: {
  name: '${namePrefix}${endpoint.name}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnet.id
    }
    privateLinkServiceConnections: [
      {
        name: endpoint.name
        properties: {
          privateLinkServiceId: endpoint.target
          groupIds: [
            endpoint.groupId
          ]
        }
      }
    ]
  }
}]

// The zone group writes (and on deletion removes) the endpoint's A record in its zone.
resource zoneGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2025-09-01' = [for (endpoint, i) in endpoints: {
  parent: privateEndpoints[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: endpoint.groupId
        properties: {
          privateDnsZoneId: zones[i].id
        }
      }
    ]
  }
}]
