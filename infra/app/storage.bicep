// The storage account behind AzureWebJobsStorage, the deployment package, the outbound
// queue (and the poison queue the host moves failed messages to), the queue of outcome
// events, the deliveries table and the table of numbers that opted out of messages.
// Shared keys are off: every client, the Functions host included, signs in with Entra ID.

param name string
param location string
param tags object = {}
param deploymentContainerName string
param outboundQueueName string
param eventsQueueName string
param deliveriesTableName string
param optoutsTableName string
param callTrailsTableName string
param callDataTableName string

// Geo-redundant: the deliveries table is the record of what was sent, the opt-outs are
// consent records that must outlive a regional outage, and queued commands are customer
// messages not yet sent. Standard_GZRS adds zone redundancy in the primary region, which a
// zone-redundant Flex Consumption plan requires of its storage (main.bicep's zoneRedundant).
@allowed([
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_GRS'

// Network access. The defaults are a deployment with vnetEnabled (main.bicep): the public
// endpoint is closed and the app, like any other client, comes through the private endpoints
// (private-endpoints.bicep). main.bicep passes Enabled and Allow when vnetEnabled is false.
// Either way every request needs an Entra ID token and a role: shared keys are off. The
// containers, queues and tables below are created through Azure Resource Manager (the
// control plane), which these rules don't govern, so provisioning works from anywhere.
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Disabled'
@allowed([
  'Allow'
  'Deny'
])
param networkDefaultAction string = 'Deny'

resource storage 'Microsoft.Storage/storageAccounts@2026-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: networkDefaultAction
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2026-04-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2026-04-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2026-04-01' = {
  parent: storage
  name: 'default'
}

resource outboundQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2026-04-01' = {
  parent: queueService
  name: outboundQueueName
}

// Declared, not left to the host: the identity may only add messages to it (rbac.bicep),
// so the host could not create it on first use. Declaring it also lets operators alert on
// its length from the first deployment.
resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2026-04-01' = {
  parent: queueService
  name: '${outboundQueueName}-poison'
}

// Declared, not left to the app: the identity may only add messages to it (rbac.bicep).
// Other services read it with their own identities.
resource eventsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2026-04-01' = {
  parent: queueService
  name: eventsQueueName
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2026-04-01' = {
  parent: storage
  name: 'default'
}

// Both tables are declared here because the identity's table role is scoped to each table
// (rbac.bicep): it can read and write their entities but cannot create a table, so the app
// must never need to create one.
resource deliveriesTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2026-04-01' = {
  parent: tableService
  name: deliveriesTableName
}

resource optoutsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2026-04-01' = {
  parent: tableService
  name: optoutsTableName
}

resource callTrailsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2026-04-01' = {
  parent: tableService
  name: callTrailsTableName
}

// The data of calls to a flow that declares data (an appointment's time and place), by an
// opaque id, from before the call is placed until it ends.
resource callDataTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2026-04-01' = {
  parent: tableService
  name: callDataTableName
}

output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainer.name
output outboundQueueName string = outboundQueue.name
output poisonQueueName string = poisonQueue.name
output eventsQueueName string = eventsQueue.name
output deliveriesTableName string = deliveriesTable.name
output optoutsTableName string = optoutsTable.name
output callTrailsTableName string = callTrailsTable.name
output callDataTableName string = callDataTable.name
