/**
 * Removes containers and networks left by airlock runs that were killed before their own cleanup ran (SIGKILL,
 * OOM-killed host process, power loss). Only resources whose labels prove an airlock process on this host created
 * them and that process is gone (see `isOrphan`); concurrent runs are left alone.
 */
import { callEngine, type Engine } from '../engine/engine.js';
import { removeStaleBridgeRules } from './bridge-forwarding.js';
import { isOrphan, LABEL, localLiveness, type Liveness } from './labels.js';

export interface OrphanReport {
  containers: string[];
  networks: string[];
}

async function labelledIds(engine: Engine, listArgs: string[]): Promise<string[]> {
  const listed = await callEngine(engine, [...listArgs, '--filter', `label=${LABEL.run}`, '--format', '{{.ID}}']);
  if (listed.code !== 0) return [];
  return listed.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

async function orphanIds(
  engine: Engine,
  ids: string[],
  inspectArgs: string[],
  labelsField: string,
  here: Liveness,
): Promise<string[]> {
  if (ids.length === 0) return [];
  const inspected = await callEngine(engine, [...inspectArgs, '--format', `{{json ${labelsField}}}`, ...ids]);
  // A resource removed between list and inspect makes inspect fail for all; the next run will catch the rest.
  if (inspected.code !== 0) return [];
  const lines = inspected.stdout.split('\n').filter((l) => l.trim());
  const orphans: string[] = [];
  lines.forEach((line, i) => {
    let labels: Record<string, string> | null = null;
    try {
      labels = JSON.parse(line) as Record<string, string> | null;
    } catch {
      labels = null;
    }
    const id = ids[i];
    if (id !== undefined && isOrphan(labels, here)) orphans.push(id);
  });
  return orphans;
}

export async function removeOrphans(engine: Engine, here: Liveness = localLiveness): Promise<OrphanReport> {
  const containerIds = await labelledIds(engine, ['ps', '--all']);
  const containers = await orphanIds(engine, containerIds, ['container', 'inspect'], '.Config.Labels', here);
  if (containers.length > 0) await callEngine(engine, ['rm', '--force', ...containers]);
  const networkIds = await labelledIds(engine, ['network', 'ls']);
  const networks = await orphanIds(engine, networkIds, ['network', 'inspect'], '.Labels', here);
  for (const network of networks) await callEngine(engine, ['network', 'rm', network]);
  await removeStaleBridgeRules(
    engine,
    async (network) => (await callEngine(engine, ['network', 'exists', network])).code === 0,
  );
  return { containers, networks };
}
