/**
 * Whether a job's (or step's) `if:` can be true under a given triggering event. The checker knows exactly one thing
 * about a run ahead of time — `github.event_name` — so it evaluates the expression with that value known and every
 * other context unknown, in three-valued logic: a condition is "never" only when it is false whatever the unknowns
 * are (`github.event_name == 'push'` under pull_request), and "maybe" otherwise, including anything it cannot parse.
 * Semantics follow GitHub's expression language: case-insensitive string comparison, loose equality with numeric
 * coercion, `&&`/`||` returning an operand, and the falsy values false, 0, '', null and NaN.
 */

type Known = { known: true; value: unknown };
/** A value that depends on the run; `truthy` is set when its truthiness is known all the same (`x && false`). */
type Unknown = { known: false; truthy?: boolean };
type Value = Known | Unknown;

const UNKNOWN: Unknown = { known: false };
const known = (value: unknown): Known => ({ known: true, value });

class ConditionSyntaxError extends Error {}

type Token =
  | { kind: 'string'; value: string }
  | { kind: 'number'; value: number }
  | { kind: 'word'; value: string }
  | { kind: 'op'; value: string };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === "'") {
      let value = '';
      i++;
      for (;;) {
        if (i >= text.length) throw new ConditionSyntaxError('unterminated string');
        if (text[i] === "'") {
          if (text[i + 1] === "'") {
            value += "'";
            i += 2;
            continue;
          }
          i++;
          break;
        }
        value += text[i++];
      }
      tokens.push({ kind: 'string', value });
    } else if (/[0-9]/.test(c) || (c === '-' && /[0-9]/.test(text[i + 1] ?? ''))) {
      const m = /^-?(?:0x[0-9a-f]+|\d+(?:\.\d+)?(?:e[+-]?\d+)?)/i.exec(text.slice(i))!;
      tokens.push({ kind: 'number', value: Number(m[0]) });
      i += m[0].length;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][\w-]*/.exec(text.slice(i))!;
      tokens.push({ kind: 'word', value: m[0] });
      i += m[0].length;
    } else {
      const op = ['==', '!=', '<=', '>=', '&&', '||'].find((o) => text.startsWith(o, i)) ?? c;
      if (!['==', '!=', '<=', '>=', '&&', '||', '<', '>', '!', '(', ')', '[', ']', '.', ',', '*'].includes(op)) {
        throw new ConditionSyntaxError(`unexpected '${op}'`);
      }
      tokens.push({ kind: 'op', value: op });
      i += op.length;
    }
  }
  return tokens;
}

function truthiness(v: Value): boolean | undefined {
  if (!v.known) return v.truthy;
  const x = v.value;
  return !(x === false || x === 0 || x === '' || x === null || x === undefined || Number.isNaN(x));
}

function toNumber(x: unknown): number {
  if (x === null || x === undefined) return 0;
  if (typeof x === 'boolean') return x ? 1 : 0;
  if (typeof x === 'number') return x;
  if (typeof x === 'string') return x.trim() === '' ? 0 : Number(x);
  return NaN;
}

function looseEquals(a: unknown, b: unknown): boolean {
  if (typeof a === 'string' && typeof b === 'string') return a.toLowerCase() === b.toLowerCase();
  if (typeof a === 'object' && a !== null) return a === b;
  if (typeof b === 'object' && b !== null) return false;
  if (typeof a === typeof b) return a === b;
  return toNumber(a) === toNumber(b);
}

function compare(op: string, a: Value, b: Value): Value {
  if (!a.known || !b.known) return UNKNOWN;
  if (op === '==') return known(looseEquals(a.value, b.value));
  if (op === '!=') return known(!looseEquals(a.value, b.value));
  const [x, y] =
    typeof a.value === 'string' && typeof b.value === 'string'
      ? [a.value.toLowerCase(), b.value.toLowerCase()]
      : [toNumber(a.value), toNumber(b.value)];
  return known(op === '<' ? x < y : op === '<=' ? x <= y : op === '>' ? x > y : x >= y);
}

/** A scalar as GitHub's string functions see it; objects and arrays have no string form worth matching. */
function asText(x: unknown): string {
  if (typeof x === 'string') return x;
  if (typeof x === 'number' || typeof x === 'boolean') return String(x);
  return x === null || x === undefined ? '' : JSON.stringify(x);
}

function call(name: string, args: Value[]): Value {
  if (name.toLowerCase() === 'always') return known(true);
  if (!args.every((a): a is Known => a.known)) return UNKNOWN;
  const values = args.map((a) => a.value);
  switch (name.toLowerCase()) {
    case 'contains': {
      if (values.length !== 2) return UNKNOWN;
      const [hay, needle] = values;
      if (Array.isArray(hay)) return known(hay.some((item) => looseEquals(item, needle)));
      return known(asText(hay).toLowerCase().includes(asText(needle).toLowerCase()));
    }
    case 'startswith':
    case 'endswith': {
      if (values.length !== 2) return UNKNOWN;
      const [s, part] = values.map((v) => asText(v).toLowerCase()) as [string, string];
      return known(name.toLowerCase() === 'startswith' ? s.startsWith(part) : s.endsWith(part));
    }
    case 'fromjson':
      if (typeof values[0] !== 'string') return UNKNOWN;
      try {
        return known(JSON.parse(values[0]));
      } catch {
        return UNKNOWN;
      }
    default:
      // success(), failure(), cancelled(), hashFiles(), format(), … depend on the run.
      return UNKNOWN;
  }
}

