// Stage 0's side of a container's network: what superviseContainer (run.ts)
// calls, so that run.ts only needs three hooks.
//
//   before launch   startContainerNetwork(): resolv.conf for bridge mode, the
//                   gate FIFO created and held open read-write (gate.ts)
//   onPid(pid)      attach /proc/<pid>/ns/net to the networks (endpoints.ts),
//                   then write "g" to the gate (or "x" on failure: init exits
//                   125 and `error` has the reason)
//   finish()        after the container is gone: wait for the attach to
//                   settle, tear the endpoints down, release the host ports,
//                   close the gate
import fs from 'node:fs';
import path from 'node:path';
import { mknod } from '../../image/native.js';
import { attachContainer, releaseContainerNetworks, type AttachedContainer, type NetworkAttachment } from './endpoints.js';
import { GATE_ABORT, GATE_GO } from './gate.js';
import { containerResolvConf } from './hosts.js';
import type { PortSpec } from './ports.js';

const S_IFIFO = 0o010000;

export const GATE_FILE = 'netgate';

export interface ContainerNetworkOptions {
  containerId: string;
  name: string;
  hostname: string;
  /** The container's bundle dir (hosts, resolv.conf, the gate FIFO). */
  dir: string;
  networks: NetworkAttachment[];
  ports?: PortSpec[];
}

export interface ContainerNetwork {
  /** Call with the container's PID 1 host pid as soon as it is known. */
  onPid(pid: number): void;
  /** Why the network could not be set up (the container then exits 125). */
  readonly error: string | undefined;
  readonly attached: AttachedContainer | undefined;
  /** After the container exited: tear everything down (idempotent). */
  finish(): Promise<void>;
}

/** The gate's path for a bundle dir (goes into the spec as netSync). */
export function gatePath(dir: string): string {
  return path.join(dir, GATE_FILE);
}

export async function startContainerNetwork(root: string, o: ContainerNetworkOptions): Promise<ContainerNetwork> {
  // Loopback nameservers do not work from the container's own namespace (hosts.ts).
  const resolv = path.join(o.dir, 'resolv.conf');
  const host = await fs.promises.readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  await fs.promises.writeFile(resolv, containerResolvConf(host, 'bridge'), { mode: 0o644 });

  const gate = gatePath(o.dir);
  fs.rmSync(gate, { force: true });
  mknod(gate, S_IFIFO | 0o600);
  const fd = fs.openSync(gate, 'r+');
  let setup: Promise<void> | undefined;
  let error: string | undefined;
  let attached: AttachedContainer | undefined;
  let closed = false;
  const say = (b: string) => {
    try {
      if (!closed) fs.writeSync(fd, b);
    } catch {
      /* init is gone */
    }
  };
  return {
    get error() {
      return error;
    },
    get attached() {
      return attached;
    },
    onPid(pid: number) {
      setup ??= attachContainer(root, {
        containerId: o.containerId,
        name: o.name,
        hostname: o.hostname,
        hostsPath: path.join(o.dir, 'hosts'),
        netnsPath: `/proc/${pid}/ns/net`,
        networks: o.networks,
        ports: o.ports,
      }).then(
        (a) => {
          attached = a;
          say(GATE_GO);
        },
        (e: Error) => {
          error = e.message;
          say(GATE_ABORT);
        },
      );
    },
    async finish() {
      await setup;
      attached?.closePorts();
      await releaseContainerNetworks(root, o.containerId);
      if (!closed) {
        closed = true;
        fs.closeSync(fd);
      }
      fs.rmSync(gate, { force: true });
    },
  };
}
