// Entry point for `azd up`: a resource group and the modules under app/. Resources live in
// the modules; this file only names them and wires outputs to inputs.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; it seeds the unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Region for all resources; it must offer the Flex Consumption plan.')
@metadata({ azd: { type: 'location' } })
param location string

@description('Twilio account SID (AC...).')
param twilioAccountSid string

@secure()
@description('Twilio auth token; stored in Key Vault as twilio-auth-token.')
param twilioAuthToken string

@secure()
@description('Previous auth token, set only during a rotation.')
param twilioAuthTokenSecondary string = ''

@description('Optional Twilio API key SID (SK...) for REST auth.')
param twilioApiKeySid string = ''

@secure()
@description('Secret of the Twilio API key, set together with twilioApiKeySid.')
param twilioApiKeySecret string = ''

@description('Default sender number, E.164.')
param twilioPhoneNumber string = ''

@description('Optional Messaging Service SID (MG...) used as the SMS sender.')
param twilioMessagingServiceSid string = ''

@description('Comma-separated ISO regions every destination must be in; empty: the country of twilioPhoneNumber.')
param allowedDestinationCountries string = ''

@description('Comma-separated hosts a call\'s url may name (Twilio fetches TwiML there); empty: url is refused.')
param allowedUrlHosts string = ''

@description('Public base URL when a custom domain fronts the app; default: the app host name.')
param publicBaseUrl string = ''

@description('What voice_url says; empty: the default in the code.')
param voiceGreeting string = ''

@description('What sms_url replies when no SMS rules file is set; empty: the default in the code.')
param smsAutoReply string = ''

@description('Call flow document shipped with the app, relative to its folder; empty: the default in the code.')
param callFlowsFile string = ''

@description('Flow (from the call flow document) that answers inbound calls; empty: say the greeting.')
param voiceFlow string = ''

@description('SMS routing rules shipped with the app, relative to its folder; empty: reply smsAutoReply.')
param smsRulesFile string = ''

@description('Seconds a Key Vault secret is reused before it is read again; empty: the default in the code.')
param secretCacheSeconds string = ''

@description('Default quiet hours of queued sends, HH:MM-HH:MM in the recipient\'s local time (21:00-08:00); empty: none.')
param quietHours string = ''

@description('Also publish outcome events to an Event Grid custom topic, created here (CloudEvents 1.0, Entra ID only).')
param eventGridEnabled bool = false

@description('Instance memory of the Flex Consumption plan.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Upper bound on instances; with the queue batch size it bounds concurrent Twilio requests.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Concurrent HTTP requests per instance.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 16

@description('Private networking: a virtual network the app integrates with, and private endpoints for storage and Key Vault, whose public endpoints are then closed. The app stays public: Twilio calls its webhooks from the internet.')
param vnetEnabled bool = true

@description('Instances kept ready for the HTTP functions (the webhooks), billed while idle; 0: they scale from zero. See docs/deploy.md#networking.')
@minValue(0)
@maxValue(1000)
param alwaysReadyHttpInstances int = 1

@description('Spread the app over availability zones (at least two always-ready instances per function group) and make its storage zone-redundant.')
param zoneRedundant bool = false

// Optional name overrides; empty means abbreviation + unique suffix.
param resourceGroupName string = ''
param functionAppName string = ''
param storageAccountName string = ''
param keyVaultName string = ''

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var appName = !empty(functionAppName) ? functionAppName : '${abbrs.webSitesFunctions}api-${resourceToken}'
// Names the code also knows by default (telephony/config/settings.py); passed to the app anyway.
var outboundQueueName = 'outbound-messages'
var deliveriesTableName = 'deliveries'
var optoutsTableName = 'optouts'
var callTrailsTableName = 'calltrails'
var callDataTableName = 'calldata'
var eventsQueueName = 'telephony-events'
// evgt: the Cloud Adoption Framework's abbreviation for an Event Grid topic.
var eventGridTopicName = 'evgt-${resourceToken}'

resource rg 'Microsoft.Resources/resourceGroups@2025-04-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: !empty(storageAccountName) ? storageAccountName : '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    skuName: zoneRedundant ? 'Standard_GZRS' : 'Standard_GRS'
    // Closed to the internet with a virtual network; without one, the layout before it.
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
    networkDefaultAction: vnetEnabled ? 'Deny' : 'Allow'
    deploymentContainerName: 'app-package'
    outboundQueueName: outboundQueueName
    eventsQueueName: eventsQueueName
    deliveriesTableName: deliveriesTableName
    optoutsTableName: optoutsTableName
    callTrailsTableName: callTrailsTableName
    callDataTableName: callDataTableName
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: !empty(keyVaultName) ? keyVaultName : '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    publicNetworkAccess: vnetEnabled ? 'disabled' : 'enabled'
    networkDefaultAction: vnetEnabled ? 'Deny' : 'Allow'
    twilioAuthToken: twilioAuthToken
    twilioAuthTokenSecondary: twilioAuthTokenSecondary
    twilioApiKeySecret: twilioApiKeySecret
  }
}

