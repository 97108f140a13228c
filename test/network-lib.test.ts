// runtime/network against the real kernel, without containers: network
// namespaces made by the test (`unshare --net sleep`), as root. Only the
// subnets the test creates, loopback, and tsbuild's own chains are touched.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TempDirs } from './helpers.js';
import {
  attachContainer,
  createNetwork,
  listNetworks,
  pruneStale,
  releaseContainerNetworks,
  removeNetwork,
  disconnectContainer,
  type AttachedContainer,
} from '../runtime/network/index.js';
import { listNetworkRecords } from '../runtime/network/state.js';
import { procStartTime } from '../runtime/container.js';
import { hostSnapshot, leftovers } from './network-helpers.js';

const dirs = new TempDirs();
let root: string;
const sleepers: ChildProcess[] = [];

/** A fresh network namespace held by a sleeping process; returns its /proc path. */
async function netns(): Promise<{ path: string; pid: number }> {
  const child = spawn('unshare', ['--net', 'sleep', '600'], { stdio: 'ignore' });
  sleepers.push(child);
  // unshare execs sleep in the new namespace: wait until the pid's netns differs from ours.
  const mine = readlinkNs('self');
  for (let i = 0; i < 200; i++) {
    const ns = readlinkNs(String(child.pid));
    if (ns && ns !== mine) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  return { path: `/proc/${child.pid}/ns/net`, pid: child.pid! };
}

function readlinkNs(pid: string): string | undefined {
  try {
    return execFileSync('readlink', [`/proc/${pid}/ns/net`], { encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
}

const inNs = (ns: string, ...cmd: string[]) => execFileSync('nsenter', [`--net=${ns}`, '--', ...cmd], { encoding: 'utf8', timeout: 20_000 });
const pingOk = (ns: string, ip: string) => {
  try {
    inNs(ns, '/bin/busybox', 'ping', '-c', '1', '-W', '1', ip);
    return true;
  } catch {
    return false;
  }
};

const cid = (n: number) => n.toString(16).padStart(4, '0').repeat(16);
let before: ReturnType<typeof hostSnapshot>;

beforeAll(async () => {
  root = path.join(dirs.make('netlib'), 'root');
  mkdirSync(root, { recursive: true });
  if (!existsSync('/bin/busybox')) throw new Error('/bin/busybox missing (apt-get install busybox-static)');
  before = hostSnapshot();
});

afterAll(async () => {
  for (const s of sleepers) s.kill('SIGKILL');
  // Whatever a failed test left: everything of this root goes.
  for (const rec of await listNetworkRecords(root).catch(() => [])) for (const c of Object.keys(rec.Endpoints)) await releaseContainerNetworks(root, c).catch(() => {});
  dirs.cleanup();
  await pruneStale(path.join(root, 'gone')).catch(() => {});
});

describe('networks', () => {
  it('creates the predefined networks on first use, and user networks without host state', async () => {
    const nets = await listNetworks(root);
    expect(nets.map((n) => n.Name)).toEqual(expect.arrayContaining(['bridge', 'host', 'none']));
    const br = nets.find((n) => n.Name === 'bridge')!;
    expect(br.Bridge).toMatch(/^tsbuild\d+$/);
    const app = await createNetwork(root, { name: 'lib-app', subnet: '10.231.0.0/24' });
    expect(app.Gateway).toBe('10.231.0.1');
    expect(app.Bridge).toMatch(/^tsb-[0-9a-f]{8}$/);
    expect(existsSync(`/sys/class/net/${app.Bridge}`)).toBe(false); // lazy: no bridge before a container
    await expect(createNetwork(root, { name: 'lib-app' })).rejects.toThrow(/already exists/);
    await expect(createNetwork(root, { name: 'x', subnet: '10.231.0.128/25' })).rejects.toThrow(/overlaps with other one/);
    await expect(createNetwork(root, { name: 'y', subnet: '10.232.0.0/24', gateway: '10.232.1.1' })).rejects.toThrow(/invalid gateway/);
    await expect(createNetwork(root, { name: 'z', driver: 'overlay' })).rejects.toThrow(/plugin "overlay" not found/);
    await expect(createNetwork(root, { name: 'bad name' })).rejects.toThrow(/invalid network name/);
    const hostRoute = execFileSync('ip', ['-4', 'route'], { encoding: 'utf8' }).split('\n').find((l) => /^\d+\.\d+\.\d+\.\d+\/\d+ /.test(l));
    if (hostRoute) await expect(createNetwork(root, { name: 'clash', subnet: hostRoute.split(' ')[0]! })).rejects.toThrow(/overlaps the host's route/);
    await expect(removeNetwork(root, 'bridge')).rejects.toThrow(/pre-defined network and cannot be removed/);
    const auto = await createNetwork(root, { name: 'lib-auto' });
    expect(auto.AutoSubnet).toBe(true);
    await removeNetwork(root, 'lib-auto');
    expect((await listNetworks(root)).some((n) => n.Name === 'lib-auto')).toBe(false);
  });
});

describe('endpoints in real network namespaces', () => {
  it('connects namespaces: addresses, routes, peers by IP, hosts files, isolation, and removes it all', async () => {
    await createNetwork(root, { name: 'lib-other', subnet: '10.233.0.0/24' });
    const [a, b, c] = [await netns(), await netns(), await netns()];
    const hostsDir = dirs.make('netlib-hosts');
    const hosts = (n: number) => {
      const p = path.join(hostsDir, `hosts${n}`);
      writeFileSync(p, 'placeholder that is longer than nothing\n'.repeat(20));
      return p;
    };
    const ha = hosts(1);
    const hb = hosts(2);
    const ea = await attachContainer(root, { containerId: cid(1), name: 'alpha', hostname: 'alpha-h', hostsPath: ha, netnsPath: a.path, networks: [{ network: 'lib-app', aliases: ['web'] }] });
    const eb = await attachContainer(root, { containerId: cid(2), name: 'beta', hostname: 'beta-h', hostsPath: hb, netnsPath: b.path, networks: [{ network: 'lib-app', ip: '10.231.0.77' }] });
    const ec = await attachContainer(root, { containerId: cid(3), name: 'gamma', hostname: 'gamma-h', netnsPath: c.path, networks: [{ network: 'lib-other' }] });
    const ipA = ea.endpoints[0]!.endpoint.IPAddress;
    expect(ipA).toBe('10.231.0.2');
    expect(eb.endpoints[0]!.endpoint.IPAddress).toBe('10.231.0.77');
    const ipC = ec.endpoints[0]!.endpoint.IPAddress;

    // Inside: eth0 with the address and MAC, lo up, default route via the gateway.
    const addrA = inNs(a.path, 'ip', '-4', '-o', 'addr');
    expect(addrA).toMatch(/\blo\b.*127\.0\.0\.1/);
    expect(addrA).toMatch(/eth0\s+inet 10\.231\.0\.2\/24/);
    expect(inNs(a.path, 'ip', 'link', 'show', 'eth0')).toContain('02:42:0a:e7:00:02');
    expect(inNs(a.path, 'ip', 'route')).toMatch(/default via 10\.231\.0\.1 dev eth0/);

    expect(pingOk(a.path, '10.231.0.77')).toBe(true); // same network
    expect(pingOk(a.path, '10.231.0.1')).toBe(true); // gateway (host)
    expect(pingOk(c.path, ipA)).toBe(false); // another network: isolated
    expect(pingOk(a.path, ipC)).toBe(false);

    // hosts files rewritten in place with the peers (names, aliases, short ids).
    const textA = readFileSync(ha, 'utf8');
    expect(textA).toMatch(/^127\.0\.0\.1\tlocalhost$/m);
    expect(textA).toContain('10.231.0.2\talpha-h alpha web\n');
    expect(textA).toContain(`10.231.0.77\tbeta ${cid(2).slice(0, 12)}\n`);
    expect(textA).not.toContain('placeholder');
    expect(readFileSync(hb, 'utf8')).toContain(`10.231.0.2\talpha web ${cid(1).slice(0, 12)}\n`);

    // Two networks on one container: eth1, no second default route; disconnect takes it away again.
    const both = await attachContainer(root, { containerId: cid(1), name: 'alpha', hostname: 'alpha-h', hostsPath: ha, netnsPath: a.path, networks: [{ network: 'lib-other' }] });
    expect(both.endpoints[0]!.endpoint.IfName).toBe('eth1');
    expect(inNs(a.path, 'ip', 'route').match(/default/g)).toHaveLength(1);
    expect(pingOk(a.path, ipC)).toBe(true);
    await disconnectContainer(root, 'lib-other', cid(1));
    expect(inNs(a.path, 'ip', '-o', 'link')).not.toContain('eth1');

    // network rm refuses while attached
    await expect(removeNetwork(root, 'lib-app')).rejects.toThrow(/has active endpoints/);

    await releaseContainerNetworks(root, cid(1));
    expect(readFileSync(hb, 'utf8')).not.toContain('alpha'); // a peer that leaves leaves the others' hosts files
    expect(pingOk(b.path, '10.231.0.1')).toBe(true); // the network stays up for the rest
    for (const n of [2, 3]) await releaseContainerNetworks(root, cid(n));
    await releaseContainerNetworks(root, cid(1)); // idempotent
    for (const rec of await listNetworkRecords(root)) expect(rec.Endpoints).toEqual({});
    expect(leftovers(before, hostSnapshot(), root)).toEqual([]);
  });

  it('publishes ports: reachable on 127.0.0.1 and the host address; port conflicts are refused; rules go with the container', async () => {
    const ns = await netns();
    const www = dirs.make('netlib-www');
    writeFileSync(path.join(www, 'index.html'), 'hello from the namespace\n');
    const att: AttachedContainer = await attachContainer(root, {
      containerId: cid(9),
      name: 'web',
      hostname: 'web',
      netnsPath: ns.path,
      networks: [{ network: 'bridge' }],
      ports: [
        { proto: 'tcp', containerPort: 80, hostIp: '0.0.0.0', hostPort: 0 },
        { proto: 'tcp', containerPort: 81, hostIp: '127.0.0.1', hostPort: 0 },
      ],
    });
    try {
      const [p80, p81] = att.ports;
      expect(p80!.hostPort).toBeGreaterThan(1024);
      const httpd = spawn('nsenter', [`--net=${ns.path}`, '--', '/bin/busybox', 'httpd', '-f', '-p', '80', '-h', www], { stdio: 'ignore' });
      const httpd81 = spawn('nsenter', [`--net=${ns.path}`, '--', '/bin/busybox', 'httpd', '-f', '-p', '81', '-h', www], { stdio: 'ignore' });
      sleepers.push(httpd, httpd81);
      const get = async (url: string) => {
        for (let i = 0; ; i++) {
          try {
            return await (await fetch(url, { signal: AbortSignal.timeout(3000) })).text();
          } catch (e) {
            if (i > 30) throw e;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      };
      expect(await get(`http://127.0.0.1:${p80!.hostPort}/`)).toBe('hello from the namespace\n');
      expect(await get(`http://127.0.0.1:${p81!.hostPort}/`)).toBe('hello from the namespace\n');
      const hostIp = execFileSync('ip', ['-4', '-o', 'route', 'get', '1.1.1.1'], { encoding: 'utf8' }).match(/src (\S+)/)?.[1];
      if (hostIp) {
        expect(await get(`http://${hostIp}:${p80!.hostPort}/`)).toBe('hello from the namespace\n');
        // -p 127.0.0.1::81 is published on loopback only
        await expect(fetch(`http://${hostIp}:${p81!.hostPort}/`, { signal: AbortSignal.timeout(1500) })).rejects.toThrow();
      }
      // The host port is held: another bind (another container, another program) fails.
      const other = await netns();
      await expect(
        attachContainer(root, { containerId: cid(10), name: 'web2', hostname: 'w2', netnsPath: other.path, networks: [{ network: 'bridge' }], ports: [{ proto: 'tcp', containerPort: 80, hostIp: '0.0.0.0', hostPort: p80!.hostPort }] }),
      ).rejects.toThrow(`Bind for 0.0.0.0:${p80!.hostPort} failed: port is already allocated`);
      expect((await listNetworkRecords(root)).some((r) => r.Endpoints[cid(10)])).toBe(false); // nothing half-made
      expect(execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' })).toContain(`--dport ${p80!.hostPort}`);
      httpd.kill();
      httpd81.kill();
    } finally {
      await releaseContainerNetworks(root, cid(9));
      att.closePorts();
    }
    expect(execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' })).not.toContain(`tsb-ep:`.concat((await listNetworkRecords(root)).find((r) => r.Name === 'bridge')!.Id.slice(0, 12)));
    expect(leftovers(before, hostSnapshot(), root)).toEqual([]);
  });

  it('publishes a UDP port', async () => {
    const ns = await netns();
    const att = await attachContainer(root, {
      containerId: cid(11),
      name: 'udp',
      hostname: 'udp',
      netnsPath: ns.path,
      networks: [{ network: 'bridge' }],
      ports: [{ proto: 'udp', containerPort: 53, hostIp: '0.0.0.0', hostPort: 0 }],
    });
    try {
      const hostPort = att.ports[0]!.hostPort;
      // A UDP listener inside the namespace that prints the first datagram and exits.
      const listener = spawn('nsenter', [`--net=${ns.path}`, '--', process.execPath, '-e', "const s=require('dgram').createSocket('udp4');s.on('message',(m)=>{process.stdout.write(m);process.exit(0)});s.bind(53,()=>process.stdout.write('ready\\n'))"], { stdio: ['ignore', 'pipe', 'inherit'] });
      sleepers.push(listener);
      let out = '';
      listener.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
      for (let i = 0; i < 100 && !out.includes('ready'); i++) await new Promise((r) => setTimeout(r, 50));
      const dgram = await import('node:dgram');
      const sock = dgram.createSocket('udp4');
      for (let i = 0; i < 20 && !out.includes('over udp'); i++) {
        sock.send('over udp', hostPort, '127.0.0.1');
        await new Promise((r) => setTimeout(r, 100));
      }
      sock.close();
      expect(out).toBe('ready\nover udp');
    } finally {
      await releaseContainerNetworks(root, cid(11));
      att.closePorts();
    }
    expect(leftovers(before, hostSnapshot(), root)).toEqual([]);
  });

  it('gives 10 concurrent attachments 10 distinct addresses', async () => {
    await createNetwork(root, { name: 'lib-many' });
    const nss = await Promise.all(Array.from({ length: 10 }, () => netns()));
    const t0 = Date.now();
    const res = await Promise.all(nss.map((ns, i) => attachContainer(root, { containerId: cid(100 + i), name: `m${i}`, hostname: `m${i}`, netnsPath: ns.path, networks: [{ network: 'lib-many' }] })));
    const ms = Date.now() - t0;
    const ips = res.map((r) => r.endpoints[0]!.endpoint.IPAddress);
    expect(new Set(ips).size).toBe(10);
    const rec = (await listNetworkRecords(root)).find((r) => r.Name === 'lib-many')!;
    expect(Object.keys(rec.Endpoints)).toHaveLength(10);
    console.log(`10 concurrent attachments: ${ms} ms`);
    await Promise.all(res.map((_, i) => releaseContainerNetworks(root, cid(100 + i))));
    expect(leftovers(before, hostSnapshot(), root)).toEqual([]);
  });

  it('prunes endpoints whose owner died (crash, SIGKILL), with their rules and bridge', async () => {
    const ns = await netns();
    const dead = spawn('true');
    await new Promise((r) => dead.on('spawn', r));
    const owner = { Pid: dead.pid!, StartTime: procStartTime(dead.pid!) ?? 1 };
    await new Promise((r) => dead.on('exit', r));
    const att = await attachContainer(root, {
      containerId: cid(50),
      name: 'orphan',
      hostname: 'orphan',
      netnsPath: ns.path,
      networks: [{ network: 'lib-app' }],
      ports: [{ proto: 'tcp', containerPort: 80, hostIp: '0.0.0.0', hostPort: 0 }],
      owner,
    });
    att.closePorts();
    const veth = att.endpoints[0]!.endpoint.Veth;
    expect(existsSync(`/sys/class/net/${veth}`)).toBe(true);
    await pruneStale(root);
    expect(existsSync(`/sys/class/net/${veth}`)).toBe(false);
    expect((await listNetworkRecords(root)).some((r) => r.Endpoints[cid(50)])).toBe(false);
    expect(leftovers(before, hostSnapshot(), root)).toEqual([]);
  });

  it('removes the bridges and rules of a root that no longer exists', async () => {
    const gone = path.join(dirs.make('netlib-gone'), 'root');
    mkdirSync(gone);
    const ns = await netns();
    await createNetwork(gone, { name: 'doomed', subnet: '10.234.0.0/24' });
    const att = await attachContainer(gone, { containerId: cid(60), name: 'd', hostname: 'd', netnsPath: ns.path, networks: [{ network: 'doomed' }] });
    const bridge = att.endpoints[0]!.network.Bridge!;
    expect(existsSync(`/sys/class/net/${bridge}`)).toBe(true);
    execFileSync('rm', ['-rf', gone]);
    await pruneStale(root); // any root's prune finds it
    expect(existsSync(`/sys/class/net/${bridge}`)).toBe(false);
    expect(execFileSync('iptables-save', { encoding: 'utf8' })).not.toContain(att.endpoints[0]!.network.Id.slice(0, 12));
    expect(leftovers(before, hostSnapshot(), root)).toEqual([]);
    expect(readdirSync(path.join(root, 'networks')).length).toBeGreaterThan(0);
  });
});