class Parser {
  #at = 0;
  constructor(
    private readonly tokens: Token[],
    private readonly eventName: string,
  ) {}

  parse(): Value {
    const v = this.or();
    if (this.#at !== this.tokens.length) throw new ConditionSyntaxError('trailing input');
    return v;
  }

  #peekOp(...ops: string[]): string | null {
    const t = this.tokens[this.#at];
    return t?.kind === 'op' && ops.includes(t.value) ? t.value : null;
  }

  #expect(op: string): void {
    if (this.#peekOp(op) === null) throw new ConditionSyntaxError(`expected '${op}'`);
    this.#at++;
  }

  or(): Value {
    return this.#logical('||', true, () => this.and());
  }

  and(): Value {
    return this.#logical('&&', false, () => this.equality());
  }

  /**
   * `||` (decided by a truthy operand) and `&&` (decided by a falsy one) return the deciding operand, else the last;
   * an unknown operand followed by a deciding one still has a known truthiness.
   */
  #logical(op: '||' | '&&', decidedBy: boolean, operand: () => Value): Value {
    let left = operand();
    while (this.#peekOp(op)) {
      this.#at++;
      const right = operand();
      const t = truthiness(left);
      if (t === decidedBy) continue;
      if (t === !decidedBy) left = right;
      else left = truthiness(right) === decidedBy ? { known: false, truthy: decidedBy } : UNKNOWN;
    }
    return left;
  }

  equality(): Value {
    let left = this.relation();
    for (let op = this.#peekOp('==', '!='); op; op = this.#peekOp('==', '!=')) {
      this.#at++;
      left = compare(op, left, this.relation());
    }
    return left;
  }

  relation(): Value {
    let left = this.unary();
    for (let op = this.#peekOp('<', '<=', '>', '>='); op; op = this.#peekOp('<', '<=', '>', '>=')) {
      this.#at++;
      left = compare(op, left, this.unary());
    }
    return left;
  }

  unary(): Value {
    if (this.#peekOp('!')) {
      this.#at++;
      const t = truthiness(this.unary());
      return t === undefined ? UNKNOWN : known(!t);
    }
    return this.primary();
  }

  primary(): Value {
    const t = this.tokens[this.#at++];
    if (!t) throw new ConditionSyntaxError('unexpected end');
    if (t.kind === 'string' || t.kind === 'number') return known(t.value);
    if (t.kind === 'op') {
      if (t.value !== '(') throw new ConditionSyntaxError(`unexpected '${t.value}'`);
      const v = this.or();
      this.#expect(')');
      return v;
    }
    const word = t.value;
    if (word === 'true' || word === 'false') return known(word === 'true');
    if (word === 'null') return known(null);
    if (this.#peekOp('(')) {
      this.#at++;
      const args: Value[] = [];
      if (!this.#peekOp(')')) {
        args.push(this.or());
        while (this.#peekOp(',')) {
          this.#at++;
          args.push(this.or());
        }
      }
      this.#expect(')');
      return call(word, args);
    }
    // A context reference: github.event_name is known, everything else is not.
    const path = [word.toLowerCase()];
    for (;;) {
      if (this.#peekOp('.')) {
        this.#at++;
        const next = this.tokens[this.#at++];
        if (next?.kind === 'word') path.push(next.value.toLowerCase());
        else if (next?.kind === 'op' && next.value === '*') path.push('*');
        else throw new ConditionSyntaxError('expected a property name');
      } else if (this.#peekOp('[')) {
        this.#at++;
        const index = this.or();
        this.#expect(']');
        path.push(index.known ? String(index.value).toLowerCase() : '*');
      } else break;
    }
    return path.join('.') === 'github.event_name' ? known(this.eventName) : UNKNOWN;
  }
}

/** The expression inside an `if:` value: `${{ … }}` around all of it is optional; other text mixed in is not. */
function expressionOf(condition: string): string | null {
  const text = condition.trim();
  const wrapped = /^\$\{\{([\s\S]*)\}\}$/.exec(text);
  if (wrapped) return wrapped[1]!.includes('${{') ? null : wrapped[1]!;
  return text.includes('${{') ? null : text;
}

/** False only when the condition cannot be true for a run triggered by `eventName`. */
export function canRunOn(condition: string | null, eventName: string): boolean {
  if (condition === null) return true;
  const expression = expressionOf(condition);
  if (expression === null || expression.trim() === '') return true;
  try {
    return truthiness(new Parser(tokenize(expression), eventName).parse()) !== false;
  } catch (e) {
    if (e instanceof ConditionSyntaxError) return true;
    throw e;
  }
}