module network 'app/network.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: rg
  params: {
    name: '${abbrs.networkVirtualNetworks}${resourceToken}'
    location: location
    tags: tags
  }
}

// The outputs are read only when vnetEnabled, as the module itself exists only then; taking
// them from the other modules makes the endpoints wait for the network, account and vault.
module privateEndpoints 'app/private-endpoints.bicep' = if (vnetEnabled) {
  name: 'private-endpoints'
  scope: rg
  params: {
    location: location
    tags: tags
    namePrefix: abbrs.networkPrivateEndpoints
    virtualNetworkName: vnetEnabled ? network.outputs.name : ''
    subnetName: vnetEnabled ? network.outputs.privateEndpointsSubnetName : ''
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
  }
}

module events 'app/events.bicep' = if (eventGridEnabled) {
  name: 'events'
  scope: rg
  params: {
    name: eventGridTopicName
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    // Queue and table roles are scoped to these; taking them from the storage module's
    // outputs makes the assignments wait until the queues and tables exist.
    outboundQueueName: storage.outputs.outboundQueueName
    poisonQueueName: storage.outputs.poisonQueueName
    eventsQueueName: storage.outputs.eventsQueueName
    deliveriesTableName: storage.outputs.deliveriesTableName
    optoutsTableName: storage.outputs.optoutsTableName
    callTrailsTableName: storage.outputs.callTrailsTableName
    callDataTableName: storage.outputs.callDataTableName
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    // Likewise the topic's role waits for the topic. With no topic the name is still a real
    // one, so the skipped assignment's scope is a well-formed topic ID all the same.
    eventGridEnabled: eventGridEnabled
    eventGridTopicName: eventGridEnabled ? events.outputs.name : eventGridTopicName
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  // The host reaches storage as soon as the app exists: grant the roles first and, with a
  // virtual network, let the private endpoints and their DNS records exist.
  dependsOn: [
    rbac
    privateEndpoints
  ]
  params: {
    name: appName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
    zoneRedundant: zoneRedundant
    virtualNetworkSubnetId: vnetEnabled ? network.outputs.appSubnetId : ''
    keyVaultUri: keyVault.outputs.uri
    outboundQueueName: storage.outputs.outboundQueueName
    eventsQueueName: storage.outputs.eventsQueueName
    eventGridTopicEndpoint: eventGridEnabled ? events.outputs.endpoint : ''
    deliveriesTableName: storage.outputs.deliveriesTableName
    optoutsTableName: storage.outputs.optoutsTableName
    callTrailsTableName: storage.outputs.callTrailsTableName
    callDataTableName: storage.outputs.callDataTableName
    twilioAccountSid: twilioAccountSid
    twilioApiKeySid: twilioApiKeySid
    twilioPhoneNumber: twilioPhoneNumber
    twilioMessagingServiceSid: twilioMessagingServiceSid
    allowedDestinationCountries: allowedDestinationCountries
    allowedUrlHosts: allowedUrlHosts
    publicBaseUrl: publicBaseUrl
    voiceGreeting: voiceGreeting
    smsAutoReply: smsAutoReply
    callFlowsFile: callFlowsFile
    voiceFlow: voiceFlow
    smsRulesFile: smsRulesFile
    secretCacheSeconds: secretCacheSeconds
    quietHours: quietHours
  }
}

// Read by azd and by docs/deploy.md. Names and URLs only: no secret, key or connection string.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_QUEUE_ENDPOINT string = storage.outputs.queueEndpoint
output OUTBOUND_QUEUE_NAME string = storage.outputs.outboundQueueName
output EVENTS_QUEUE_NAME string = storage.outputs.eventsQueueName
// Empty when eventGridEnabled is false.
output EVENT_GRID_TOPIC_ENDPOINT string = eventGridEnabled ? events.outputs.endpoint : ''
output PUBLIC_BASE_URL string = api.outputs.baseUrl
output VOICE_WEBHOOK_URL string = '${api.outputs.baseUrl}/api/voice_url'
output SMS_WEBHOOK_URL string = '${api.outputs.baseUrl}/api/sms_url'
output STATUS_CALLBACK_URL string = '${api.outputs.baseUrl}/api/status_callback'
