import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  DOCKER_CONFIG,
  DOCKER_LAYER,
  DOCKER_LAYER_FOREIGN,
  DOCKER_LAYER_GZIP,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  MEDIA_TYPES,
  OCI_CONFIG,
  OCI_EMPTY_DIGEST,
  OCI_EMPTY_SIZE,
  OCI_INDEX,
  OCI_LAYER,
  OCI_LAYER_GZIP,
  OCI_LAYER_NONDIST_GZIP,
  OCI_LAYER_NONDIST_ZSTD,
  OCI_LAYER_ZSTD,
  OCI_MANIFEST,
  baseMediaType,
  isConfigType,
  isIndexType,
  isLayerType,
  isManifestType,
  isNondistributableLayer,
  layerCompression,
} from '../image/mediatypes.js';
import {
  DescriptorSchema,
  ImageConfigSchema,
  PlatformSchema,
  SchemaError,
  formatIssuePath,
  formatZodError,
  parseDescriptor,
  parseImageConfig,
  parseManifestJson,
} from '../image/schemas.js';

const d = (c: string) => `sha256:${c.repeat(64)}`;
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

// Shapes copied from real images (digests shortened to repeated characters).
const ociManifest = {
  schemaVersion: 2,
  mediaType: OCI_MANIFEST,
  config: { mediaType: OCI_CONFIG, digest: d('1'), size: 1469 },
  layers: [
    { mediaType: OCI_LAYER_GZIP, digest: d('2'), size: 3623807 },
    {
      mediaType: OCI_LAYER_GZIP,
      digest: d('3'),
      size: 123,
      annotations: { 'org.opencontainers.image.title': 'app.tar.gz' },
    },
  ],
  annotations: { 'org.opencontainers.image.created': '2024-05-01T10:00:00Z' },
};

const dockerManifest = {
  schemaVersion: 2,
  mediaType: DOCKER_MANIFEST,
  config: { mediaType: DOCKER_CONFIG, size: 7023, digest: d('4') },
  layers: [
    { mediaType: DOCKER_LAYER_GZIP, size: 32654, digest: d('5') },
    {
      mediaType: DOCKER_LAYER_FOREIGN,
      size: 1000,
      digest: d('6'),
      urls: ['https://mcr.microsoft.com/v2/windows/blobs/sha256:x'],
    },
  ],
};

const ociIndex = {
  schemaVersion: 2,
  mediaType: OCI_INDEX,
  manifests: [
    {
      mediaType: OCI_MANIFEST,
      digest: d('7'),
      size: 1000,
      platform: { architecture: 'amd64', os: 'linux' },
    },
    {
      mediaType: OCI_MANIFEST,
      digest: d('8'),
      size: 1000,
      platform: { architecture: 'arm', os: 'linux', variant: 'v7' },
    },
    {
      mediaType: OCI_MANIFEST,
      digest: d('9'),
      size: 566,
      annotations: { 'vnd.docker.reference.digest': d('7'), 'vnd.docker.reference.type': 'attestation-manifest' },
      platform: { architecture: 'unknown', os: 'unknown' },
    },
  ],
};

const dockerList = {
  schemaVersion: 2,
  mediaType: DOCKER_MANIFEST_LIST,
  manifests: [
    {
      mediaType: DOCKER_MANIFEST,
      size: 527,
      digest: d('a'),
      platform: { architecture: 'amd64', os: 'windows', 'os.version': '10.0.17763.5576', 'os.features': ['win32k'] },
    },
    { mediaType: DOCKER_MANIFEST, size: 527, digest: d('b'), platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } },
  ],
};

