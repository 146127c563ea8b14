import {
  checkGraphqlOperation,
  checkGraphqlUrl,
  graphqlHint,
  type GraphqlVerdict,
} from '../../protocol/graphql-operations.js';
import { guardLiteralTarget } from '../../protocol/address-guard.js';
import { decide, describeRule, type Decision } from '../../protocol/policy.js';
import { loadPolicy } from '../config/load.js';
import { EXIT, UsageError } from '../errors.js';
import { ALLOWLIST_OPTIONS, JSON_OPTION, policyLocation } from './options.js';
import { parseFlags } from './parse-flags.js';
import type { Command } from './types.js';

const USAGE = 'usage: airlock policy check [--config-dir DIR | --allowlist FILE] [--json] [--data BODY] METHOD URL';

/**
 * Split an http(s) URL by hand: WHATWG URL parsing would resolve `..` and decode escapes, hiding exactly what the
 * proxy must judge. The target is kept byte for byte as a client would send it.
 */
export function splitUrl(url: string): { scheme: 'http' | 'https'; authority: string; target: string } {
  const m = /^(https?):\/\/([^/?#]*)([^#]*)(#.*)?$/i.exec(url);
  if (!m) throw new UsageError(`"${url}" is not an http:// or https:// URL`);
  const authority = m[2]!;
  if (authority.includes('@'))
    throw new UsageError('URLs with user:password@ are not checked; put credentials in headers');
  if (authority === '') throw new UsageError(`"${url}" has no host`);
  let target = m[3]!;
  if (target === '' || target.startsWith('?')) target = '/' + target;
  return { scheme: m[1]!.toLowerCase() as 'http' | 'https', authority, target };
}

export function formatDecision(d: Decision): string {
  if (d.allowed) return `ALLOWED ${describeRule(d.rule)}`;
  if (d.fix !== undefined) return `BLOCKED ${d.code}: ${d.reason} (${d.fix})`;
  return `BLOCKED ${d.code}: ${d.reason}${d.hint ? ` (to allow it, add under url_prefixes: ${d.hint})` : ''}`;
}

export const run: Command = async (argv, ctx) => {
  const [sub, ...rest] = argv;
  if (sub !== 'check') throw new UsageError(sub === undefined ? USAGE : `unknown policy command '${sub}'\n${USAGE}`);
  const { values, positionals } = parseFlags(
    {
      args: rest,
      allowPositionals: true,
      strict: true,
      options: { ...ALLOWLIST_OPTIONS, ...JSON_OPTION, data: { type: 'string' } },
    },
    'policy check',
  );
  if (positionals.length !== 2) throw new UsageError(USAGE);
  const [method, url] = positionals as [string, string];
  if (!/^[A-Za-z]+$/.test(method)) throw new UsageError(`"${method}" is not an HTTP method`);
  const { scheme, authority, target } = splitUrl(url);
  const policy = await loadPolicy({ ...policyLocation(values, ctx.cwd), allowlistOnly: true }, ctx.env);
  for (const warning of policy.warnings) ctx.stderr.write(`airlock: warning: ${warning}\n`);
  // What the proxy would answer: the allowlist first, then (for an IP literal) the address guard. The port the URL
  // names (else the scheme's default) is the one judged, as the proxy judges its listener's.
  const decision = guardLiteralTarget(decide({ method, host: authority, target, scheme }, policy.allowlist));
  // An entry with a `graphql` block also judges the body, as the proxy does; without --data that part is unknown.
  const graphql = decision.allowed && decision.rule.kind === 'url_prefix' ? decision.rule.entry.graphql : undefined;
  const verdict: GraphqlVerdict | undefined = graphql
    ? (checkGraphqlUrl(target) ?? (values.data !== undefined ? checkGraphqlOperation(values.data, graphql) : undefined))
    : undefined;
  const blocked = !decision.allowed || verdict?.allowed === false;
  if (values.json) {
    // The entry that decided: the one that allowed it, or the one that matched but refused the method.
    const rule = decision.rule ? { ...decision.rule, description: describeRule(decision.rule) } : undefined;
    const out: Record<string, unknown> = { ...decision, rule, method: method.toUpperCase() };
    if (verdict) out.graphql = verdict;
    if (verdict?.allowed === false) Object.assign(out, { allowed: false, code: 'graphql_operation_blocked' });
    ctx.stdout.write(JSON.stringify(out) + '\n');
  } else if (decision.allowed && verdict && !verdict.allowed) {
    const rule = describeRule(decision.rule);
    ctx.stdout.write(
      `BLOCKED graphql_operation_blocked: GraphQL operation '${verdict.detail}' is not allowed by ${rule}: ` +
        `${verdict.reason} (${graphqlHint(verdict, rule)})\n`,
    );
  } else {
    let line = formatDecision(decision);
    if (verdict?.allowed) line += ` (graphql ${verdict.type}: ${verdict.fields.join(', ')})`;
    else if (graphql) line += " (the body must also pass this entry's graphql filter: check one with --data)";
    ctx.stdout.write(line + '\n');
  }
  return blocked ? EXIT.blocked : EXIT.ok;
};
