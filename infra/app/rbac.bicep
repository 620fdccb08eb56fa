// Every role assignment of the deployment, all for the app's identity and each on the
// narrowest resource it is needed for. Names are guid(scope, principal, role), so re-running
// the deployment finds the same assignment instead of failing on a duplicate.
//
// Queue and table roles are scoped to the one queue or table they serve, never to the storage
// account: the identity cannot read or write any other queue or table in the account. Azure
// RBAC accepts a queue or a table as a scope (Microsoft Learn, "Assign an Azure role for
// access to queue data" and "... table data"), and both are ARM resource types that Bicep can
// name as an `existing` scope (Microsoft.Storage/storageAccounts/queueServices/queues and
// .../tableServices/tables). Such a role is assigned on a queue or table that already
// exists and is no right to create one, so storage.bicep declares all of them and main.bicep
// passes their names from the storage module's outputs (which also makes this module wait
// until they exist).

param principalId string
param storageAccountName string
param outboundQueueName string
param poisonQueueName string
param eventsQueueName string
param deliveriesTableName string
param optoutsTableName string
param callTrailsTableName string
param callDataTableName string
param keyVaultName string
param applicationInsightsName string
// The Event Grid topic of outcome events, when there is one (eventGridEnabled in main.bicep).
param eventGridEnabled bool
param eventGridTopicName string

// Built-in role definition IDs (the same in every tenant). Why each is needed, and on what,
// is said at its assignment below. (Checkov's Bicep parser rejects more than four comment
// lines between two properties of an object, so the long reasons live outside this one.)
var roles = {
  // Read, write and delete blobs, create containers; no queue, table or file access.
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Queue properties, and get, peek, add, update and delete messages.
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  // Add messages, nothing else.
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  // Query, insert, update and delete entities.
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  // Read secret values; no listing of keys or certificates, no writes.
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  // Send telemetry to Application Insights, which has local (key) auth off.
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  // Publish events to an Event Grid topic; no management of the topic or its subscriptions.
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
}

resource storage 'Microsoft.Storage/storageAccounts@2026-04-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2026-04-01' existing = {
  parent: storage
  name: 'default'
}

resource outboundQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2026-04-01' existing = {
  parent: queueService
  name: outboundQueueName
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2026-04-01' existing = {
  parent: queueService
  name: poisonQueueName
}

resource eventsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2026-04-01' existing = {
  parent: queueService
  name: eventsQueueName
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2026-04-01' existing = {
  parent: storage
  name: 'default'
}

resource deliveriesTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2026-04-01' existing = {
  parent: tableService
  name: deliveriesTableName
}

resource optoutsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2026-04-01' existing = {
  parent: tableService
  name: optoutsTableName
}

resource callTrailsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2026-04-01' existing = {
  parent: tableService
  name: callTrailsTableName
}

resource callDataTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2026-04-01' existing = {
  parent: tableService
  name: callDataTableName
}

resource vault 'Microsoft.KeyVault/vaults@2026-02-01' existing = {
  name: keyVaultName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource eventGridTopic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: eventGridTopicName
}

// Host storage (AzureWebJobsStorage) by identity: the host keeps its locks, leases and
// function keys in blobs and creates the containers it needs (azure-webjobs-hosts,
// azure-webjobs-secrets), and Flex Consumption reads the deployment package from the
// deployment container as this identity. Blob Data Owner is the role the Functions docs name
// for identity-based host storage ("read and write access to blobs and the ability to create
// containers"); it grants blob rights only.
//
// Account scope, on purpose. Bicep could scope this to a container
// (Microsoft.Storage/storageAccounts/blobServices/containers), and that would be enough for
// the deployment container alone. But the host creates, at run time, containers of its own
// whose names are host internals (not declared here, and free to change with the runtime),
// and Microsoft documents Blob Data Owner for host storage at the account, as the
// Azure-Samples Flex Consumption quickstarts assign it. Scoping it to guessed container
// names would trade a documented setup for one that breaks silently. A second,
// container-scoped assignment for the deployment package would change nothing, since role
// assignments only add up.
resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The outbound queue. The app enqueues commands (Put Message), and the host's queue trigger,
// using the same identity, reads the queue's length (target-based scaling), gets, peeks and
// deletes messages, and after a failed attempt releases the message with Update
// Message (messages/write), which also renews the visibility of long runs. The Functions docs
// suggest Storage Queue Data Reader + Message Processor for a trigger, but neither of those
// (nor Message Sender) holds messages/write, so the release of a failed attempt would be
// refused; Contributor is the narrowest built-in role that covers it.
resource outboundQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(outboundQueue.id, principalId, roles.storageQueueDataContributor)
  scope: outboundQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The poison queue. The host only adds to it, after maxDequeueCount attempts: it sends first
// and creates the queue only on "queue not found", and storage.bicep declares the queue, so
// add-only is enough. Requeuing poison messages is an operator's job, done with the
// operator's own identity.
resource poisonQueueMessageSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(poisonQueue.id, principalId, roles.storageQueueDataMessageSender)
  scope: poisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The events queue: the app only adds outcome events to it. The services that read it do so
// with identities and roles of their own.
resource eventsQueueMessageSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventsQueue.id, principalId, roles.storageQueueDataMessageSender)
  scope: eventsQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The deliveries, optouts, call trails and call data tables: point reads, queries, conditional inserts, ETag-checked
// updates, upserts and deletes of entities. Storage Table Data Reader cannot write, so
// Contributor is the only built-in role that fits. Scoped to a table, it is no right to
// create one (the app's create-if-missing needs the account scope), so storage.bicep
// declares every table.
//
// No table role on the account: the Functions host would use one to record its diagnostic
// events (monthly AzureFunctionsDiagnosticEvents<yyyyMM> tables, which cannot be scoped in
// advance). Without it the host logs a warning and stops that optional service; the
// Functions docs put diagnostic events outside the minimum for host storage.
resource deliveriesTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deliveriesTable.id, principalId, roles.storageTableDataContributor)
  scope: deliveriesTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource optoutsTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(optoutsTable.id, principalId, roles.storageTableDataContributor)
  scope: optoutsTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource callTrailsTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(callTrailsTable.id, principalId, roles.storageTableDataContributor)
  scope: callTrailsTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource callDataTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(callDataTable.id, principalId, roles.storageTableDataContributor)
  scope: callDataTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The Event Grid topic, when it is enabled: publish only. The topic has local auth off, so
// this role is the only way to publish to it.
resource eventGridDataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (eventGridEnabled) {
  name: guid(eventGridTopic.id, principalId, roles.eventGridDataSender)
  scope: eventGridTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
