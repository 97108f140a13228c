// Which images do containers use? Containers keep their config in
// <root>/containers/<id>/config.json with `Image` = the image ID (config
// digest), as Docker does. Image removal consults this so `rmi` refuses to
// pull an image out from under a container.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { Digest } from '../image/digest.js';

export interface ContainerImageRef {
  id: string;
  name: string;
  image: Digest;
}

export async function listContainerImageRefs(root: string): Promise<ContainerImageRef[]> {
  const dir = path.join(root, 'containers');
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const refs: ContainerImageRef[] = [];
  for (const n of names) {
    try {
      const c = JSON.parse(await fsp.readFile(path.join(dir, n, 'config.json'), 'utf8')) as { Id?: string; Name?: string; Image?: string };
      if (c.Image) refs.push({ id: c.Id ?? n, name: c.Name ?? '', image: c.Image as Digest });
    } catch {
      /* a container being created or removed */
    }
  }
  return refs;
}

export async function containersUsingImages(root: string, imageIds: Digest[]): Promise<ContainerImageRef[]> {
  const want = new Set<string>(imageIds);
  return (await listContainerImageRefs(root)).filter((r) => want.has(r.image));
}

export async function containerImageIds(root: string): Promise<Digest[]> {
  return [...new Set((await listContainerImageRefs(root)).map((r) => r.image))];
}
