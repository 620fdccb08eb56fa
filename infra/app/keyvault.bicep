// Key Vault for the Twilio secrets. Access is by Azure RBAC only (no access policies);
// soft delete and purge protection keep a deleted secret or vault recoverable.

param name string
param location string
param tags object = {}

@secure()
@minLength(1)
@description('Twilio auth token, stored as secret twilio-auth-token.')
param twilioAuthToken string

@secure()
@description('Previous auth token during a rotation; the secret is created only when set.')
param twilioAuthTokenSecondary string = ''

@secure()
@description('Secret of the Twilio API key; the secret is created only when set.')
param twilioApiKeySecret string = ''

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // No virtual network integration, so the app reaches the vault over its public
      // endpoint; reads still need an Entra token and the Secrets User role.
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Secret names are the contract with the code (telephony/config/settings.py, secret_name).
resource authToken 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'twilio-auth-token'
  properties: {
    value: twilioAuthToken
    contentType: 'text/plain'
  }
}

resource authTokenSecondary 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(twilioAuthTokenSecondary)) {
  parent: vault
  name: 'twilio-auth-token-secondary'
  properties: {
    value: twilioAuthTokenSecondary
    contentType: 'text/plain'
  }
}

resource apiKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(twilioApiKeySecret)) {
  parent: vault
  name: 'twilio-api-key-secret'
  properties: {
    value: twilioApiKeySecret
    contentType: 'text/plain'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
