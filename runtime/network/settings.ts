// What `inspect` (NetworkSettings) and `ps` (PORTS) show of a container's
// networks, in Docker's shapes, from the live endpoint records.
import { containerEndpoints } from './endpoints.js';
import { formatPorts, type PortBinding } from './ports.js';

export interface NetworkSettingsInput {
  Id: string;
  HostConfig: { NetworkMode: string };
  Config?: { ExposedPorts?: Record<string, object> };
}

/** Docker's NetworkSettings. The top-level IPAddress/Gateway/MacAddress are the first network's (Docker fills them for the default bridge only). */
export async function networkSettings(root: string, c: NetworkSettingsInput): Promise<object> {
  const eps = await containerEndpoints(root, c.Id);
  const primary = eps[0];
  const ports: Record<string, { HostIp: string; HostPort: string }[] | null> = {};
  if (eps.length) {
    for (const k of Object.keys(c.Config?.ExposedPorts ?? {})) ports[k] = null;
    for (const b of eps.flatMap((e) => e.endpoint.Ports)) (ports[`${b.containerPort}/${b.proto}`] ??= []).push({ HostIp: b.hostIp, HostPort: String(b.hostPort) });
  }
  const prefix = (subnet?: string) => Number(subnet?.split('/')[1] ?? 0);
  return {
    Bridge: primary?.network.Bridge ?? '',
    SandboxKey: '',
    Ports: ports,
    Gateway: primary?.network.Gateway ?? '',
    IPAddress: primary?.endpoint.IPAddress ?? '',
    IPPrefixLen: primary ? prefix(primary.network.Subnet) : 0,
    MacAddress: primary?.endpoint.MacAddress ?? '',
    Networks: Object.fromEntries(
      eps.map((e) => [
        e.network.Name,
        {
          Aliases: e.endpoint.Aliases.length ? e.endpoint.Aliases : null,
          NetworkID: e.network.Id,
          EndpointID: e.endpoint.EndpointID,
          Gateway: e.network.Gateway,
          IPAddress: e.endpoint.IPAddress,
          IPPrefixLen: prefix(e.network.Subnet),
          MacAddress: e.endpoint.MacAddress,
        },
      ]),
    ),
  };
}

/** The published ports of a container right now. */
export async function publishedPorts(root: string, containerId: string): Promise<PortBinding[]> {
  return (await containerEndpoints(root, containerId)).flatMap((e) => e.endpoint.Ports);
}

/** `ps` PORTS text. */
export async function portsText(root: string, containerId: string): Promise<string> {
  return formatPorts(await publishedPorts(root, containerId));
}
