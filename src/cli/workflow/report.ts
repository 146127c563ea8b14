import { isAbsolute, relative, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RULES, type Finding, type RuleId } from './check.js';

/**
 * `airlock check-workflow` findings in the forms CI reads: GitHub workflow commands (`::error file=…,line=…::`, shown
 * as annotations on the run and the PR diff) and SARIF 2.1.0 (GitHub code scanning's upload format).
 */

/** Workflow-command escaping: the message keeps `%`, CR and LF; a property value also keeps `:` and `,`. */
function escapeData(text: string): string {
  return text.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

function escapeProperty(text: string): string {
  return escapeData(text).replace(/:/g, '%3A').replace(/,/g, '%2C');
}

export function githubAnnotation(f: Finding): string {
  const properties = [
    `file=${escapeProperty(f.file)}`,
    `line=${f.line}`,
    `title=${escapeProperty(`airlock check-workflow: ${f.rule}`)}`,
  ].join(',');
  return `::${f.severity} ${properties}::${escapeData(f.message)}`;
}

/** A location as code scanning wants it: relative to the repository root (the working directory), `/`-separated. */
function artifactLocation(file: string, cwd: string): { uri: string; uriBaseId?: string } {
  const rel = relative(cwd, isAbsolute(file) ? file : `${cwd}${sep}${file}`);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return { uri: pathToFileURL(file).href };
  return { uri: rel.split(sep).map(encodeURIComponent).join('/'), uriBaseId: '%SRCROOT%' };
}

export function sarifLog(findings: Finding[], options: { version: string; cwd: string }): object {
  const ruleIds = Object.keys(RULES) as RuleId[];
  return {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [
      {
        tool: {
          driver: {
            name: 'airlock check-workflow',
            version: options.version,
            rules: ruleIds.map((id) => ({
              id,
              name: id.replace(/(^|-)([a-z])/g, (_m, _d: string, c: string) => c.toUpperCase()),
              shortDescription: { text: RULES[id].summary },
              help: { text: `${RULES[id].summary} See docs/github-action.md, rule ${id}.` },
              defaultConfiguration: { level: RULES[id].severity },
              // Code scanning sorts security alerts by this CVSS-like score; every rule guards the sandbox's promises.
              properties: { tags: ['security', 'github-actions'], 'security-severity': '7.5' },
            })),
          },
        },
        results: findings.map((f) => ({
          ruleId: f.rule,
          ruleIndex: ruleIds.indexOf(f.rule),
          level: f.severity,
          message: { text: f.message },
          locations: [
            {
              physicalLocation: {
                artifactLocation: artifactLocation(f.file, options.cwd),
                region: { startLine: f.line },
              },
            },
          ],
        })),
      },
    ],
  };
}