// A docker-built config, as `docker save` writes it (nulls and all).
const dockerConfig = {
  architecture: 'amd64',
  config: {
    Hostname: '',
    Domainname: '',
    User: 'app',
    AttachStdin: false,
    Tty: false,
    Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'PYTHONUNBUFFERED=1'],
    Cmd: ['gunicorn', 'site.wsgi'],
    Healthcheck: { Test: ['CMD-SHELL', 'curl -f http://localhost/ || exit 1'], Interval: 30000000000, Timeout: 5000000000, StartPeriod: 0, Retries: 3 },
    ArgsEscaped: true,
    Image: '',
    Volumes: { '/data': {} },
    WorkingDir: '/srv',
    Entrypoint: null,
    OnBuild: null,
    Labels: { 'org.opencontainers.image.source': 'https://example.com/app' },
    ExposedPorts: { '8000/tcp': {} },
    StopSignal: 'SIGTERM',
    Shell: ['/bin/bash', '-c'],
  },
  container: 'f0e1d2c3',
  container_config: { Hostname: 'f0e1d2c3', Cmd: ['/bin/sh', '-c', '#(nop) ', 'CMD ["gunicorn"]'] },
  created: '2024-05-01T10:00:00.123456789Z',
  docker_version: '24.0.7',
  history: [
    { created: '2024-04-10T00:00:00Z', created_by: '/bin/sh -c #(nop) ADD file:abc in / ' },
    { created: '2024-04-10T00:00:01Z', created_by: '/bin/sh -c #(nop)  CMD ["bash"]', empty_layer: true },
    { created: '2024-05-01T10:00:00Z', created_by: 'RUN /bin/sh -c pip install django # buildkit', comment: 'buildkit.dockerfile.v0', author: 'me' },
  ],
  os: 'linux',
  rootfs: { type: 'layers', diff_ids: [d('c'), d('e')] },
};

const ociConfig = {
  created: '2024-05-01T10:00:00Z',
  architecture: 'arm64',
  variant: 'v8',
  os: 'linux',
  config: { Env: ['PATH=/bin'], Cmd: ['sh'] },
  rootfs: { type: 'layers', diff_ids: [d('f')] },
  history: [{ created_by: 'busybox' }],
};

function errorOf(fn: () => unknown): SchemaError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SchemaError);
    return e as SchemaError;
  }
  throw new Error('expected an error');
}

describe('media types', () => {
  it('classifies', () => {
    expect(isManifestType(OCI_MANIFEST)).toBe(true);
    expect(isManifestType(DOCKER_MANIFEST)).toBe(true);
    expect(isManifestType(OCI_INDEX)).toBe(false);
    expect(isIndexType(OCI_INDEX)).toBe(true);
    expect(isIndexType(DOCKER_MANIFEST_LIST)).toBe(true);
    expect(isIndexType(DOCKER_MANIFEST)).toBe(false);
    expect(isConfigType(OCI_CONFIG) && isConfigType(DOCKER_CONFIG)).toBe(true);
    expect(isLayerType(OCI_CONFIG)).toBe(false);
    for (const t of [OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_LAYER_NONDIST_GZIP, DOCKER_LAYER_GZIP, DOCKER_LAYER_FOREIGN]) {
      expect(isLayerType(t)).toBe(true);
    }
  });
  it('ignores parameters and case in Content-Type style values', () => {
    expect(baseMediaType(' Application/VND.OCI.image.manifest.v1+json; charset=utf-8')).toBe(OCI_MANIFEST);
    expect(isManifestType(`${DOCKER_MANIFEST}; charset=utf-8`)).toBe(true);
  });
  it.each([
    [OCI_LAYER, 'none'],
    [OCI_LAYER_GZIP, 'gzip'],
    [OCI_LAYER_ZSTD, 'zstd'],
    [OCI_LAYER_NONDIST_GZIP, 'gzip'],
    [OCI_LAYER_NONDIST_ZSTD, 'zstd'],
    [DOCKER_LAYER_GZIP, 'gzip'],
    [DOCKER_LAYER, 'none'],
    [DOCKER_LAYER_FOREIGN, 'gzip'],
  ])('layerCompression(%s) = %s', (t, c) => {
    expect(layerCompression(t)).toBe(c);
  });
  it('layerCompression refuses non-layer types', () => {
    expect(() => layerCompression(OCI_CONFIG)).toThrow(`unsupported layer media type "${OCI_CONFIG}"`);
  });
  it('nondistributable', () => {
    expect(isNondistributableLayer(DOCKER_LAYER_FOREIGN)).toBe(true);
    expect(isNondistributableLayer(OCI_LAYER_NONDIST_GZIP)).toBe(true);
    expect(isNondistributableLayer(OCI_LAYER_GZIP)).toBe(false);
  });
  it('empty descriptor constants match the {} blob', () => {
    expect(`sha256:${createHash('sha256').update('{}').digest('hex')}`).toBe(OCI_EMPTY_DIGEST);
    expect(OCI_EMPTY_SIZE).toBe(2);
  });
  it('MEDIA_TYPES mirrors the named constants', () => {
    expect(MEDIA_TYPES.OCI_MANIFEST).toBe(OCI_MANIFEST);
    expect(MEDIA_TYPES.DOCKER_LAYER_GZIP).toBe(DOCKER_LAYER_GZIP);
  });
});

