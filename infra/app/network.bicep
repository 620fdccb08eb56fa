// The virtual network of a deployment with vnetEnabled (main.bicep): one subnet that the
// Function App integrates with, for its outbound traffic, and one that holds the private
// endpoints of the storage account and the Key Vault (private-endpoints.bicep). Inbound
// requests, Twilio's webhooks among them, still reach the app on its public host name.

param name string
param location string
param tags object = {}

param addressPrefix string = '10.0.0.0/16'
// Every instance of the app takes an address here: a /24 leaves room for about 250, well
// above maximumInstanceCount's default of 40. Widen it before raising that past 250.
param appSubnetPrefix string = '10.0.1.0/24'
param privateEndpointsSubnetPrefix string = '10.0.2.0/24'

var appSubnetName = 'app'
var privateEndpointsSubnetName = 'private-endpoints'

// Subnets are declared inside the network, not as child resources, so that deploying the
// network again never removes a subnet that is in use.
resource vnet 'Microsoft.Network/virtualNetworks@2025-09-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: appSubnetName
        properties: {
          addressPrefix: appSubnetPrefix
          // The delegation Flex Consumption's virtual network integration requires
          // (Microsoft.App must be a registered resource provider of the subscription).
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: privateEndpointsSubnetName
        properties: {
          addressPrefix: privateEndpointsSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

output name string = vnet.name
output id string = vnet.id
output appSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, appSubnetName)
output privateEndpointsSubnetName string = privateEndpointsSubnetName
