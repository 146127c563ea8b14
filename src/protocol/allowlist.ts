import { z } from 'zod';

/**
 * An allowlist entry's or a scope's host pattern, split into the host pattern and the port it names: `host:5000`,
 * `*.internal:8443`, `[fd00::1]:443`. Null port: the listener's default port only. A bare IPv6 literal has no port.
 */
export function splitHostPattern(pattern: string): { host: string; port: number | null } {
  // A leading `[` is an IPv6 address only when it holds a colon; otherwise it is a glob class (`[ab].test:5000`).
  const m = /^(\[[^\]]*:[^\]]*\]):(\d{1,5})$/.exec(pattern) ?? /^([^:]*):(\d{1,5})$/.exec(pattern);
  return m ? { host: m[1]!, port: Number(m[2]) } : { host: pattern, port: null };
}

/** Why a host pattern cannot be used (a port out of range), or null. */
export function hostPatternProblem(pattern: string): string | null {
  const { port } = splitHostPattern(pattern);
  if (port !== null && (port < 1 || port > 65535)) return `the port in "${pattern}" must be between 1 and 65535`;
  return null;
}

/** Host patterns are ASCII (punycode for IDNs) and may carry fnmatch wildcards. */
const hostPattern = z
  .string()
  .min(1, 'a host pattern cannot be empty')
  .refine((s) => /^[\x21-\x7e]+$/.test(s), {
    message: 'host patterns are ASCII without spaces; write an internationalised name in its punycode form (xn--…)',
  })
  .superRefine((s, ctx) => {
    const problem = hostPatternProblem(s);
    if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
  })
  .describe(
    'Host name, IP literal or fnmatch pattern (`*.example.com`, `api-?.example.com`); case-insensitive. ' +
      'Without a port only the default port is open (443 for HTTPS, 80 for HTTP); `registry.internal:5000` ' +
      'opens that port, and only it.',
  );

const methodName = z
  .string()
  .regex(/^[A-Za-z]+$/, 'a method is a word such as GET or POST')
  .describe('HTTP method, case-insensitive.');

const graphqlOps = z
  .array(z.string().describe('fnmatch pattern over top-level field names, case-sensitive.'))
  .optional();

export const GraphqlRuleSchema = z
  .strictObject({
    queries: graphqlOps.describe('Allowed top-level query fields; empty or absent blocks every query.'),
    mutations: graphqlOps.describe('Allowed top-level mutation fields; empty or absent blocks every mutation.'),
    subscriptions: graphqlOps.describe('Allowed top-level subscription fields; empty or absent blocks them all.'),
  })
  .describe('Restrict GraphQL operations sent to this entry. `{}` blocks every operation.');

export const UrlPrefixSchema = z
  .strictObject({
    host: hostPattern,
    path: z
      .string()
      .default('')
      .refine((p) => p === '' || p.startsWith('/') || p.startsWith('*'), {
        message: 'a path starts with `/` (or is a glob such as `*`); leave it out to allow every path',
      })
      .describe(
        'Path (with query) to allow: exact, or an fnmatch pattern when it contains `*` or `?`. Case-sensitive. ' +
          'Empty allows every path. There is no implicit prefix: write `/api/*`.',
      ),
    methods: z
      .array(methodName)
      .default([])
      .describe('Methods to allow, case-insensitive; empty or absent allows every method.'),
    graphql: GraphqlRuleSchema.optional(),
  })
  .describe('Allow requests to one host (pattern) restricted by path and method.');

export const AllowlistSchema = z
  .strictObject({
    allow_all: z
      .boolean()
      .optional()
      .describe(
        'Acknowledges a bare `*` entry (every host, path and method: the sandbox then blocks nothing). Opens ' +
          'nothing by itself; without it a bare `*` is an error in .airlock/ files (a warning in Airut .airut/ files).',
      ),
    domains: z
      .array(hostPattern)
      .nullish()
      .transform((v) => v ?? [])
      .describe('Hosts allowed for every path and method.'),
    url_prefixes: z
      .array(UrlPrefixSchema)
      .nullish()
      .transform((v) => v ?? [])
      .describe('Host + path + method rules, tried in order; the first match wins.'),
  })
  .describe('airlock network allowlist (.airlock/network-allowlist.yaml). Anything not listed is blocked.');

export type Allowlist = z.output<typeof AllowlistSchema>;
export type UrlPrefixRule = z.output<typeof UrlPrefixSchema>;
export type GraphqlRule = z.output<typeof GraphqlRuleSchema>;

export const EMPTY_ALLOWLIST: Allowlist = { domains: [], url_prefixes: [] };
