import type { DocumentNode, OperationDefinitionNode, SelectionSetNode } from 'graphql/language/ast.js';
import { Kind } from 'graphql/language/kinds.js';
import { parse } from 'graphql/language/parser.js';
import type { GraphqlRule, UrlPrefixRule } from './allowlist.js';
import { fnmatchCase } from './fnmatch.js';
import { entryYaml, splitTarget } from './policy.js';

/**
 * The GraphQL operation filter of a `url_prefixes` entry with a `graphql` block (airut-behaviour.md §4f): the
 * request body must be one GraphQL-over-HTTP JSON request whose operation type and top-level fields the entry
 * lists. Anything the filter cannot read with certainty is refused. Pure: the proxy hands it the decoded body.
 */

export type GraphqlOperationType = 'query' | 'mutation' | 'subscription';

export type GraphqlVerdict =
  | { allowed: true; type: GraphqlOperationType; fields: string[] }
  | {
      allowed: false;
      /** Airut's detail: `<too-large>`, `<unparseable>`, `<batched>`, `<operation-name-invalid>`,
       * `<fragment-spread>`, `{type}:<blocked>`, or the first field not allowed. */
      detail: string;
      /** Why, in a sentence a developer can act on. */
      reason: string;
      type?: GraphqlOperationType;
      /** The top-level fields the entry does not allow, when the operation parsed (for the YAML hint). */
      fields?: string[];
    };

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Largest body the filter reads; a larger one is refused, never forwarded unread. */
export const GRAPHQL_MAX_BODY_BYTES = 1024 * 1024;

const LIST_OF: Record<GraphqlOperationType, keyof GraphqlRule> = {
  query: 'queries',
  mutation: 'mutations',
  subscription: 'subscriptions',
};

type Refused = Extract<GraphqlVerdict, { allowed: false }>;

const refuse = (detail: string, reason: string, type?: GraphqlOperationType, fields?: string[]): Refused => ({
  allowed: false,
  detail,
  reason,
  ...(type ? { type } : {}),
  ...(fields ? { fields } : {}),
});

const unparseable = (reason: string) => refuse('<unparseable>', reason);

/**
 * Top-level field names of an operation (aliases ignored: `viewer: deleteRepository` is `deleteRepository`).
 * Inline fragments are opened two levels deep whatever their type condition; a named fragment spread at those
 * levels, or inline fragments nested deeper, cannot be judged without resolving them and are refused.
 */
function topLevelFields(selectionSet: SelectionSetNode, depth = 0): string[] | 'fragment-spread' {
  const fields: string[] = [];
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) {
      fields.push(selection.name.value);
    } else if (selection.kind === Kind.FRAGMENT_SPREAD || depth >= 2) {
      return 'fragment-spread';
    } else {
      const inner = topLevelFields(selection.selectionSet, depth + 1);
      if (inner === 'fragment-spread') return inner;
      fields.push(...inner);
    }
  }
  return fields;
}

