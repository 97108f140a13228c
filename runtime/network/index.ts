// Container networking: the public face of runtime/network (README.md).
export { attachContainer, containerEndpoints, disconnectContainer, pruneStale, releaseContainerNetworks, validateAttachments, type AttachOptions, type AttachedContainer, type AttachedEndpoint, type NetworkAttachment } from './endpoints.js';
export { createNetwork, findNetwork, listNetworks, networkInspect, removeNetwork, PREDEFINED, type CreateNetworkOptions } from './networks.js';
export { containerResolvConf, hostsContent, HOSTS_BASE } from './hosts.js';
export { exposedToSpec, formatPorts, parsePublish, PortAllocatedError, type PortBinding, type PortSpec } from './ports.js';
export { NetworkNotFoundError, type Endpoint, type NetworkRecord } from './state.js';
export { networkSettings, portsText, publishedPorts } from './settings.js';
export { startContainerNetwork, gatePath, type ContainerNetwork, type ContainerNetworkOptions } from './sync.js';
export { attachmentsFromConfig, runNetworkConfig, type RunNetworkFlags } from './config.js';