describe('parseManifestJson: valid documents', () => {
  it('OCI manifest', () => {
    const p = parseManifestJson(JSON.stringify(ociManifest), 'm');
    expect(p.kind).toBe('manifest');
    if (p.kind !== 'manifest') return;
    expect(p.mediaType).toBe(OCI_MANIFEST);
    expect(p.manifest.layers).toHaveLength(2);
    expect(p.manifest.config.digest).toBe(d('1'));
    expect(p.manifest).toEqual(ociManifest);
  });
  it('Docker schema2 manifest (from a Buffer) with a foreign layer', () => {
    const p = parseManifestJson(Buffer.from(JSON.stringify(dockerManifest)), 'm');
    expect(p).toMatchObject({ kind: 'manifest', mediaType: DOCKER_MANIFEST });
    if (p.kind === 'manifest') expect(p.manifest.layers[1]?.urls).toHaveLength(1);
  });
  it('OCI index with platforms and attestation annotations', () => {
    const p = parseManifestJson(JSON.stringify(ociIndex), 'i');
    expect(p.kind).toBe('index');
    if (p.kind !== 'index') return;
    expect(p.mediaType).toBe(OCI_INDEX);
    expect(p.index.manifests.map((m) => m.platform?.architecture)).toEqual(['amd64', 'arm', 'unknown']);
    expect(p.index.manifests[1]?.platform?.variant).toBe('v7');
  });
  it('Docker manifest list with os.version / os.features', () => {
    const p = parseManifestJson(JSON.stringify(dockerList), 'l');
    expect(p).toMatchObject({ kind: 'index', mediaType: DOCKER_MANIFEST_LIST });
    if (p.kind === 'index') expect(p.index.manifests[0]?.platform?.['os.version']).toBe('10.0.17763.5576');
  });
  it('manifest without mediaType is told apart by layers', () => {
    const m = clone(ociManifest) as Record<string, unknown>;
    delete m['mediaType'];
    expect(parseManifestJson(JSON.stringify(m), 'm')).toMatchObject({ kind: 'manifest', mediaType: OCI_MANIFEST });
  });
  it('index without mediaType is told apart by manifests', () => {
    const i = clone(ociIndex) as Record<string, unknown>;
    delete i['mediaType'];
    expect(parseManifestJson(JSON.stringify(i), 'i')).toMatchObject({ kind: 'index', mediaType: OCI_INDEX });
  });
  it('OCI 1.1 artifact manifest with empty config, subject and no layers', () => {
    const art = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: 'application/vnd.example.sbom',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: OCI_EMPTY_DIGEST, size: 2, data: 'e30=' },
      layers: [],
      subject: { mediaType: OCI_MANIFEST, digest: d('1'), size: 10 },
    };
    const p = parseManifestJson(JSON.stringify(art), 'a');
    expect(p.kind === 'manifest' && p.manifest).toEqual(art);
  });
  it('unknown fields survive, at every level', () => {
    const m = clone(ociManifest) as any;
    m.futureField = { x: [1, 2] };
    m.config.extra = 'kept';
    m.layers[0].someAnnotationLike = 42;
    const p = parseManifestJson(JSON.stringify(m), 'm');
    expect(p.kind === 'manifest' && p.manifest).toEqual(m);
    expect(JSON.parse(JSON.stringify(p.kind === 'manifest' && p.manifest))).toEqual(m);
  });
});

