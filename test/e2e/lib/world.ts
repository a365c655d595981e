/**
 * The shared fixture of the helper e2e suites: registers node:test before/after hooks that build
 * the two namespaces of topology.ts with both origins running, and tear everything down.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { makeUpstreamCa, type UpstreamCerts } from './certs.js';
import { createTopology, type Topology } from './topology.js';
import { startUpstreams } from './upstream.js';

export interface World {
  dir: string;
  certs: UpstreamCerts;
  topo: Topology;
}

/** Call inside a describe(); the returned object is filled in by the time its tests run. */
export function world(): World {
  const w = {} as World;
  before(async () => {
    w.dir = await mkdtemp(join(tmpdir(), 'tproxy-e2e-'));
    w.certs = await makeUpstreamCa(w.dir);
    w.topo = await createTopology();
    await startUpstreams(w.topo, w.certs);
  });
  after(async () => {
    await w.topo?.destroy();
    if (w.dir) await rm(w.dir, { recursive: true, force: true });
  });
  return w;
}
