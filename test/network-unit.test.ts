// Pure parts of runtime/network: addresses, -p parsing, resolv.conf, hosts
// entries, iptables-save parsing, allocation.
import { describe, expect, it } from 'vitest';
import { candidateSubnets, contains, formatIPv4, formatSubnet, isUsableHost, macFromIPv4, overlaps, parseIPv4, parseSubnet } from '../runtime/network/ipv4.js';
import { exposedToSpec, formatPorts, parsePublish } from '../runtime/network/ports.js';
import { containerResolvConf, hostsContent } from '../runtime/network/hosts.js';
import { commentOf, networkRules, parseSave, portRules, tokenize } from '../runtime/network/iptables.js';
import { allocateAddress, hostsEntriesFor } from '../runtime/network/endpoints.js';
import type { Endpoint, NetworkRecord } from '../runtime/network/state.js';

describe('ipv4', () => {
  it('parses and formats addresses and subnets', () => {
    expect(formatIPv4(parseIPv4('172.18.0.1'))).toBe('172.18.0.1');
    expect(parseIPv4('255.255.255.255')).toBe(0xffffffff);
    for (const bad of ['1.2.3', '1.2.3.256', '01.2.3.4', 'a.b.c.d', '1.2.3.4.5', '']) expect(() => parseIPv4(bad)).toThrow(/invalid IPv4/);
    expect(formatSubnet(parseSubnet('10.1.0.0/16'))).toBe('10.1.0.0/16');
    expect(() => parseSubnet('10.1.2.3/16')).toThrow(/host bits are set \(did you mean 10\.1\.0\.0\/16\?\)/);
    expect(() => parseSubnet('10.1.0.0')).toThrow(/CIDR/);
    expect(() => parseSubnet('10.1.0.0/33')).toThrow(/prefix/);
  });
  it('containment, overlap, usable hosts', () => {
    const s = parseSubnet('192.168.16.0/20');
    expect(contains(s, parseIPv4('192.168.31.255'))).toBe(true);
    expect(contains(s, parseIPv4('192.168.32.0'))).toBe(false);
    expect(overlaps(s, parseSubnet('192.168.0.0/16'))).toBe(true);
    expect(overlaps(s, parseSubnet('192.168.32.0/20'))).toBe(false);
    expect(isUsableHost(s, s.base)).toBe(false);
    expect(isUsableHost(s, parseIPv4('192.168.31.255'))).toBe(false);
    expect(isUsableHost(s, parseIPv4('192.168.16.1'))).toBe(true);
    expect(macFromIPv4(parseIPv4('172.17.0.2'))).toBe('02:42:ac:11:00:02');
    const c = [...candidateSubnets()].map(formatSubnet);
    expect(c[0]).toBe('172.17.0.0/16');
    expect(c).toContain('192.168.240.0/20');
  });
});

describe('-p parsing', () => {
  it('accepts Docker forms', () => {
    expect(parsePublish('8080:80')).toEqual([{ proto: 'tcp', containerPort: 80, hostIp: '0.0.0.0', hostPort: 8080 }]);
    expect(parsePublish('80')).toEqual([{ proto: 'tcp', containerPort: 80, hostIp: '0.0.0.0', hostPort: 0 }]);
    expect(parsePublish('127.0.0.1:8080:80/udp')).toEqual([{ proto: 'udp', containerPort: 80, hostIp: '127.0.0.1', hostPort: 8080 }]);
    expect(parsePublish('127.0.0.1::80')).toEqual([{ proto: 'tcp', containerPort: 80, hostIp: '127.0.0.1', hostPort: 0 }]);
    expect(parsePublish('8000-8001:80-81').map((p) => [p.hostPort, p.containerPort])).toEqual([
      [8000, 80],
      [8001, 81],
    ]);
    expect(parsePublish('8000-8010:80')).toEqual([{ proto: 'tcp', containerPort: 80, hostIp: '0.0.0.0', hostPort: 8000, hostPortEnd: 8010 }]);
    expect(exposedToSpec('53/udp')).toEqual({ proto: 'udp', containerPort: 53, hostIp: '0.0.0.0', hostPort: 0 });
  });
  it('rejects bad specs with the reason', () => {
    expect(() => parsePublish('80/sctp')).toThrow(/invalid proto "sctp"/);
    expect(() => parsePublish('0:80')).toThrow(/ports are 1-65535/);
    expect(() => parsePublish('70000')).toThrow(/ports are 1-65535/);
    expect(() => parsePublish('a:80')).toThrow(/invalid host port "a"/);
    expect(() => parsePublish('1.2.3:80:80')).toThrow(/invalid IP address "1.2.3"/);
    expect(() => parsePublish('[::1]:80:80')).toThrow(/IPv6/);
    expect(() => parsePublish('8000-8002:80-81')).toThrow(/ranges differ/);
    expect(() => parsePublish('1:2:3:4')).toThrow(/expected/);
  });
  it('formats like docker ps', () => {
    expect(formatPorts([{ proto: 'tcp', containerPort: 80, hostIp: '0.0.0.0', hostPort: 8080 }])).toBe('0.0.0.0:8080->80/tcp');
  });
});

