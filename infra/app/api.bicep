// The Function App on a Flex Consumption plan (FC1), running as the user-assigned identity.
// Its app settings are declared once, below; tests/infra checks them against the code's
// settings (telephony/config/settings.py), so a setting is added there first.

param name string
param planName string
param location string
param tags object = {}
param serviceName string = 'api'

param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 16

// Instances kept running for the HTTP function group (the webhooks, make_call, messages), so
// that Twilio's requests find a warm host. They are billed while idle: docs/deploy.md has the
// cost, and when to set 0.
@minValue(0)
@maxValue(1000)
param alwaysReadyHttpInstances int = 1

// Spread the plan's instances over the region's availability zones. The storage account must
// then be zone-redundant too (main.bicep passes Standard_GZRS to storage.bicep).
param zoneRedundant bool = false

// The subnet the app integrates with (network.bicep); empty: no virtual network.
param virtualNetworkSubnetId string = ''

// Non-secret settings of the app. Secrets are not here: the code reads them from Key Vault.
param keyVaultUri string
param outboundQueueName string
param eventsQueueName string
// Empty: no Event Grid topic (main.bicep's eventGridEnabled is false).
param eventGridTopicEndpoint string = ''
param deliveriesTableName string
param optoutsTableName string
param callTrailsTableName string
param callDataTableName string
param twilioAccountSid string
param twilioApiKeySid string = ''
param twilioPhoneNumber string = ''
param twilioMessagingServiceSid string = ''
param allowedDestinationCountries string = ''
param allowedUrlHosts string = ''
param publicBaseUrl string = ''
// Empty means: use the default the code declares.
param voiceGreeting string = ''
param smsAutoReply string = ''
param callFlowsFile string = ''
param voiceFlow string = ''
param smsRulesFile string = ''
param secretCacheSeconds string = ''
param quietHours string = ''
// Never empty: the Functions host reads the schedule too (%RECONCILE_SCHEDULE% in the timer).
@minLength(1)
param reconcileSchedule string = '0 */5 * * * *'
param reconcileAfterMinutes string = '30'

resource storage 'Microsoft.Storage/storageAccounts@2026-04-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// With zone redundancy the platform keeps at least two always-ready instances in every function
// group, and refuses a configured count of one, so at least two are asked for then.
var httpAlwaysReadyInstances = zoneRedundant ? max(alwaysReadyHttpInstances, 2) : alwaysReadyHttpInstances

resource plan 'Microsoft.Web/serverfarms@2025-03-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource functionApp 'Microsoft.Web/sites@2025-03-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Outbound only: the app reaches storage and Key Vault through their private endpoints.
    // Flex Consumption has no route-all switch to set (Microsoft lists vnetRouteAllEnabled
    // among the site properties it does not use). Inbound stays public, for Twilio.
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: httpAlwaysReadyInstances == 0 ? [] : [
          {
            name: 'http'
            instanceCount: httpAlwaysReadyInstances
          }
        ]
        triggers: {
          http: {
            // Set explicitly so the HTTP bound in docs/deploy.md does not depend on
            // platform defaults, which vary with instance size and language.
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
  }
}

// Twilio signs requests with the URL it called, so the app must know its public one.
// A trailing slash is dropped so the webhook URLs built from it have exactly one.
var customBaseUrl = endsWith(publicBaseUrl, '/') ? substring(publicBaseUrl, 0, length(publicBaseUrl) - 1) : publicBaseUrl
var baseUrl = !empty(customBaseUrl) ? customBaseUrl : 'https://${functionApp.properties.defaultHostName}'

// A separate config resource, so PUBLIC_BASE_URL can use the host name the platform assigned.
resource appSettings 'Microsoft.Web/sites/config@2025-03-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: {
    // Platform: host storage by identity (no connection string, no keys).
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
    AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
    AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
    // Platform: telemetry with Entra auth, since the component has local auth off.
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    // azure-identity picks the user-assigned identity by this client id.
    AZURE_CLIENT_ID: identityClientId
    // The app's own settings.
    KEY_VAULT_URI: keyVaultUri
    OUTBOUND_QUEUE_NAME: outboundQueueName
    DELIVERIES_TABLE_NAME: deliveriesTableName
    OPTOUTS_TABLE_NAME: optoutsTableName
    CALL_TRAILS_TABLE_NAME: callTrailsTableName
    CALL_DATA_TABLE_NAME: callDataTableName
    TWILIO_ACCOUNT_SID: twilioAccountSid
    TWILIO_API_KEY_SID: twilioApiKeySid
    TWILIO_PHONE_NUMBER: twilioPhoneNumber
    TWILIO_MESSAGING_SERVICE_SID: twilioMessagingServiceSid
    ALLOWED_DESTINATION_COUNTRIES: allowedDestinationCountries
    ALLOWED_URL_HOSTS: allowedUrlHosts
    PUBLIC_BASE_URL: baseUrl
    VOICE_GREETING: voiceGreeting
    SMS_AUTO_REPLY: smsAutoReply
    CALL_FLOWS_FILE: callFlowsFile
    VOICE_FLOW: voiceFlow
    SMS_RULES_FILE: smsRulesFile
    SECRET_CACHE_SECONDS: secretCacheSeconds
    EVENTS_QUEUE_NAME: eventsQueueName
    EVENT_GRID_TOPIC_ENDPOINT: eventGridTopicEndpoint
    RECONCILE_SCHEDULE: reconcileSchedule
    RECONCILE_AFTER_MINUTES: reconcileAfterMinutes
    QUIET_HOURS: quietHours
  }
}

output name string = functionApp.name
output baseUrl string = baseUrl
