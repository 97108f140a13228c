// Container networking through the CLI, as root, against the real kernel:
// only the subnets tsbuild creates, loopback and the host's own address.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busyboxStore, TempDirs, tsbuildCli } from './helpers.js';
import { hostSnapshot, leftovers, type HostSnapshot } from './network-helpers.js';
import { listNetworkRecords } from '../runtime/network/state.js';
import { networkSettings, pruneStale } from '../runtime/network/index.js';
import { readContainerConfig } from '../runtime/container.js';

const dirs = new TempDirs();
let root: string;
let tsbuild: ReturnType<typeof tsbuildCli>;
let before: HostSnapshot;
let allocBefore: string;

/** A TCP port nothing listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '0.0.0.0', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function get(url: string, tries = 30): Promise<string> {
  for (let i = 0; ; i++) {
    try {
      return await (await fetch(url, { signal: AbortSignal.timeout(3000) })).text();
    } catch (e) {
      if (i >= tries) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** The address part of every network record's endpoints (the allocation state), as text. */
async function allocations(): Promise<string> {
  return JSON.stringify((await listNetworkRecords(root)).map((r) => [r.Name, Object.values(r.Endpoints).map((e) => e.IPAddress)]));
}

const hostAddress = () => execFileSync('ip', ['-4', '-o', 'route', 'get', '1.1.1.1'], { encoding: 'utf8' }).match(/src (\S+)/)?.[1];
// An HTTP server in a container: busybox httpd in the foreground, serving one page.
const httpd = (page: string) => ['sh', '-c', `mkdir -p /www && echo ${page} > /www/index.html && exec httpd -f -p 80 -h /www`];
// busybox wget with a deadline (Debian's busybox 1.35 crashes on wget -T). The
// trailing `exit` keeps sh as PID 1: a wget exec'd as PID 1 would ignore
// timeout's SIGTERM (no handler), as it would under Docker.
const wget = (url: string) => ['sh', '-c', `timeout 5 wget -q -O- ${url}; exit $?`];

beforeAll(async () => {
  ({ root } = await busyboxStore(dirs, 'net'));
  tsbuild = tsbuildCli(root);
  before = hostSnapshot();
  expect((await tsbuild(['network', 'ls'])).code).toBe(0); // creates the predefined networks' records
  allocBefore = await allocations();
});

afterAll(async () => {
  const ps = await tsbuild(['ps', '-aq', '--no-trunc']);
  for (const id of ps.stdout.split('\n').filter(Boolean)) await tsbuild(['rm', '-f', id]);
  for (const n of ['appnet', 'other', 'many']) await tsbuild(['network', 'rm', n]);
  dirs.cleanup();
  await pruneStale(root).catch(() => {}); // the root is gone: removes whatever a failed test left on the host
});