function chooseOperation(document: DocumentNode, operationName: unknown): OperationDefinitionNode | string {
  const operations = document.definitions.filter(
    (d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION,
  );
  if (operations.length === 0) return 'the document defines no operation';
  // With one operation, operationName is ignored (as GraphQL servers do).
  if (operations.length === 1) return operations[0]!;
  if (typeof operationName !== 'string') {
    return 'the document defines several operations and operationName does not choose one';
  }
  const named = operations.filter((o) => o.name?.value === operationName);
  if (named.length !== 1) return `operationName "${operationName}" does not name exactly one operation`;
  return named[0]!;
}

/** GraphQL-over-HTTP request parameters; a server may take any of them from the URL instead of the body. */
const URL_PARAMETERS = ['query', 'operationName', 'variables', 'extensions'];

/**
 * Refuses a request whose URL carries GraphQL parameters: the filter judges the body, and a server that reads
 * `?query=` (as GraphQL-over-GET servers do, some on POST too) would run an operation nobody checked.
 */
export function checkGraphqlUrl(target: string): GraphqlVerdict | null {
  const { query } = splitTarget(target);
  if (query === null) return null;
  const params = new URLSearchParams(query);
  const found = URL_PARAMETERS.find((p) => params.has(p));
  if (found === undefined) return null;
  return refuse(
    '<query-string>',
    `the URL carries the GraphQL parameter "${found}", which the filter does not judge; send it in the POST body`,
  );
}

/** The verdict for a body over GRAPHQL_MAX_BODY_BYTES, also when the proxy stopped reading it at the bound. */
export const GRAPHQL_TOO_LARGE: Refused = refuse(
  '<too-large>',
  `the GraphQL request body is over ${GRAPHQL_MAX_BODY_BYTES} bytes`,
);

/** Judges one request body (already decoded from any Content-Encoding) against an entry's `graphql` block. */
export function checkGraphqlOperation(body: Buffer | string, rule: GraphqlRule): GraphqlVerdict {
  const size = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  if (size > GRAPHQL_MAX_BODY_BYTES) return GRAPHQL_TOO_LARGE;
  let json: unknown;
  try {
    // Strict UTF-8: a byte sequence this decoder would replace, a lenient server might read as structure.
    json = JSON.parse(typeof body === 'string' ? body : STRICT_UTF8.decode(body));
  } catch {
    // Invalid UTF-8 or JSON, an empty body (a GET with ?query=…), nesting deep enough to exhaust the stack.
    return unparseable('the body is not a JSON GraphQL request (send POST with {"query": …})');
  }
  if (Array.isArray(json)) return refuse('<batched>', 'batched GraphQL requests (a JSON array) are not allowed');
  if (json === null || typeof json !== 'object') return unparseable('the body is not a JSON object');
  const { query, operationName } = json as { query?: unknown; operationName?: unknown };
  if (typeof query !== 'string') return unparseable('the JSON body has no "query" string');
  let document: DocumentNode;
  try {
    document = parse(query, { noLocation: true });
  } catch {
    return unparseable('the "query" is not a valid GraphQL document');
  }
  const operation = chooseOperation(document, operationName);
  if (typeof operation === 'string') {
    return operation.startsWith('the document defines no')
      ? unparseable(operation)
      : refuse('<operation-name-invalid>', operation);
  }
  const type = operation.operation as GraphqlOperationType;
  const fields = topLevelFields(operation.selectionSet);
  if (fields === 'fragment-spread') {
    return refuse(
      '<fragment-spread>',
      'top-level fields come from a named fragment or deeply nested inline fragments; write them inline',
      type,
    );
  }
  const patterns = rule[LIST_OF[type]] ?? [];
  if (patterns.length === 0) {
    return refuse(`${type}:<blocked>`, `the entry allows no ${type} operations (graphql.${LIST_OF[type]})`, type, [
      ...new Set(fields),
    ]);
  }
  const denied = [...new Set(fields.filter((field) => !patterns.some((p) => fnmatchCase(field, p))))];
  if (denied.length > 0) {
    return refuse(denied[0]!, `${type} field "${denied[0]}" is not in graphql.${LIST_OF[type]}`, type, denied);
  }
  return { allowed: true, type, fields };
}

/**
 * The entry that would let the refused operation through — the matched entry with the missing top-level fields added
 * to its list — as YAML ready to paste in its place; undefined when no list change would help (a batch, a fragment,
 * an unreadable body).
 */
export function graphqlEntryHint(
  entry: UrlPrefixRule,
  verdict: Extract<GraphqlVerdict, { allowed: false }>,
): string | undefined {
  if (!verdict.type || !verdict.fields || verdict.fields.length === 0 || !entry.graphql) return undefined;
  const list = LIST_OF[verdict.type];
  const widened = [...(entry.graphql[list] ?? []), ...verdict.fields];
  return entryYaml({ ...entry, graphql: { ...entry.graphql, [list]: widened } });
}

/** What a developer can change so the refused request would pass (or why it cannot). */
export function graphqlHint(verdict: Extract<GraphqlVerdict, { allowed: false }>, rule: string): string {
  const list = verdict.type ? `graphql.${verdict.type === 'query' ? 'queries' : `${verdict.type}s`}` : 'graphql';
  switch (verdict.detail) {
    case '<too-large>':
      return 'send a smaller request (the filter reads at most 1 MiB)';
    case '<unparseable>':
      return 'POST a JSON body {"query": "…"} in identity, gzip, deflate or br encoding';
    case '<batched>':
      return 'send one operation per request';
    case '<operation-name-invalid>':
      return 'set operationName to exactly one of the operations the document defines';
    case '<query-string>':
      return 'send query, operationName and variables in the JSON body, not in the URL';
    case '<fragment-spread>':
      return 'write the top-level fields inline instead of in a named fragment';
    default:
      return verdict.detail.endsWith(':<blocked>')
        ? `list the ${verdict.type} fields to allow in ${list} of ${rule}`
        : `add "${verdict.detail}" to ${list} of ${rule}`;
  }
}
