// From `run`'s network flags to what the container's config.json records
// (Docker's field names), and back to what attachContainer needs.
import { validateAttachments, type NetworkAttachment } from './endpoints.js';
import { exposedToSpec, parsePublish, type PortSpec } from './ports.js';
import type { NetworkMode } from '../spec.js';

export interface RunNetworkFlags {
  /** --network: bridge (default network), host, none, or a user-defined network's name or id. */
  network: string;
  /** --ip */
  ip?: string;
  /** --network-alias */
  aliases?: string[];
  /** -p */
  publish?: string[];
  /** -P */
  publishAll?: boolean;
  /** --expose */
  expose?: string[];
}

export interface RunNetworkConfig {
  /** What the stages do: host, none, or bridge (a namespace stage 0 connects). */
  mode: NetworkMode;
  exposedPorts: Record<string, object>;
  portBindings: Record<string, { HostIp: string; HostPort: string }[]>;
  publishAll: boolean;
  networkingConfig?: { EndpointsConfig: Record<string, { Aliases?: string[]; IPAMConfig?: { IPv4Address?: string } }> };
}

/** Checks the flags (network exists, --ip fits, -p parses) and returns the config fields; throws with Docker's messages. */
export async function runNetworkConfig(root: string, f: RunNetworkFlags, imageExposed: Record<string, object> = {}): Promise<RunNetworkConfig> {
  const exposedPorts: Record<string, object> = { ...imageExposed };
  for (const e of f.expose ?? []) {
    const [port, proto = 'tcp'] = e.split('/');
    if (!/^\d+(-\d+)?$/.test(port!) || (proto !== 'tcp' && proto !== 'udp')) throw new Error(`invalid --expose ${e}: expected PORT[/tcp|udp]`);
    exposedPorts[`${port}/${proto}`] = {};
  }
  const portBindings: RunNetworkConfig['portBindings'] = {};
  for (const p of f.publish ?? []) {
    for (const s of parsePublish(p)) {
      const key = `${s.containerPort}/${s.proto}`;
      exposedPorts[key] ??= {};
      const hostPort = s.hostPort === 0 ? '' : s.hostPortEnd ? `${s.hostPort}-${s.hostPortEnd}` : String(s.hostPort);
      (portBindings[key] ??= []).push({ HostIp: s.hostIp === '0.0.0.0' ? '' : s.hostIp, HostPort: hostPort });
    }
  }
  const publishAll = !!f.publishAll;
  const publishes = Object.keys(portBindings).length > 0 || publishAll;
  if (f.network === 'host' || f.network === 'none') {
    if (f.network === 'none' && publishes) throw new Error('conflicting options: port publishing and the container type network mode');
    if (f.ip || f.aliases?.length) throw new Error(`--ip and --network-alias need a bridge network, not --network ${f.network}`);
    // Docker: "Published ports are discarded when using host network mode".
    return { mode: f.network, exposedPorts, portBindings: f.network === 'host' ? {} : portBindings, publishAll: false };
  }
  const att: NetworkAttachment = { network: f.network, ip: f.ip, aliases: f.aliases };
  await validateAttachments(root, [att]);
  const endpoint = { ...(f.aliases?.length ? { Aliases: f.aliases } : {}), ...(f.ip ? { IPAMConfig: { IPv4Address: f.ip } } : {}) };
  return {
    mode: 'bridge',
    exposedPorts,
    portBindings,
    publishAll,
    ...(Object.keys(endpoint).length ? { networkingConfig: { EndpointsConfig: { [f.network]: endpoint } } } : {}),
  };
}

export interface ContainerNetworkFields {
  HostConfig: { NetworkMode: string; PortBindings?: Record<string, { HostIp: string; HostPort: string }[]>; PublishAllPorts?: boolean };
  Config: { ExposedPorts?: Record<string, object> };
  NetworkingConfig?: RunNetworkConfig['networkingConfig'];
}

/** The attachments and port specs a container's config asks for (its NetworkMode must be a bridge network). */
export function attachmentsFromConfig(c: ContainerNetworkFields): { networks: NetworkAttachment[]; ports: PortSpec[] } {
  const name = c.HostConfig.NetworkMode;
  const ep = c.NetworkingConfig?.EndpointsConfig[name];
  const ports: PortSpec[] = [];
  const bound = new Set<string>();
  for (const [key, list] of Object.entries(c.HostConfig.PortBindings ?? {})) {
    const [port, proto] = key.split('/');
    for (const b of list) ports.push(...parsePublish(`${b.HostIp}:${b.HostPort}:${port}/${proto}`));
    bound.add(key);
  }
  if (c.HostConfig.PublishAllPorts) {
    for (const key of Object.keys(c.Config.ExposedPorts ?? {})) if (!bound.has(key)) ports.push(exposedToSpec(key));
  }
  return { networks: [{ network: name, ip: ep?.IPAMConfig?.IPv4Address, aliases: ep?.Aliases }], ports };
}