describe('bridge networking', () => {
  it('publishes a port: an HTTP GET from the host to 127.0.0.1:PORT and to the host address returns the page', async () => {
    const port = await freePort();
    const r = await tsbuild(['run', '-d', '--name', 'web1', '-p', `${port}:80`, '-p', '81', 'busybox', ...httpd('hello-from-web1')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(await get(`http://127.0.0.1:${port}/`)).toBe('hello-from-web1\n');
    const addr = hostAddress();
    if (addr) expect(await get(`http://${addr}:${port}/`)).toBe('hello-from-web1\n');

    const p = await tsbuild(['port', 'web1']);
    expect(p.stdout).toMatch(new RegExp(`^80/tcp -> 0\\.0\\.0\\.0:${port}\\n81/tcp -> 0\\.0\\.0\\.0:\\d+\\n$`));
    expect((await tsbuild(['port', 'web1', '80'])).stdout).toBe(`0.0.0.0:${port}\n`);
    const none = await tsbuild(['port', 'web1', '82/udp']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/No public port '82\/udp' published for web1/);
    expect((await tsbuild(['ps', '--format', '{{.Names}} {{.Ports}}'])).stdout).toMatch(new RegExp(`web1 0\\.0\\.0\\.0:${port}->80/tcp, 0\\.0\\.0\\.0:\\d+->81/tcp`));
    const inspect = JSON.parse((await tsbuild(['inspect', 'web1'])).stdout)[0];
    expect(inspect.HostConfig.NetworkMode).toBe('bridge');
    expect(inspect.HostConfig.PortBindings['80/tcp']).toEqual([{ HostIp: '', HostPort: String(port) }]);
    // NetworkSettings as inspect will show it (runtime/lifecycle.ts is to call networkSettings()).
    const settings = (await networkSettings(root, await readContainerConfig(root, inspect.Id))) as { IPAddress: string; Ports: Record<string, unknown>; Networks: Record<string, { IPAddress: string }> };
    expect(settings.IPAddress).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(settings.Networks.bridge!.IPAddress).toBe(settings.IPAddress);
    expect(settings.Ports['80/tcp']).toEqual([{ HostIp: '0.0.0.0', HostPort: String(port) }]);

    // The same host port again: refused, exit 125, nothing left of the second container's network.
    const clash = await tsbuild(['run', '--rm', '-p', `${port}:80`, 'busybox', 'true']);
    expect(clash.code).toBe(125);
    expect(clash.stderr).toContain(`Bind for 0.0.0.0:${port} failed: port is already allocated`);

    expect((await tsbuild(['rm', '-f', 'web1'])).code).toBe(0);
    await expect(fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1500) })).rejects.toThrow();
    expect(execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' })).not.toContain(`--dport ${port} `);
  });

  it('gives the container eth0 with an address, a default route, its name in /etc/hosts and a usable resolv.conf', async () => {
    const r = await tsbuild(['run', '--rm', '--hostname', 'box', 'busybox', 'sh', '-c', 'ip -o -4 addr show eth0; ip route; cat /etc/hosts; cat /etc/resolv.conf']);
    expect(r.code).toBe(0);
    const ip = r.stdout.match(/eth0\s+inet (\d+\.\d+\.\d+\.\d+)\//)?.[1];
    expect(ip).toBeDefined();
    expect(r.stdout).toMatch(/^default via \d+\.\d+\.\d+\.1 dev eth0/m);
    expect(r.stdout).toContain(`${ip}\tbox\n`);
    expect(r.stdout).not.toMatch(/nameserver 127\./);
    expect(r.stdout).toMatch(/^nameserver /m);
  });

  it('two containers on a user network reach each other by name and alias; a third on another network cannot', async () => {
    expect((await tsbuild(['network', 'create', 'appnet'])).code).toBe(0);
    expect((await tsbuild(['network', 'create', '--subnet', '10.241.0.0/24', 'other'])).code).toBe(0);
    const web = await tsbuild(['run', '-d', '--name', 'web2', '--network', 'appnet', '--network-alias', 'www', 'busybox', ...httpd('hello-from-web2')]);
    expect(web.code).toBe(0);
    const byName = await tsbuild(['run', '--rm', '--network', 'appnet', 'busybox', ...wget('http://web2/')]);
    expect(byName.stdout).toBe('hello-from-web2\n');
    expect(byName.code).toBe(0);
    expect((await tsbuild(['run', '--rm', '--network', 'appnet', 'busybox', ...wget('http://www/')])).stdout).toBe('hello-from-web2\n');

    const ip = (await tsbuild(['inspect', '-f', '{{.NetworkSettings.IPAddress}}', 'web2'])).stdout.trim();
    const addr = /^\d+\.\d+\.\d+\.\d+$/.test(ip) ? ip : JSON.parse((await tsbuild(['network', 'inspect', 'appnet'])).stdout)[0].Containers[Object.keys(JSON.parse((await tsbuild(['network', 'inspect', 'appnet'])).stdout)[0].Containers)[0]!].IPv4Address.split('/')[0];
    const third = await tsbuild(['run', '--rm', '--network', 'other', 'busybox', ...wget(`http://${addr}/`)]);
    expect(third.code).not.toBe(0);
    expect(third.stdout).toBe('');
    const noName = await tsbuild(['run', '--rm', '--network', 'other', 'busybox', ...wget('http://web2/')]);
    expect(noName.code).not.toBe(0);

    const busy = await tsbuild(['network', 'rm', 'appnet']);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/has active endpoints/);
    expect((await tsbuild(['rm', '-f', 'web2'])).code).toBe(0);
  });

  it('network connect / disconnect a running container', async () => {
    expect((await tsbuild(['run', '-d', '--name', 'hop', '--network', 'other', 'busybox', 'sleep', '60'])).code).toBe(0);
    expect((await tsbuild(['network', 'connect', '--alias', 'hopper', 'appnet', 'hop'])).code).toBe(0);
    const seen = await tsbuild(['run', '--rm', '--network', 'appnet', 'busybox', 'sh', '-c', 'ping -c 1 -W 2 hopper >/dev/null && echo reached']);
    expect(seen.stdout).toBe('reached\n');
    expect((await tsbuild(['network', 'disconnect', 'appnet', 'hop'])).code).toBe(0);
    const gone = await tsbuild(['run', '--rm', '--network', 'appnet', 'busybox', 'sh', '-c', 'ping -c 1 -W 1 hopper']);
    expect(gone.code).not.toBe(0);
    expect((await tsbuild(['rm', '-f', 'hop'])).code).toBe(0);
  });

  it('--network none shows only lo; --network host shows the host interfaces', async () => {
    const none = await tsbuild(['run', '--rm', '--network', 'none', 'busybox', 'ip', '-o', 'link']);
    expect(none.code).toBe(0);
    expect(none.stdout.trim().split('\n').map((l) => l.split(':')[1]!.trim())).toEqual(['lo']);
    const host = await tsbuild(['run', '--rm', '--network', 'host', 'busybox', 'ip', '-o', 'link']);
    const names = (s: string) => s.trim().split('\n').map((l) => l.split(':')[1]!.trim().split('@')[0]).filter((n) => !n!.startsWith('veth') && !n!.startsWith('tsb'));
    const hostLinks = names(execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' }));
    expect(names(host.stdout)).toEqual(expect.arrayContaining(hostLinks));
    expect(hostLinks.length).toBeGreaterThan(1);
  });

  it('-P publishes every exposed port on a free host port', async () => {
    const r = await tsbuild(['run', '-d', '--name', 'pall', '--expose', '80', '-P', 'busybox', ...httpd('published-all')]);
    expect(r.code).toBe(0);
    const m = (await tsbuild(['port', 'pall', '80/tcp'])).stdout.match(/^0\.0\.0\.0:(\d+)$/m);
    expect(m).not.toBeNull();
    expect(await get(`http://127.0.0.1:${m![1]}/`)).toBe('published-all\n');
    expect((await tsbuild(['rm', '-f', 'pall'])).code).toBe(0);
  });

  it('refuses bad network flags with exit 125 and a reason', async () => {
    const cases: [string[], RegExp][] = [
      [['--network', 'nosuch'], /network nosuch not found/],
      [['--ip', '172.30.9.9'], /user specified IP address is supported on user defined networks only/],
      [['--network-alias', 'x'], /network-scoped alias is supported only for containers in user defined networks/],
      [['--network', 'other', '--ip', '10.99.0.5'], /does not belong to any of this network's subnets/],
      [['-p', '80/sctp'], /invalid proto "sctp"/],
      [['--network', 'none', '-p', '80'], /conflicting options: port publishing and the container type network mode/],
    ];
    for (const [flags, msg] of cases) {
      const r = await tsbuild(['run', '--rm', ...flags, 'busybox', 'true']);
      expect(r.code, flags.join(' ')).toBe(125);
      expect(r.stderr).toMatch(msg);
    }
    const fixed = await tsbuild(['run', '--rm', '--network', 'other', '--ip', '10.241.0.200', 'busybox', 'ip', '-o', '-4', 'addr', 'show', 'eth0']);
    expect(fixed.stdout).toContain('inet 10.241.0.200/24');
  });

  it('10 containers started concurrently on one network get 10 distinct addresses', async () => {
    expect((await tsbuild(['network', 'create', 'many'])).code).toBe(0);
    const t0 = Date.now();
    const runs = await Promise.all(Array.from({ length: 10 }, (_, i) => tsbuild(['run', '-d', '--name', `many${i}`, '--network', 'many', 'busybox', 'sleep', '120'])));
    const ms = Date.now() - t0;
    for (const r of runs) expect(r.stderr).toBe('');
    const info = JSON.parse((await tsbuild(['network', 'inspect', 'many'])).stdout)[0];
    const ips = Object.values(info.Containers as Record<string, { IPv4Address: string }>).map((c) => c.IPv4Address);
    expect(ips).toHaveLength(10);
    expect(new Set(ips).size).toBe(10);
    console.log(`10 concurrent run -d on one network: ${ms} ms`);
    const rm = await tsbuild(['rm', '-f', ...Array.from({ length: 10 }, (_, i) => `many${i}`)]);
    expect(rm.code).toBe(0);
  });

  it('cleans up after a SIGKILLed monitor: the next tsbuild command removes the veth, the DNAT rule and the allocation', async () => {
    const port = await freePort();
    const r = await tsbuild(['run', '-d', '--name', 'killed', '-p', `${port}:80`, 'busybox', 'sleep', '120']);
    expect(r.code).toBe(0);
    const id = r.stdout.trim();
    const state = JSON.parse(readFileSync(path.join(root, 'containers', id, 'state.json'), 'utf8'));
    const veth = (await listNetworkRecords(root)).flatMap((n) => Object.values(n.Endpoints)).find((e) => e.ContainerId === id)!.Veth;
    expect(existsSync(`/sys/class/net/${veth}`)).toBe(true);
    process.kill(state.MonitorPid, 'SIGKILL');
    // The container dies with its monitor (PDEATHSIG); its host-side state stays until someone looks.
    for (let i = 0; i < 100 && existsSync(`/proc/${state.Pid}`); i++) await new Promise((res) => setTimeout(res, 50));
    expect(execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' })).toContain(`--dport ${port} `);
    expect((await tsbuild(['ps'])).code).toBe(0);
    expect(existsSync(`/sys/class/net/${veth}`)).toBe(false);
    expect(execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' })).not.toContain(`--dport ${port} `);
    expect((await listNetworkRecords(root)).some((n) => n.Endpoints[id])).toBe(false);
    expect((await tsbuild(['rm', 'killed'])).code).toBe(0);
  });

  it('after rm of everything, ip link, the NAT table and the allocation files are back to what they were', async () => {
    for (const n of ['appnet', 'other', 'many']) expect((await tsbuild(['network', 'rm', n])).stdout).toBe(`${n}\n`);
    expect((await tsbuild(['ps', '-aq'])).stdout).toBe('');
    expect(await allocations()).toBe(allocBefore);
    expect(readdirSync(path.join(root, 'networks')).filter((f) => f.endsWith('.json'))).toHaveLength(3); // bridge, host, none
    expect(leftovers(before, hostSnapshot(), root)).toEqual([]);
  });
});