describe('parseManifestJson: errors name the path', () => {
  const cases: [string, (m: any) => unknown, string | RegExp][] = [
    [
      'bad layer digest',
      (m) => (m.layers[0].digest = 'sha256:123'),
      'where: invalid image manifest: layers[0].digest: "sha256:123" is not a valid sha256 digest (expected "sha256:" followed by 64 lowercase hex digits)',
    ],
    [
      'uppercase hex digest',
      (m) => (m.config.digest = `sha256:${'A'.repeat(64)}`),
      /^where: invalid image manifest: config\.digest: "sha256:A{64}" is not a valid sha256 digest/,
    ],
    [
      'sha512 digest',
      (m) => (m.layers[1].digest = `sha512:${'a'.repeat(128)}`),
      /^where: invalid image manifest: layers\[1\]\.digest: unsupported digest algorithm "sha512"/,
    ],
    ['missing config', (m) => delete m.config, 'where: invalid image manifest: config: required object is missing'],
    ['missing layers', (m) => delete m.layers, 'where: invalid image manifest: no mediaType and has neither "manifests" nor "layers", cannot tell a manifest from an index'],
    ['wrong schemaVersion', (m) => (m.schemaVersion = 1), 'where: invalid image manifest: schemaVersion: expected 2, got 1'],
    ['missing schemaVersion', (m) => delete m.schemaVersion, 'where: invalid image manifest: schemaVersion: expected 2, got nothing'],
    ['negative size', (m) => (m.layers[0].size = -1), 'where: invalid image manifest: layers[0].size: must be >= 0'],
    ['fractional size', (m) => (m.layers[0].size = 1.5), 'where: invalid image manifest: layers[0].size: expected integer, got float'],
    ['size as string', (m) => (m.config.size = '12'), 'where: invalid image manifest: config.size: expected number, got string'],
    ['layer missing mediaType', (m) => delete m.layers[1].mediaType, 'where: invalid image manifest: layers[1].mediaType: required string is missing'],
    [
      'annotation value not a string',
      (m) => (m.layers[1].annotations['org.opencontainers.image.title'] = 5),
      'where: invalid image manifest: layers[1].annotations["org.opencontainers.image.title"]: expected string, got number',
    ],
    ['layers not an array', (m) => (m.layers = {}), 'where: invalid image manifest: layers: expected array, got object'],
    [
      'several problems at once',
      (m) => {
        m.layers[0].digest = 'x';
        m.layers[1].size = -5;
      },
      /layers\[0\]\.digest: "x" is not a valid sha256 digest .*; layers\[1\]\.size: must be >= 0$/,
    ],
  ];
  it.each(cases)('%s', (_name, mutate, msg) => {
    const m = clone(ociManifest) as any;
    mutate(m);
    if (m.mediaType && !('layers' in m)) delete m.mediaType; // exercise the sniffing path for 'missing layers'
    const e = errorOf(() => parseManifestJson(JSON.stringify(m), 'where'));
    if (typeof msg === 'string') expect(e.message).toBe(msg);
    else expect(e.message).toMatch(msg);
    expect(e.where).toBe('where');
  });

  it('OCI manifest with mediaType but no layers reports the field', () => {
    const m = clone(ociManifest) as any;
    delete m.layers;
    expect(errorOf(() => parseManifestJson(JSON.stringify(m), 'w')).message).toBe(
      'w: invalid image manifest: layers: required array is missing',
    );
  });
  it('Docker manifest missing a layer digest', () => {
    const m = clone(dockerManifest) as any;
    delete m.layers[0].digest;
    expect(errorOf(() => parseManifestJson(JSON.stringify(m), 'w')).message).toBe(
      'w: invalid image manifest: layers[0].digest: required string is missing',
    );
  });
  it('index errors say image index', () => {
    const i = clone(ociIndex) as any;
    i.manifests[2].platform.os = 7;
    expect(errorOf(() => parseManifestJson(JSON.stringify(i), 'w')).message).toBe(
      'w: invalid image index: manifests[2].platform.os: expected string, got number',
    );
  });
  it('manifest list errors say manifest list', () => {
    const l = clone(dockerList) as any;
    delete l.manifests[0].platform.architecture;
    expect(errorOf(() => parseManifestJson(JSON.stringify(l), 'w')).message).toBe(
      'w: invalid manifest list: manifests[0].platform.architecture: required string is missing',
    );
  });
  it('not JSON', () => {
    expect(errorOf(() => parseManifestJson('{"schemaVersion": 2,', 'w')).message).toMatch(/^w: invalid image manifest: not valid JSON \(/);
  });
  it('not an object', () => {
    expect(errorOf(() => parseManifestJson('[1]', 'w')).message).toBe('w: invalid image manifest: expected a JSON object, got array');
    expect(errorOf(() => parseManifestJson('null', 'w')).message).toBe('w: invalid image manifest: expected a JSON object, got null');
  });
  it('unknown mediaType', () => {
    const m = { ...ociManifest, mediaType: 'application/json' };
    expect(errorOf(() => parseManifestJson(JSON.stringify(m), 'w')).message).toBe('w: unsupported manifest media type "application/json"');
  });
  it('mediaType of the wrong type', () => {
    const m = { ...ociManifest, mediaType: 3 };
    expect(errorOf(() => parseManifestJson(JSON.stringify(m), 'w')).message).toBe('w: invalid image manifest: mediaType: expected string, got number');
  });
  it('schema1 is refused clearly', () => {
    const s1 = { schemaVersion: 1, name: 'library/app', tag: 'latest', fsLayers: [], history: [] };
    expect(errorOf(() => parseManifestJson(JSON.stringify(s1), 'w')).message).toMatch(/^w: unsupported manifest: Docker schema1/);
    const s1s = { ...s1, mediaType: 'application/vnd.docker.distribution.manifest.v1+prettyjws' };
    expect(errorOf(() => parseManifestJson(JSON.stringify(s1s), 'w')).message).toMatch(/schema1/);
  });
  it('ambiguous documents fall back to the content type', () => {
    const both = { schemaVersion: 2, layers: [], manifests: [], config: ociManifest.config };
    expect(errorOf(() => parseManifestJson(JSON.stringify(both), 'w')).message).toMatch(/has both "manifests" and "layers"/);
    expect(parseManifestJson(JSON.stringify(both), 'w', `${OCI_MANIFEST}; charset=utf-8`).kind).toBe('manifest');
    expect(parseManifestJson(JSON.stringify(both), 'w', OCI_INDEX).kind).toBe('index');
  });
  it('schemaVersion as a string is refused', () => {
    const l = clone(dockerList) as any;
    l.schemaVersion = '2';
    expect(errorOf(() => parseManifestJson(JSON.stringify(l), 'w')).message).toBe('w: invalid manifest list: schemaVersion: expected 2, got "2"');
  });
});

describe('parseImageConfig', () => {
  it('Docker config with nulls and docker-only fields round-trips exactly', () => {
    const c = parseImageConfig(JSON.stringify(dockerConfig), 'c');
    expect(c.config?.Cmd).toEqual(['gunicorn', 'site.wsgi']);
    expect(c.config?.Entrypoint).toBeNull();
    expect(c.config?.Healthcheck?.Retries).toBe(3);
    expect(c.rootfs.diff_ids).toHaveLength(2);
    expect(c.history?.[1]?.empty_layer).toBe(true);
    expect(c).toEqual(dockerConfig);
    expect(JSON.parse(JSON.stringify(c))).toEqual(dockerConfig);
    // docker-only fields are kept
    expect((c as Record<string, unknown>)['container_config']).toEqual(dockerConfig.container_config);
    expect((c.config as Record<string, unknown>)['Hostname']).toBe('');
  });
  it('OCI config', () => {
    const c = parseImageConfig(Buffer.from(JSON.stringify(ociConfig)), 'c');
    expect(c).toEqual(ociConfig);
    expect(c.variant).toBe('v8');
  });
  it('minimal config (scratch, no history, no config)', () => {
    const c = parseImageConfig('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}', 'c');
    expect(c.config).toBeUndefined();
    expect(c.rootfs.diff_ids).toEqual([]);
  });
  const cases: [string, (c: any) => unknown, string | RegExp][] = [
    ['bad diff_id', (c) => (c.rootfs.diff_ids[1] = 'sha256:zz'), /^where: invalid image config: rootfs\.diff_ids\[1\]: "sha256:zz" is not a valid sha256 digest/],
    ['missing rootfs', (c) => delete c.rootfs, 'where: invalid image config: rootfs: required object is missing'],
    ['wrong rootfs type', (c) => (c.rootfs.type = 'layered'), 'where: invalid image config: rootfs.type: expected "layers", got "layered"'],
    ['missing architecture', (c) => delete c.architecture, 'where: invalid image config: architecture: required string is missing'],
    ['missing os', (c) => delete c.os, 'where: invalid image config: os: required string is missing'],
    ['Env not an array', (c) => (c.config.Env = 'A=1'), 'where: invalid image config: config.Env: expected array, got string'],
    ['Cmd item not a string', (c) => (c.config.Cmd = ['a', 1]), 'where: invalid image config: config.Cmd[1]: expected string, got number'],
    ['ExposedPorts wrong shape', (c) => (c.config.ExposedPorts = { '80/tcp': true }), 'where: invalid image config: config.ExposedPorts["80/tcp"]: expected object, got boolean'],
    ['Label value', (c) => (c.config.Labels['a.b'] = null), 'where: invalid image config: config.Labels["a.b"]: expected string, got null'],
    ['Healthcheck retries', (c) => (c.config.Healthcheck.Retries = 'three'), 'where: invalid image config: config.Healthcheck.Retries: expected number, got string'],
    ['history empty_layer', (c) => (c.history[0].empty_layer = 'yes'), 'where: invalid image config: history[0].empty_layer: expected boolean, got string'],
  ];
  it.each(cases)('%s', (_name, mutate, msg) => {
    const c = clone(dockerConfig) as any;
    mutate(c);
    const e = errorOf(() => parseImageConfig(JSON.stringify(c), 'where'));
    if (typeof msg === 'string') expect(e.message).toBe(msg);
    else expect(e.message).toMatch(msg);
  });
  it('not JSON / not an object', () => {
    expect(errorOf(() => parseImageConfig('', 'c')).message).toMatch(/^c: invalid image config: not valid JSON/);
    expect(errorOf(() => parseImageConfig('"x"', 'c')).message).toBe('c: invalid image config: expected a JSON object, got string');
  });
});

describe('schemas directly', () => {
  it('Descriptor: infers a Digest-typed digest and rejects bad sizes', () => {
    const r = DescriptorSchema.safeParse({ mediaType: OCI_LAYER, digest: d('1'), size: 0 });
    expect(r.success).toBe(true);
    expect(DescriptorSchema.safeParse({ mediaType: OCI_LAYER, digest: d('1'), size: 2 ** 60 }).success).toBe(false);
  });
  it('Platform requires architecture and os', () => {
    expect(PlatformSchema.safeParse({ os: 'linux' }).success).toBe(false);
    expect(PlatformSchema.safeParse({ os: 'linux', architecture: 'riscv64', extra: 1 }).data).toEqual({
      os: 'linux',
      architecture: 'riscv64',
      extra: 1,
    });
  });
  it('ImageConfigSchema is usable standalone', () => {
    expect(ImageConfigSchema.parse(ociConfig)).toEqual(ociConfig);
  });
  it('parseDescriptor', () => {
    expect(parseDescriptor({ mediaType: OCI_MANIFEST, digest: d('1'), size: 5 }, 'index.json manifests[0]').size).toBe(5);
    expect(errorOf(() => parseDescriptor({ mediaType: OCI_MANIFEST, size: 5 }, 'index.json manifests[0]')).message).toBe(
      'index.json manifests[0]: invalid descriptor: digest: required string is missing',
    );
  });
  it('formatZodError formats paths and joins issues', () => {
    const r = DescriptorSchema.safeParse({ digest: 'nope', size: -1, annotations: { 'a b': 1 } });
    expect(r.success).toBe(false);
    if (r.success) return;
    const s = formatZodError(r.error);
    expect(s).toMatch(/^mediaType: Required; digest: "nope" is not a valid sha256 digest .*; size: Number must be greater than or equal to 0; annotations\["a b"\]: Expected string, received number$/);
    expect(formatZodError([])).toBe('invalid value');
  });
  it('formatIssuePath', () => {
    expect(formatIssuePath(['layers', 0, 'digest'])).toBe('layers[0].digest');
    expect(formatIssuePath([0, 'a'])).toBe('[0].a');
    expect(formatIssuePath(['os.version'])).toBe('["os.version"]');
    expect(formatIssuePath(['config', 'Labels', 'org.label'])).toBe('config.Labels["org.label"]');
    expect(formatIssuePath([])).toBe('');
  });
});
