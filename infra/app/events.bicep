// The optional Event Grid custom topic that outcome events are published to (docs/events.md),
// beside the events queue. It takes CloudEvents 1.0, as the app sends them, and Entra ID
// tokens only: with local auth off no access key or SAS token can publish, so the app's
// identity publishes with EventGrid Data Sender on this topic (rbac.bicep).

param name string
param location string
param tags object = {}

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  // Lets subscriptions deliver (and dead-letter) with the topic's identity, not keys.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    minimumTlsVersionAllowed: '1.2'
    // checkov:skip=CKV_AZURE_193: the topic has no private endpoint, so the app publishes over its public endpoint, with or without the virtual network; every request needs an Entra token and the role
    publicNetworkAccess: 'Enabled'
  }
}

output name string = topic.name
output endpoint string = topic.properties.endpoint
