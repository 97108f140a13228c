// Published ports: `-p` parsing (Docker's syntax), and reserving host ports.
//
// Forwarding itself is iptables DNAT (iptables.ts, README.md says why). A DNAT
// rule alone does not stop another program from binding the same host port,
// nor two containers from publishing the same one. So the process that
// supervises the container (tsbuild run, or the monitor of run -d) also binds
// every published host port for the container's lifetime, as Docker does: a
// taken port fails the start ("port is already allocated"), port 0 asks the
// kernel for a free one (`-p 80`, -P), and the reservation ends with the
// process, even on SIGKILL. No connection ever reaches these sockets: DNAT
// rewrites the destination in PREROUTING/OUTPUT, before the socket lookup.
import net from 'node:net';
import dgram from 'node:dgram';
import { isIPv4 } from './ipv4.js';

export type Proto = 'tcp' | 'udp';

/** What was asked for. hostPort 0 = any free port; hostPortEnd > hostPort = the first free port of that range. */
export interface PortSpec {
  proto: Proto;
  containerPort: number;
  hostIp: string;
  hostPort: number;
  hostPortEnd?: number;
}

/** What is in effect (hostPort resolved). */
export interface PortBinding {
  proto: Proto;
  containerPort: number;
  /** "0.0.0.0" for every host address. */
  hostIp: string;
  hostPort: number;
}

function parseRange(s: string, what: string, full: string): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(s);
  if (!m) throw new Error(`invalid ${what} "${s}" in "${full}"`);
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  if (a < 1 || b > 65535 || b < a) throw new Error(`invalid ${what} "${s}" in "${full}": ports are 1-65535`);
  return [a, b];
}

/**
 * Parses one -p value: `[ip:[hostPort]:]containerPort[/tcp|udp]`, where the
 * ports may be ranges (`8000-8001:80-81`; a host range with a single
 * container port means "the first free port of the range", as Docker).
 */
export function parsePublish(spec: string): PortSpec[] {
  let rest = spec;
  let proto: Proto = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash !== -1) {
    const p = rest.slice(slash + 1).toLowerCase();
    if (p !== 'tcp' && p !== 'udp') throw new Error(`invalid proto "${rest.slice(slash + 1)}" in "${spec}": tcp or udp`);
    proto = p;
    rest = rest.slice(0, slash);
  }
  if (rest.startsWith('[')) throw new Error(`invalid port spec "${spec}": IPv6 host addresses are not supported (tsbuild networks are IPv4 only)`);
  const parts = rest.split(':');
  let hostIp = '0.0.0.0';
  let hostPart = '';
  let ctrPart: string;
  if (parts.length === 1) ctrPart = parts[0]!;
  else if (parts.length === 2) [hostPart, ctrPart] = parts as [string, string];
  else if (parts.length === 3) {
    hostIp = parts[0] || '0.0.0.0';
    hostPart = parts[1]!;
    ctrPart = parts[2]!;
    if (!isIPv4(hostIp)) throw new Error(`invalid IP address "${parts[0]}" in "${spec}" (an IPv4 address of this host, or omit it for all)`);
  } else throw new Error(`invalid port spec "${spec}": expected [ip:[hostPort]:]containerPort[/tcp|udp]`);
  const [c0, c1] = parseRange(ctrPart, 'container port', spec);
  const n = c1 - c0 + 1;
  if (hostPart === '') {
    return Array.from({ length: n }, (_, i) => ({ proto, containerPort: c0 + i, hostIp, hostPort: 0 }));
  }
  const [h0, h1] = parseRange(hostPart, 'host port', spec);
  if (n === 1 && h1 > h0) return [{ proto, containerPort: c0, hostIp, hostPort: h0, hostPortEnd: h1 }];
  if (h1 - h0 + 1 !== n) throw new Error(`invalid port spec "${spec}": the host and container port ranges differ in size`);
  return Array.from({ length: n }, (_, i) => ({ proto, containerPort: c0 + i, hostIp, hostPort: h0 + i }));
}

/** "80/tcp" (an image's ExposedPorts key) -> a spec publishing it on a random host port (-P). */
export function exposedToSpec(key: string): PortSpec {
  const [port, proto = 'tcp'] = key.split('/');
  if (proto !== 'tcp' && proto !== 'udp') throw new Error(`exposed port "${key}": only tcp and udp can be published`);
  const [a] = parseRange(port!, 'exposed port', key);
  return { proto, containerPort: a, hostIp: '0.0.0.0', hostPort: 0 };
}

export class PortAllocatedError extends Error {}

export interface Reservation {
  bindings: PortBinding[];
  /** Releases the host ports (idempotent). */
  close(): void;
}

function bindOne(proto: Proto, host: string, port: number): Promise<{ port: number; close(): void }> {
  return new Promise((resolve, reject) => {
    if (proto === 'tcp') {
      const srv = net.createServer((s) => s.destroy());
      srv.once('error', reject);
      srv.listen({ host, port, exclusive: true, backlog: 1 }, () => {
        srv.unref();
        resolve({ port: (srv.address() as net.AddressInfo).port, close: () => srv.close() });
      });
    } else {
      const sock = dgram.createSocket({ type: 'udp4' });
      sock.once('error', reject);
      sock.bind({ address: host, port, exclusive: true }, () => {
        sock.unref();
        resolve({
          port: sock.address().port,
          close: () => {
            try {
              sock.close();
            } catch {
              /* closed */
            }
          },
        });
      });
    }
  });
}

/** Binds every spec's host port (see the header); all or nothing. */
export async function reservePorts(specs: PortSpec[]): Promise<Reservation> {
  const held: { close(): void }[] = [];
  const bindings: PortBinding[] = [];
  const close = () => {
    for (const h of held.splice(0)) h.close();
  };
  try {
    for (const s of specs) {
      const last = s.hostPortEnd ?? s.hostPort;
      let got: { port: number; close(): void } | undefined;
      let lastErr: unknown;
      for (let p = s.hostPort; p <= last && !got; p++) {
        try {
          got = await bindOne(s.proto, s.hostIp, p);
        } catch (e) {
          lastErr = e;
        }
      }
      if (!got) {
        const code = (lastErr as NodeJS.ErrnoException | undefined)?.code;
        const where = `${s.hostIp}:${s.hostPortEnd ? `${s.hostPort}-${s.hostPortEnd}` : s.hostPort}`;
        if (code === 'EADDRINUSE') throw new PortAllocatedError(`Bind for ${where} failed: port is already allocated`);
        if (code === 'EADDRNOTAVAIL') throw new PortAllocatedError(`Bind for ${where} failed: ${s.hostIp} is not an address of this host`);
        throw new PortAllocatedError(`Bind for ${where} failed: ${(lastErr as Error).message}`);
      }
      held.push(got);
      bindings.push({ proto: s.proto, containerPort: s.containerPort, hostIp: s.hostIp || '0.0.0.0', hostPort: got.port });
    }
  } catch (e) {
    close();
    throw e;
  }
  return { bindings, close };
}

/** Docker's `ps` PORTS text: 0.0.0.0:8080->80/tcp, ... */
export function formatPorts(bindings: PortBinding[]): string {
  return bindings.map((b) => `${b.hostIp}:${b.hostPort}->${b.containerPort}/${b.proto}`).join(', ');
}
