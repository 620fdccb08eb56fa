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

// Network access. The defaults are a deployment with vnetEnabled (main.bicep): the public
// endpoint is closed and the app reads secrets through the vault's private endpoint
// (private-endpoints.bicep). main.bicep passes enabled and Allow when vnetEnabled is false.
// Either way a read needs an Entra ID token and the Secrets User role. The secrets below are
// written through Azure Resource Manager, whose requests the vault's network rules don't
// govern (they apply to the data plane only), so provisioning works from anywhere.
@allowed([
  'enabled'
  'disabled'
])
param publicNetworkAccess string = 'disabled'
@allowed([
  'Allow'
  'Deny'
])
param networkDefaultAction string = 'Deny'

resource vault 'Microsoft.KeyVault/vaults@2026-02-01' = {
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
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: networkDefaultAction
      bypass: 'AzureServices'
    }
  }
}

// Secret names are the contract with the code (telephony/config/settings.py, secret_name).
resource authToken 'Microsoft.KeyVault/vaults/secrets@2026-02-01' = {
  parent: vault
  name: 'twilio-auth-token'
  properties: {
    value: twilioAuthToken
    contentType: 'text/plain'
  }
}

resource authTokenSecondary 'Microsoft.KeyVault/vaults/secrets@2026-02-01' = if (!empty(twilioAuthTokenSecondary)) {
  parent: vault
  name: 'twilio-auth-token-secondary'
  properties: {
    value: twilioAuthTokenSecondary
    contentType: 'text/plain'
  }
}

resource apiKeySecret 'Microsoft.KeyVault/vaults/secrets@2026-02-01' = if (!empty(twilioApiKeySecret)) {
  parent: vault
  name: 'twilio-api-key-secret'
  properties: {
    value: twilioApiKeySecret
    contentType: 'text/plain'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