describe('resolv.conf and hosts', () => {
  it('drops loopback and IPv6 nameservers for bridge networks, falls back to Docker defaults', () => {
    const host = 'search example.org\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.0.0.2\noptions edns0\n';
    expect(containerResolvConf(host, 'bridge')).toBe('search example.org\nnameserver 10.0.0.2\noptions edns0\n');
    expect(containerResolvConf(host, 'host')).toBe(host);
    expect(containerResolvConf('nameserver 127.0.0.53\n', 'bridge')).toBe('nameserver 8.8.8.8\nnameserver 8.8.4.4\n');
  });
  it('lists own names and peers on user-defined networks only', () => {
    const ep = (cid: string, name: string, ip: string, ifn = 'eth0', aliases: string[] = []): Endpoint => ({
      ContainerId: cid.repeat(64 / cid.length),
      Name: name,
      Hostname: `${name}-host`,
      EndpointID: 'e',
      IPAddress: ip,
      MacAddress: '',
      Veth: 'v',
      IfName: ifn,
      Aliases: aliases,
      Ports: [],
      Owner: { Pid: 1, StartTime: 1 },
    });
    const net = (name: string, predefined: boolean, eps: Endpoint[]): NetworkRecord => ({
      Id: name.padEnd(64, '0'),
      Name: name,
      Created: '',
      Driver: 'bridge',
      Predefined: predefined,
      Subnet: '10.0.0.0/24',
      Gateway: '10.0.0.1',
      Labels: {},
      Endpoints: Object.fromEntries(eps.map((e) => [e.ContainerId, e])),
    });
    const a = ep('a', 'web', '10.1.0.2', 'eth0', ['www']);
    const b = ep('b', 'db', '10.1.0.3');
    const c = ep('c', 'other', '10.2.0.2');
    const records = [net('bridge', true, [ep('a', 'web', '10.0.0.2', 'eth1'), c]), net('app', false, [a, b])];
    const entries = hostsEntriesFor(records, a.ContainerId);
    expect(entries).toEqual([
      { ip: '10.1.0.2', names: ['web-host', 'web', 'www'] },
      { ip: '10.0.0.2', names: [] },
      { ip: '10.1.0.3', names: ['db', 'bbbbbbbbbbbb'] },
    ]);
    const text = hostsContent(entries);
    expect(text).toMatch(/^127\.0\.0\.1\tlocalhost\n/);
    expect(text).toContain('10.1.0.2\tweb-host web www\n10.1.0.3\tdb bbbbbbbbbbbb\n');
    expect(text).not.toContain('other');
  });
});

describe('iptables text', () => {
  it('tokenizes quoted comments and finds tags', () => {
    const line = '-A TSBUILD-DNAT -p tcp -m tcp --dport 1 -m comment --comment "tsb-ep:abc:def" -j DNAT --to-destination 10.0.0.1:80';
    expect(commentOf(line)).toBe('tsb-ep:abc:def');
    expect(tokenize('-A X -m comment --comment "a b" -j RETURN')).toEqual(['-A', 'X', '-m', 'comment', '--comment', 'a b', '-j', 'RETURN']);
    const rs = parseSave('*nat\n:PREROUTING ACCEPT [0:0]\n:TSBUILD-DNAT - [0:0]\n' + line + '\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n');
    expect([...rs.chains.get('nat')!]).toEqual(['PREROUTING', 'TSBUILD-DNAT']);
    expect(rs.rules).toEqual([{ table: 'nat', line }]);
  });
  it('tags every network and port rule', () => {
    const id = 'f'.repeat(64);
    const r = networkRules(id, 'tsb-ffffffff', '10.9.0.0/24');
    for (const l of [...r.filter, ...r.nat]) expect(commentOf(l)).toBe('tsb-net:ffffffffffff');
    const p = portRules(id, 'c'.repeat(64), [{ proto: 'udp', hostIp: '127.0.0.1', hostPort: 5353, containerIp: '10.9.0.2', containerPort: 53 }]);
    expect(p.nat[0]).toBe('-A TSBUILD-DNAT -d 127.0.0.1/32 -p udp -m udp --dport 5353 -m comment --comment "tsb-ep:ffffffffffff:cccccccccccc" -j DNAT --to-destination 10.9.0.2:53');
  });
});

describe('address allocation', () => {
  const rec = (): NetworkRecord => ({ Id: '0'.repeat(64), Name: 'n', Created: '', Driver: 'bridge', Subnet: '10.5.0.0/29', Gateway: '10.5.0.1', Labels: {}, Endpoints: {} });
  const take = (r: NetworkRecord, ip: string) => {
    r.Endpoints[ip] = { IPAddress: ip } as Endpoint;
  };
  it('is sequential, skips the gateway and used ones, wraps, and reports exhaustion', () => {
    const r = rec();
    const got: string[] = [];
    for (let i = 0; i < 5; i++) {
      const ip = allocateAddress(r);
      take(r, ip);
      got.push(ip);
    }
    expect(got).toEqual(['10.5.0.2', '10.5.0.3', '10.5.0.4', '10.5.0.5', '10.5.0.6']);
    expect(() => allocateAddress(r)).toThrow(/no available IPv4 addresses/);
    delete r.Endpoints['10.5.0.3'];
    expect(allocateAddress(r)).toBe('10.5.0.3');
  });
  it('does not hand out a freed address at once', () => {
    const r = rec();
    const a = allocateAddress(r);
    take(r, a);
    delete r.Endpoints[a];
    expect(allocateAddress(r)).toBe('10.5.0.3');
  });
  it('honours --ip and refuses one in use', () => {
    const r = rec();
    take(r, '10.5.0.4');
    expect(allocateAddress(r, '10.5.0.5')).toBe('10.5.0.5');
    expect(() => allocateAddress(r, '10.5.0.4')).toThrow(/Address already in use/);
    expect(() => allocateAddress(r, '10.5.0.1')).toThrow(/Address already in use/);
  });
});
